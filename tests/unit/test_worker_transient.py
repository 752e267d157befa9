"""Which training failures wait out an outage (the job is requeued) and which fail the job."""

from __future__ import annotations

import psycopg2
import psycopg2.errors
import pytest
import requests

from slo_pipeline.adapters.prometheus_connection import PrometheusQueryError
from slo_pipeline.devstack.launch import free_port
from worker.transient import is_outage


def _raised(action: object) -> BaseException:
    try:
        action()  # type: ignore[operator]
    except Exception as err:
        return err
    raise AssertionError("expected the call to fail")


def _wrapped(inner: BaseException) -> BaseException:
    """How the registry adapter reports it: a RuntimeError raised from inside the except block."""
    try:
        try:
            raise inner
        except Exception as err:
            raise RuntimeError(f"could not look up the champion: {err}") from None
    except RuntimeError as outer:
        return outer


def test_a_refused_connection_is_an_outage_even_wrapped() -> None:
    refused = _raised(lambda: requests.get(f"http://127.0.0.1:{free_port()}/", timeout=2))
    assert isinstance(refused, requests.ConnectionError)
    assert is_outage(refused)
    # `from None` hides the cause from tracebacks but the context is still there.
    assert is_outage(_wrapped(refused))


def test_a_database_that_is_down_is_an_outage() -> None:
    down = _raised(lambda: psycopg2.connect(host="127.0.0.1", port=free_port(), connect_timeout=2))
    assert isinstance(down, psycopg2.OperationalError)
    assert is_outage(down)


@pytest.mark.parametrize(
    ("reason", "outage"),
    [
        ("unreachable", True),
        ("timeout", True),
        ("http_status", False),
        ("bad_answer", False),
        ("auth", False),
    ],
)
def test_prometheus_errors_are_outages_only_when_it_could_not_be_reached(reason: str, outage: bool) -> None:
    assert is_outage(PrometheusQueryError("query 'up' failed", reason)) is outage


def test_a_fault_of_the_job_itself_is_not_an_outage() -> None:
    assert not is_outage(ValueError("neither Prometheus nor the lake holds data"))
    assert not is_outage(_wrapped(KeyError("detector")))


def test_a_statement_timeout_is_not_an_outage() -> None:
    # QueryCanceled is an OperationalError like a database that is down, but waiting will not help.
    canceled = psycopg2.errors.QueryCanceled("canceling statement due to statement timeout")
    assert isinstance(canceled, psycopg2.OperationalError)
    assert not is_outage(_wrapped(canceled))
