"""The live simulated service: counters follow (injected) time, incidents via HTTP."""

from __future__ import annotations

import argparse
import threading
from collections.abc import Iterator

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from slo_pipeline.devstack.simulator.commands import listen_argument
from slo_pipeline.devstack.simulator.model import IncidentError
from slo_pipeline.devstack.simulator.server import SimulatedService, make_server


class FakeClock:
    def __init__(self, now: float = 15 * 3600.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _value(text: str, name: str, **labels: str) -> float:
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and labels.items() <= sample.labels.items()
    )


def test_counters_advance_with_time_at_the_model_rate() -> None:
    clock = FakeClock()
    service = SimulatedService(seed=1, clock=clock)
    assert _value(service.metrics_text(), "demo_http_requests_total") == 0

    clock.now += 600
    first = _value(service.metrics_text(), "demo_http_requests_total")
    # 24 req/s at the daily peak (x1.6), for 600 s.
    assert first == pytest.approx(24 * 1.6 * 600, rel=0.05)
    assert _value(service.metrics_text(), "demo_http_requests_total") == first  # no time, no traffic


def test_counting_since_the_history_end_leaves_no_gap_at_the_seam() -> None:
    """The first scrape after start-up holds the traffic since the backfilled history ended, so
    rate() over the seam does not dip."""
    clock = FakeClock()
    service = SimulatedService(seed=1, clock=clock, counting_since=clock.now - 600)
    assert _value(service.metrics_text(), "demo_http_requests_total") == pytest.approx(
        24 * 1.6 * 600, rel=0.05
    )
    with pytest.raises(ValueError, match="must not be in the future"):
        SimulatedService(seed=1, clock=clock, counting_since=clock.now + 1)


def test_incident_changes_the_live_signal_and_is_listed() -> None:
    clock = FakeClock()
    service = SimulatedService(seed=1, clock=clock)
    incident = service.start_incident({"kind": "error_burst", "duration_seconds": 300, "magnitude": 0.4})
    clock.now += 300
    text = service.metrics_text()

    ratio = _value(text, "demo_http_requests_total", code="500") / _value(text, "demo_http_requests_total")
    assert ratio == pytest.approx(0.4, abs=0.03)
    assert _value(text, "demo_simulator_incident_active", kind="error_burst") == 0  # ended just now
    listed = service.incidents_json()
    assert listed["active"] == [] and listed["past"][0]["start"] == incident.start

    service.start_incident({"kind": "latency_spike", "duration_seconds": 60})
    assert service.incidents_json()["active"][0]["kind"] == "latency_spike"
    assert _value(service.metrics_text(), "demo_simulator_incident_active", kind="latency_spike") == 1


def test_bad_incident_raises_and_changes_nothing() -> None:
    service = SimulatedService(seed=1, clock=FakeClock())
    with pytest.raises(IncidentError):
        service.start_incident({"kind": "error_burst", "duration_seconds": 0})
    assert service.incidents_json() == {"active": [], "past": []}


@pytest.fixture
def server_url() -> Iterator[str]:
    server = make_server(SimulatedService(seed=1), "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_http_endpoints(server_url: str) -> None:
    assert requests.get(f"{server_url}/healthz", timeout=5).json() == {"status": "ok"}
    metrics = requests.get(f"{server_url}/metrics", timeout=5)
    assert metrics.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert "demo_http_requests_total" in metrics.text
    assert requests.get(f"{server_url}/nope", timeout=5).status_code == 404
    index = requests.get(f"{server_url}/", timeout=5)
    assert index.status_code == 200 and index.headers["Content-Type"].startswith("text/html")
    assert '<a href="/metrics">' in index.text and '<a href="/healthz">' in index.text

    created = requests.post(
        f"{server_url}/incidents", json={"kind": "traffic_drop", "duration_seconds": 60}, timeout=5
    )
    assert created.status_code == 202
    assert created.json()["kind"] == "traffic_drop" and created.json()["magnitude"] == 0.9
    assert created.json()["active"] is True
    listed = requests.get(f"{server_url}/incidents", timeout=5).json()
    assert [incident["kind"] for incident in listed["active"]] == ["traffic_drop"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "not valid JSON"),
        (b'{"kind": "meteor", "duration_seconds": 5}', "kind must be one of"),
        (b'{"kind": "error_burst", "duration_seconds": 5, "magnitude": 7}', "magnitude of error_burst"),
    ],
)
def test_http_rejects_bad_incidents_with_400(server_url: str, body: bytes, message: str) -> None:
    response = requests.post(f"{server_url}/incidents", data=body, timeout=5)
    assert response.status_code == 400
    assert message in response.json()["error"]
    assert requests.get(f"{server_url}/incidents", timeout=5).json() == {"active": [], "past": []}


@pytest.mark.parametrize(
    ("text", "expected"),
    [("0.0.0.0:8000", ("0.0.0.0", 8000)), ("[::1]:9", ("::1", 9)), (":8000", ("127.0.0.1", 8000))],
)
def test_listen_argument(text: str, expected: tuple[str, int]) -> None:
    assert listen_argument(text) == expected


@pytest.mark.parametrize("text", ["8000", "host:port", "host:70000"])
def test_listen_argument_rejects(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="HOST:PORT"):
        listen_argument(text)
