"""The operator app with its services down: each page says what is unreachable, no traceback.

Nothing listens on the ports used here, so these tests need no services; the threshold preview's
happy path uses a small in-process stand-in for Prometheus' `query_range`.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parents[2] / "streamlit_app" / "app.py")
CLOSED = "127.0.0.1:9"  # discard port: connection refused at once


@pytest.fixture
def services_down(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "pipeline.yml"
    config.write_text("detectors:\n  - name: checkout_latency\n    query: up\n")
    monkeypatch.setenv("DATABASE_URL", f"postgresql://postgres@{CLOSED}/slo")
    monkeypatch.setenv("PROMETHEUS_URL", f"http://{CLOSED}")
    monkeypatch.setenv("SLO_PIPELINE_CONFIG", str(config))
    monkeypatch.setenv("SLO_PIPELINE_QUERY_TIMEOUT", "2")


def _run(page: str | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60).run()
    if page is not None:
        at.sidebar.radio(key="page").set_value(page).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


@pytest.mark.parametrize("page", ["Incidents", "SLOs"])
def test_database_down_shows_an_error_naming_the_server(services_down: None, page: str) -> None:
    at = _run(page)
    messages = [e.value for e in at.error]
    assert len(messages) == 1, messages
    assert "unavailable" in messages[0]
    assert "port=9" in messages[0] and "Connection refused" in messages[0]


def test_prometheus_down_shows_an_error_in_the_threshold_preview(services_down: None) -> None:
    at = _run("Threshold preview")
    at.button[0].click().run()
    assert not at.exception
    messages = [e.value for e in at.error]
    assert len(messages) == 1 and "Prometheus" in messages[0] and "unavailable" in messages[0], messages


def test_invalid_configuration_is_reported_not_raised(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "pipeline.yml"
    config.write_text("detectors:\n  - name: Not-Snake\n    query: up\n")
    monkeypatch.setenv("SLO_PIPELINE_CONFIG", str(config))
    at = _run()
    assert any("configuration cannot be used" in e.value and "Not-Snake" in e.value for e in at.error)


class _TailProbabilities(BaseHTTPRequestHandler):
    """A Prometheus stand-in answering `query_range` with one series that dips once per call."""

    def do_GET(self) -> None:
        params = parse_qs(urlparse(self.path).query)
        start, end, step = (float(params[k][0]) for k in ("start", "end", "step"))
        grid = [start + i * step for i in range(int((end - start) // step) + 1)]
        values = [[t, "1e-9" if 100 <= i < 110 else "0.5"] for i, t in enumerate(grid)]
        body = {
            "status": "success",
            "data": {
                "resultType": "matrix",
                "result": [{"metric": {"detector": "checkout_latency", "route": "/"}, "values": values}],
            },
        }
        payload = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: object) -> None:  # keep pytest output clean
        pass


@pytest.fixture
def fake_prometheus() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _TailProbabilities)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def test_threshold_preview_counts_the_alarms_in_the_history(
    services_down: None, fake_prometheus: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROMETHEUS_URL", fake_prometheus)
    at = _run("Threshold preview")
    at.number_input(key="preview_budget").set_value(2.0)
    at.slider(key="preview_days").set_value(1)
    at.button[0].click().run()

    assert not at.exception and not at.error, [e.value for e in at.error]
    assert [m.value for m in at.metric] == ["1", "1"]  # one dip -> one alarm at either budget
    table = at.dataframe[0].value
    assert {0.1, 1.0, 2.0, 10.0} <= set(table["false_alarms_per_week"])
    assert set(table["alarms"]) == {1}
    assert any(re.fullmatch(r"1 series, 14[34]\d steps of 60 s\.", c.value) for c in at.caption)
