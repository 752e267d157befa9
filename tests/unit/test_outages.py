"""A page view waits on an unreachable service once: `outages.remembering_outages()` with the
Prometheus session and the UI's PostgreSQL helper, against a black hole (a listening socket that
never accepts, so connections complete in the kernel and nobody answers) and a refused port."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from slo_pipeline.adapters import outages
from slo_pipeline.adapters.postgres import DatabaseError
from slo_pipeline.adapters.prometheus import PrometheusQueryError, fetch_range
from streamlit_app import pg


@pytest.fixture
def black_hole() -> Iterator[str]:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)  # never accept()ed: the kernel completes handshakes, nothing ever replies
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


def closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _query(url: str) -> str:
    with pytest.raises(PrometheusQueryError) as caught:
        fetch_range(url, "up", start=0, end=60, step_seconds=60, timeout=0.3)
    return str(caught.value)


def test_a_black_holed_prometheus_is_waited_on_once_per_scope(black_hole: str) -> None:
    with outages.remembering_outages():
        first = _query(black_hole)
        second = _query(black_hole)
    assert "timed out" in first.lower() and "not asked again" not in first
    assert "not asked again" in second and "ReadTimeout" in second
    assert black_hole in second  # the message still names the server
    # A new scope (the next page view) asks again: a server that came back would be used.
    with outages.remembering_outages():
        assert "not asked again" not in _query(black_hole)


def test_outside_a_scope_nothing_is_remembered(black_hole: str) -> None:
    _query(black_hole)
    assert "not asked again" not in _query(black_hole)


def test_a_refused_postgresql_is_named_and_not_asked_again() -> None:
    url = f"postgresql://postgres@127.0.0.1:{closed_port()}/nowhere"
    with outages.remembering_outages():
        with pytest.raises(DatabaseError) as first:
            pg.fetch_all(url, "SELECT 1")
        with pytest.raises(DatabaseError) as second:
            pg.fetch_all(url, "SELECT 1")
    assert "PostgreSQL at" in str(first.value) and "refused" in str(first.value)
    second_text = str(second.value)
    assert "PostgreSQL at" in second_text and "not asked again" in second_text
    assert "(Connection refused)" in second_text


def test_scopes_do_not_leak_into_each_other() -> None:
    with outages.remembering_outages():
        outages.note_outage("http://a", "ConnectTimeout")
        with outages.remembering_outages():
            assert outages.earlier_outage("http://a") is None
        assert outages.earlier_outage("http://a") == "ConnectTimeout"
    assert outages.earlier_outage("http://a") is None
    outages.note_outage("http://a", "ignored outside a scope")
    assert outages.earlier_outage("http://a") is None


def test_a_refused_prometheus_is_a_query_error_naming_it() -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    message = _query(url)
    assert url in message and "Connection refused" in message
