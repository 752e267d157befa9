"""The connection settings every Prometheus-API reader shares: validation, the session they
build, what reaches the wire (a loopback server records it) and what never reaches a message."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from slo_pipeline.adapters.incident_drivers import DriverLookupError, PrometheusDriverSource
from slo_pipeline.adapters.prometheus import PrometheusQueryError, fetch_range
from slo_pipeline.adapters.prometheus_connection import (
    PrometheusAuthError,
    PrometheusSecretError,
    prometheus_session,
    raise_for_auth,
    redact_url,
)
from slo_pipeline.settings import ConfigError, PrometheusConnection, load_settings

SECRET = "hunter2-very-secret"


class Recorder:
    """A loopback Prometheus-API endpoint: records each request's headers, answers `status`."""

    def __init__(self) -> None:
        self.headers: list[dict[str, str]] = []
        self.status = 200
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                recorder.headers.append({k.lower(): v for k, v in self.headers.items()})
                if recorder.status != 200:
                    body = b"unauthorized"
                else:
                    result_type = "vector" if self.path.startswith("/api/v1/query?") else "matrix"
                    body = json.dumps(
                        {"status": "success", "data": {"resultType": result_type, "result": []}}
                    ).encode()
                self.send_response(recorder.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    server = Recorder()
    yield server
    server.close()


def test_environment_variables_build_the_connection_group(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PROMETHEUS_URL", "https://mimir.example/prometheus")
    monkeypatch.setenv("PROMETHEUS_BEARER_TOKEN", SECRET)
    monkeypatch.setenv("PROMETHEUS_HEADERS", '{"X-Scope-OrgID": "team-a"}')
    monkeypatch.setenv("PROMETHEUS_CA_FILE", str(tmp_path / "ca.pem"))
    monkeypatch.setenv("PROMETHEUS_CERT_FILE", str(tmp_path / "client.pem"))
    monkeypatch.setenv("PROMETHEUS_KEY_FILE", str(tmp_path / "client.key"))
    monkeypatch.setenv("SLO_PIPELINE_QUERY_TIMEOUT", "12")
    monkeypatch.setenv("SLO_PIPELINE_CONFIG", str(tmp_path / "absent.yml"))

    connection = load_settings().prometheus

    assert connection.url == "https://mimir.example/prometheus"
    assert connection.headers == {"X-Scope-OrgID": "team-a"}
    assert connection.timeout_seconds == 12
    session = prometheus_session(connection)
    assert session.headers["Authorization"] == f"Bearer {SECRET}"
    assert session.headers["X-Scope-OrgID"] == "team-a"
    assert session.verify == str(tmp_path / "ca.pem")
    assert session.cert == (str(tmp_path / "client.pem"), str(tmp_path / "client.key"))
    assert SECRET not in repr(connection) and SECRET not in str(load_settings())


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"PROMETHEUS_PASSWORD": SECRET}, "needs PROMETHEUS_USERNAME"),
        (
            {"PROMETHEUS_USERNAME": "u", "PROMETHEUS_PASSWORD": SECRET, "PROMETHEUS_PASSWORD_FILE": "/x"},
            "not both",
        ),
        ({"PROMETHEUS_USERNAME": "u", "PROMETHEUS_BEARER_TOKEN": SECRET}, "basic auth"),
        ({"PROMETHEUS_BEARER_TOKEN": SECRET, "PROMETHEUS_BEARER_TOKEN_FILE": "/x"}, "not both"),
        ({"PROMETHEUS_CERT_FILE": "/c.pem"}, "go together"),
        ({"PROMETHEUS_CA_FILE": "/ca.pem", "PROMETHEUS_TLS_INSECURE_SKIP_VERIFY": "true"}, "contradict"),
        ({"PROMETHEUS_HEADERS": "{not json"}, "not JSON"),
        ({"PROMETHEUS_HEADERS": '["X-Scope-OrgID"]'}, "JSON object of strings"),
        ({"PROMETHEUS_HEADERS": '{"X-Scope-OrgID": 3}'}, "JSON object of strings"),
        ({"PROMETHEUS_HEADERS": '{"authorization": "Bearer x"}'}, "may not set"),
    ],
)
def test_contradictory_settings_fail_at_start_without_echoing_secrets(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, env: dict[str, str], message: str
) -> None:
    monkeypatch.setenv("SLO_PIPELINE_CONFIG", str(tmp_path / "absent.yml"))
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=message) as caught:
        load_settings()
    assert SECRET not in str(caught.value)


def test_basic_auth_and_headers_reach_the_backend(recorder: Recorder) -> None:
    connection = PrometheusConnection(
        url=recorder.url, username="reader", password=SECRET, headers={"X-Scope-OrgID": "team-a"}
    )
    for transport in ("prometheus-api-client", "direct"):
        fetch_range(connection, "up", start=0, end=120, step_seconds=60, transport=transport)
    assert len(recorder.headers) == 2
    for headers in recorder.headers:
        assert headers["authorization"].startswith("Basic ")
        assert headers["x-scope-orgid"] == "team-a"


def test_a_rotated_token_file_is_used_by_the_next_session(recorder: Recorder, tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("first\n")
    connection = PrometheusConnection(url=recorder.url, bearer_token_file=token_file)
    fetch_range(connection, "up", start=0, end=60, step_seconds=60)
    token_file.write_text("second\n")
    fetch_range(connection, "up", start=0, end=60, step_seconds=60)
    assert [h["authorization"] for h in recorder.headers] == ["Bearer first", "Bearer second"]


def test_an_unreadable_or_empty_secret_file_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(PrometheusSecretError, match="cannot read PROMETHEUS_BEARER_TOKEN_FILE"):
        prometheus_session(PrometheusConnection(url="http://x", bearer_token_file=tmp_path / "absent"))
    empty = tmp_path / "empty"
    empty.write_text("\n")
    with pytest.raises(PrometheusSecretError, match="is empty"):
        prometheus_session(PrometheusConnection(url="http://x", username="u", password_file=empty))


@pytest.mark.parametrize("status", [401, 403])
@pytest.mark.parametrize("transport", ["prometheus-api-client", "direct"])
def test_a_refusal_is_one_line_naming_url_and_status(recorder: Recorder, status: int, transport: str) -> None:
    recorder.status = status
    connection = PrometheusConnection(url=recorder.url, username="reader", password=SECRET)
    with pytest.raises(PrometheusAuthError) as caught:
        fetch_range(connection, "up", start=0, end=60, step_seconds=60, transport=transport)  # type: ignore[arg-type]
    message = str(caught.value)
    assert "\n" not in message
    assert recorder.url in message and f"HTTP {status}" in message
    assert SECRET not in message
    assert isinstance(caught.value, PrometheusQueryError)


def test_the_incident_driver_lookup_sends_the_credentials_and_reports_a_refusal(recorder: Recorder) -> None:
    from datetime import UTC, datetime

    source = PrometheusDriverSource(PrometheusConnection(url=recorder.url, bearer_token=SECRET))
    assert source.driver_series("latency", datetime.now(UTC), timeout=5) == []
    assert recorder.headers[-1]["authorization"] == f"Bearer {SECRET}"
    recorder.status = 401
    with pytest.raises(DriverLookupError, match="HTTP 401") as caught:
        source.driver_series("latency", datetime.now(UTC), timeout=5)
    assert SECRET not in str(caught.value)


def test_a_password_in_the_url_is_redacted_everywhere_it_is_shown() -> None:
    assert (
        redact_url(f"https://reader:{SECRET}@prom.example:9443/api")
        == "https://reader:***@prom.example:9443/api"
    )
    assert redact_url("http://prom.example:9090") == "http://prom.example:9090"
    # An unreachable backend's error repeats the URL: the password must not come with it.
    connection = PrometheusConnection(url=f"http://reader:{SECRET}@127.0.0.1:1", timeout_seconds=2)
    for transport in ("prometheus-api-client", "direct"):
        with pytest.raises(PrometheusQueryError) as caught:
            fetch_range(connection, "up", start=0, end=60, step_seconds=60, transport=transport)  # type: ignore[arg-type]
        assert SECRET not in str(caught.value), transport
        assert "reader:***@127.0.0.1:1" in str(caught.value)


def test_raise_for_auth_lets_other_statuses_through() -> None:
    for status in (200, 400, 422, 500, 503):
        raise_for_auth(status, "http://x")
