"""Landing pages on `/` of every service, the small /metrics listener of the worker and the rules
sync, and the worker's retrain-queue collector when PostgreSQL is unreachable."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest
import requests
from prometheus_client import CollectorRegistry, Counter

from exporter.http_server import MetricsPage
from exporter.http_server import start_http_server as start_exporter_http
from slo_pipeline.adapters.metrics_http import landing_page, metrics_served, start_metrics_server
from slo_pipeline.devstack.launch import free_port
from slo_pipeline.settings import PipelineConfig, load_settings
from webhook.app import create_app
from worker.metrics import create_registry


def test_landing_page_links_and_escapes() -> None:
    page = landing_page("a <b>", [("/metrics", "x & y")], 'about "it"').decode()
    assert "<title>a &lt;b&gt;</title>" in page
    assert '<a href="/metrics">/metrics</a> — x &amp; y' in page
    assert "about &quot;it&quot;" in page


@pytest.fixture
def metrics_server() -> Iterator[str]:
    registry = CollectorRegistry()
    Counter("demo_things", "Things.", registry=registry).inc()
    server = start_metrics_server("127.0.0.1:0", registry, title="thing", is_healthy=lambda: False)
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_metrics_server_routes(metrics_server: str) -> None:
    index = requests.get(f"{metrics_server}/", timeout=5)
    assert index.status_code == 200 and index.headers["Content-Type"].startswith("text/html")
    assert '<a href="/metrics">' in index.text and '<a href="/healthz">' in index.text
    assert "demo_things_total 1.0" in requests.get(f"{metrics_server}/metrics", timeout=5).text
    assert requests.get(f"{metrics_server}/healthz", timeout=5).status_code == 503
    assert requests.get(f"{metrics_server}/nope", timeout=5).status_code == 404


def test_busy_port_names_the_service() -> None:
    registry = CollectorRegistry()
    first = start_metrics_server("127.0.0.1:0", registry, title="first")
    try:
        with pytest.raises(OSError, match="second could not listen"):
            start_metrics_server(f"127.0.0.1:{first.server_address[1]}", registry, title="second")
    finally:
        first.shutdown()
        first.server_close()


def test_retrain_queue_with_database_down_is_up_0_and_lint_clean() -> None:
    registry = create_registry(f"postgresql://postgres@127.0.0.1:{free_port()}/nothing_listens")
    server = start_metrics_server("127.0.0.1:0", registry, title="worker")
    try:
        text = requests.get(f"http://127.0.0.1:{server.server_address[1]}/metrics", timeout=15).text
    finally:
        server.shutdown()
        server.server_close()
    assert "slo_pipeline_retrain_queue_up 0.0" in text
    assert "slo_pipeline_retrain_jobs{" not in text  # unknown, not zero
    lint = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True)
    assert lint.returncode == 0 and not (lint.stdout + lint.stderr).strip(), lint.stdout + lint.stderr


def test_exporter_root_is_a_landing_page() -> None:
    server = start_exporter_http(
        "127.0.0.1:0", MetricsPage(lambda: b""), is_ready=lambda: True, is_healthy=lambda: True
    )
    try:
        page = requests.get(f"http://127.0.0.1:{server.server_address[1]}/", timeout=5)
    finally:
        server.shutdown()
        server.server_close()
    assert page.status_code == 200
    for link in ("/metrics", "/healthz", "/-/ready"):
        assert f'<a href="{link}">' in page.text


def test_webhook_root_is_a_landing_page() -> None:
    settings = load_settings(
        database_url=f"postgresql://postgres@127.0.0.1:{free_port()}/nothing_listens",
        webhook_token="t",
        pipeline=PipelineConfig(),
    )
    response = create_app(settings).test_client().get("/")
    assert response.status_code == 200 and response.content_type.startswith("text/html")
    assert '<a href="/metrics">' in response.get_data(as_text=True)


def test_metrics_served_only_while_the_block_runs() -> None:
    registry = CollectorRegistry()
    Counter("served_things", "things", registry=registry).inc()
    with metrics_served("127.0.0.1:0", registry, title="block") as server:
        assert server is not None
        url = f"http://127.0.0.1:{server.server_address[1]}/metrics"
        assert "served_things_total 1.0" in requests.get(url, timeout=5).text
    with pytest.raises(requests.ConnectionError):
        requests.get(url, timeout=5)
    with metrics_served("", registry, title="off") as nothing:  # an empty setting serves nothing
        assert nothing is None
