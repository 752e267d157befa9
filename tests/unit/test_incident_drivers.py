"""Finding an incident's driver: label matching (pure), the lookup loop, and the Prometheus client's
failure modes against a small local HTTP server (a real socket, no mocks of requests)."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from slo_pipeline.adapters.incident_drivers import (
    FAILED,
    FOUND,
    NO_MATCH,
    DriverLookupError,
    NewIncident,
    PrometheusDriverSource,
    driver_query,
    find_drivers,
    match_driver,
)
from slo_pipeline.settings import PrometheusConnection
from tests.fixtures.waiting import wait_until
from webhook.payload import Alert

STARTS = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
SERIES = {"detector": "latency", "slo": "checkout", "job": "api", "instance": "10.0.0.1:80", "route": "/pay"}
ALERT_LABELS = {**SERIES, "alertname": "AnomalyThreatensSLO", "severity": "page", "monitor": "slo-pipeline"}


def info(driver: str, **labels: str) -> dict[str, str]:
    return {"__name__": "anomaly_driver_info", **labels, "driver": driver}


def test_the_series_whose_labels_the_alert_carries_gives_the_driver() -> None:
    other_route = info("step_change", **{**SERIES, "route": "/cart"})
    assert match_driver(ALERT_LABELS, [other_route, info("errors:level_vs_long", **SERIES)]) == (
        "errors:level_vs_long"
    )


def test_no_series_matches_a_detector_wide_alert_or_a_differing_label() -> None:
    detector_wide = {"alertname": "AnomalyDetectorNeedsRetraining", "detector": "latency", "retrain": "true"}
    assert match_driver(detector_wide, [info("step_change", **SERIES)]) is None
    assert match_driver(ALERT_LABELS, [info("step_change", **{**SERIES, "instance": "10.0.0.2:80"})]) is None
    assert match_driver(ALERT_LABELS, []) is None


def test_a_series_without_a_driver_value_is_ignored() -> None:
    assert match_driver(ALERT_LABELS, [{**SERIES, "__name__": "anomaly_driver_info"}]) is None
    assert match_driver(ALERT_LABELS, [info("", **SERIES)]) is None


def test_the_most_specific_match_wins_and_a_tie_that_disagrees_is_no_answer() -> None:
    broad = info("short_volatility", detector="latency", route="/pay")
    specific = info("level_vs_long", **SERIES)
    assert match_driver(ALERT_LABELS, [broad, specific]) == "level_vs_long"
    assert match_driver(ALERT_LABELS, [specific, broad]) == "level_vs_long"
    by_job = info("step_change", detector="latency", job="api")
    assert match_driver(ALERT_LABELS, [broad, by_job]) is None
    assert match_driver(ALERT_LABELS, [broad, info("short_volatility", detector="latency", job="api")]) == (
        "short_volatility"
    )


def test_the_query_escapes_the_detector_as_a_promql_string() -> None:
    assert driver_query("latency") == 'anomaly_driver_info{detector="latency"}'
    assert driver_query('a"b\\c\nd') == 'anomaly_driver_info{detector="a\\"b\\\\c\\nd"}'


def alert(fingerprint: str, starts_at: datetime = STARTS, **labels: str) -> Alert:
    return Alert(
        status="firing",
        labels={"alertname": "AnomalyDetected", **labels},
        annotations={},
        starts_at=starts_at,
        ends_at=None,
        generator_url="",
        fingerprint=fingerprint,
    )


@dataclass
class FakeSource:
    answers: dict[str, list[dict[str, str]]] = field(default_factory=dict)
    failing: bool = False
    seconds_per_query: float = 0.0
    calls: list[tuple[str, datetime, float]] = field(default_factory=list)
    clock: list[float] = field(default_factory=lambda: [0.0])

    def driver_series(self, detector: str, at: datetime, timeout: float) -> list[dict[str, str]]:
        self.calls.append((detector, at, timeout))
        self.clock[0] += self.seconds_per_query
        if self.failing:
            raise DriverLookupError("driver query to http://prometheus failed: connection refused")
        return self.answers.get(detector, [])


def test_one_query_per_detector_and_start_and_incidents_without_detector_are_skipped() -> None:
    source = FakeSource({"latency": [info("level_vs_long", detector="latency", route="/a")]})
    incidents = [
        NewIncident(1, alert("f1", detector="latency", route="/a")),
        NewIncident(2, alert("f2", detector="latency", route="/b")),
        NewIncident(3, alert("f3", slo="checkout", burn_tier="fast")),
    ]
    outcomes = find_drivers(source, incidents, 2.0, clock=lambda: source.clock[0])
    assert [(o.incident_id, o.outcome, o.driver) for o in outcomes] == [
        (1, FOUND, "level_vs_long"),
        (2, NO_MATCH, None),
    ]
    assert [(d, at) for d, at, _ in source.calls] == [("latency", STARTS)]
    assert source.calls[0][2] == 2.0, "the first query may use the whole budget"


def test_after_a_failure_nothing_more_is_queried_and_every_incident_is_failed() -> None:
    source = FakeSource(failing=True)
    incidents = [
        NewIncident(i, alert(f"f{i}", datetime(2024, 5, 1, 10, i, tzinfo=UTC), detector="d"))
        for i in range(3)
    ]
    outcomes = find_drivers(source, incidents, 2.0, clock=lambda: source.clock[0])
    assert [o.outcome for o in outcomes] == [FAILED] * 3
    assert len(source.calls) == 1
    assert all("connection refused" in o.reason for o in outcomes)
    # Only the first was asked: the others keep their retry attempts (worker/driver_retry.py).
    assert [o.queried for o in outcomes] == [True, False, False]


def test_the_budget_bounds_the_time_spent_on_one_notification() -> None:
    source = FakeSource({"d": [info("step_change", detector="d")]}, seconds_per_query=0.8)
    incidents = [
        NewIncident(i, alert(f"f{i}", datetime(2024, 5, 1, 10, i, tzinfo=UTC), detector="d"))
        for i in range(4)
    ]
    outcomes = find_drivers(source, incidents, 2.0, clock=lambda: source.clock[0])
    assert [o.outcome for o in outcomes] == [FOUND, FOUND, FOUND, FAILED]
    assert [round(timeout, 3) for *_, timeout in source.calls] == [2.0, 1.2, 0.4]
    assert "budget" in outcomes[-1].reason
    assert not outcomes[-1].queried


# --- the HTTP client against a local server -----------------------------------------------------


@pytest.fixture
def http_answer() -> Iterator[tuple[str, list[tuple[int, bytes]], list[str]]]:
    """A server answering queued `(status, body)` pairs; yields its URL, the queue and the paths asked."""
    answers: list[tuple[int, bytes]] = []
    paths: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            paths.append(self.path)
            status, body = answers.pop(0)
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", answers, paths
    server.shutdown()
    server.server_close()


def test_the_client_returns_the_label_sets_and_asks_at_the_alerts_start(
    http_answer: tuple[str, list[tuple[int, bytes]], list[str]],
) -> None:
    url, answers, paths = http_answer
    result = [{"metric": info("step_change", detector="d", route="/a"), "value": [1714557600, "1"]}]
    answers.append(
        (200, json.dumps({"status": "success", "data": {"resultType": "vector", "result": result}}).encode())
    )
    assert PrometheusDriverSource(url + "/").driver_series("d", STARTS, 2.0) == [
        info("step_change", detector="d", route="/a")
    ]
    assert paths[0].startswith("/api/v1/query?") and "time=1714557600.000" in paths[0]


@pytest.mark.parametrize(
    ("status", "body", "message"),
    [
        (400, b'{"status":"error","errorType":"bad_data","error":"parse error"}', "HTTP 400: parse error"),
        (503, b"<html>overloaded</html>", "HTTP 503, not JSON"),
        (
            200,
            b'{"status":"success","data":{"resultType":"matrix","result":[]}}',
            "expected an instant vector",
        ),
    ],
)
def test_the_client_turns_bad_answers_into_lookup_errors_naming_the_query(
    http_answer: tuple[str, list[tuple[int, bytes]], list[str]], status: int, body: bytes, message: str
) -> None:
    url, answers, _ = http_answer
    answers.append((status, body))
    with pytest.raises(DriverLookupError, match=message) as caught:
        PrometheusDriverSource(url).driver_series("d", STARTS, 2.0)
    assert "anomaly_driver_info{detector=" in str(caught.value) and url in str(caught.value)


def test_an_answer_over_the_size_cap_is_a_lookup_error(
    http_answer: tuple[str, list[tuple[int, bytes]], list[str]],
) -> None:
    url, answers, _ = http_answer
    series = [
        {"metric": {"detector": "d", "driver": "x" * 40, "i": str(i)}, "value": [1, "1"]} for i in range(100)
    ]
    body = json.dumps({"status": "success", "data": {"resultType": "vector", "result": series}}).encode()
    answers.append((200, body))
    answers.append((200, body))
    small = PrometheusConnection(url=url, max_response_bytes=len(body) - 1)
    with pytest.raises(DriverLookupError, match="exceeds PROMETHEUS_MAX_RESPONSE_BYTES"):
        PrometheusDriverSource(small).driver_series("d", STARTS, 2.0)
    # The same answer under a cap it fits is read whole.
    fits = PrometheusConnection(url=url, max_response_bytes=len(body))
    assert len(PrometheusDriverSource(fits).driver_series("d", STARTS, 2.0)) == 100


def test_a_prometheus_that_never_answers_times_out_within_the_budget() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)  # accepts connections into the backlog, never answers
    try:
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        # The budget is the socket's read timeout (never the library's default of none).
        with pytest.raises(DriverLookupError, match=r"failed.*read timeout=0\.5"):
            PrometheusDriverSource(url).driver_series("d", STARTS, 0.5)
    finally:
        listener.close()


DRIP_BODY = json.dumps({"status": "success", "data": {"resultType": "vector", "result": []}}).encode()


class _DripServer(ThreadingHTTPServer):
    bytes_sent_when_dropped: list[int]


class _DripHandler(BaseHTTPRequestHandler):
    """Answers at once, then sends its body a byte every 0.2 s: each read is quick, the whole is not.
    (The sleep is the slow server being simulated.) Records how far it got when the client left."""

    server: _DripServer

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(DRIP_BODY)))
        self.end_headers()
        sent = 0
        try:
            for byte in DRIP_BODY:
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
                sent += 1
                time.sleep(0.2)
        except OSError:
            self.server.bytes_sent_when_dropped.append(sent)  # the client gave up, as it should

    def log_message(self, *args: object) -> None:
        pass


def test_an_answer_dripped_slowly_is_cut_off_near_the_budget() -> None:
    server = _DripServer(("127.0.0.1", 0), _DripHandler)
    server.bytes_sent_when_dropped = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        # Raised by the deadline check between reads: the whole body would take ~14 s.
        with pytest.raises(DriverLookupError, match=r"no complete answer within 1\.0s"):
            PrometheusDriverSource(url).driver_series("d", STARTS, 1.0)
        # The client hung up mid-body (the server notices on its next write).
        (sent,) = wait_until(
            lambda: server.bytes_sent_when_dropped, timeout=30, describe="the server to see the client leave"
        )
        assert sent < len(DRIP_BODY)
    finally:
        server.shutdown()
        server.server_close()
