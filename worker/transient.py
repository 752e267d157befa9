"""Which training failures are a service outage (retry the job later) rather than a fault of the
job itself (record it as failed).

A retrain job talks to MLflow, Prometheus and PostgreSQL. When one of them cannot be reached, the
same job will work once it is back, so failing it for good would lose a retrain the operator or an
alert asked for. Errors arrive wrapped (RegistryError around MlflowException around the
`requests` error, which MLflow raises from inside its `except` block), so the whole chain of
causes and contexts is searched.
"""

from __future__ import annotations

from collections.abc import Iterator

import psycopg2
import psycopg2.errors
import requests
import urllib3

from slo_pipeline.adapters.prometheus_connection import PrometheusQueryError

_OUTAGE_ERRORS: tuple[type[BaseException], ...] = (
    requests.ConnectionError,  # refused, reset, DNS; MLflow's retries exhausted
    requests.Timeout,
    requests.exceptions.RetryError,  # the server kept answering 5xx through every retry
    urllib3.exceptions.MaxRetryError,
    urllib3.exceptions.NewConnectionError,
    ConnectionError,
    TimeoutError,
    psycopg2.OperationalError,  # the database is down or restarting
)
_UNREACHABLE_REASONS = ("unreachable", "timeout")
_MAX_CHAIN = 20


def is_outage(err: BaseException) -> bool:
    """True when `err` (or anything it was raised from) says a service could not be reached."""
    for link in _chain(err):
        if isinstance(link, psycopg2.errors.QueryCanceled):
            return False  # statement_timeout: the query is too heavy, waiting will not help
        if isinstance(link, PrometheusQueryError):
            if link.reason in _UNREACHABLE_REASONS:
                return True
            continue
        if isinstance(link, _OUTAGE_ERRORS):
            return True
    return False


def _chain(err: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen and len(seen) < _MAX_CHAIN:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__
