"""Threshold preview page, signed in against a real PostgreSQL.

The happy path uses a small in-process stand-in for Prometheus' `query_range` that returns one
series dipping once, so the expected alarm count is known exactly.
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

from tests.fixtures.ui import signed_in_app

pytestmark = pytest.mark.integration


@pytest.fixture
def app_env(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    config = tmp_path / "pipeline.yml"
    config.write_text("detectors:\n  - name: checkout_latency\n    query: up\n")
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("SLO_PIPELINE_CONFIG", str(config))
    monkeypatch.setenv("PROMETHEUS_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("SLO_PIPELINE_QUERY_TIMEOUT", "2")
    return database_url


def test_prometheus_down_shows_an_error_in_the_threshold_preview(app_env: str) -> None:
    at = signed_in_app(app_env)
    at.sidebar.radio(key="page").set_value("Threshold").run()
    at.button(key="FormSubmitter:threshold_preview-Preview").click().run()
    assert not at.exception
    messages = [e.value for e in at.error]
    assert len(messages) == 1 and "Prometheus" in messages[0] and "unavailable" in messages[0], messages


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
    app_env: str, fake_prometheus: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROMETHEUS_URL", fake_prometheus)
    at = signed_in_app(app_env)
    at.sidebar.radio(key="page").set_value("Threshold").run()
    at.number_input(key="preview_budget").set_value(2.0)
    at.slider(key="preview_days").set_value(1)
    at.button(key="FormSubmitter:threshold_preview-Preview").click().run()

    assert not at.exception and not at.error, [e.value for e in at.error]
    assert [m.value for m in at.metric] == ["1", "1"]  # one dip -> one alarm at either budget
    table = at.dataframe[0].value
    assert {0.1, 1.0, 2.0, 10.0} <= set(table["false_alarms_per_week"])
    assert set(table["alarms"]) == {1}
    assert any(re.fullmatch(r"1 series, 14[34]\d steps of 60 s\.", c.value) for c in at.caption)
