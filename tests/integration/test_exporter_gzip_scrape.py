"""A real Prometheus 2.42 scrapes the exporter's page gzip-compressed and ingests every series."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from exporter.exposition import assemble_page, render_detector
from exporter.http_server import MetricsPage, start_http_server
from slo_pipeline.devstack import launch
from slo_pipeline.settings import DetectorConfig
from tests.fixtures.services import prometheus_query
from tests.fixtures.waiting import wait_until

pytestmark = pytest.mark.integration

N_SERIES = 3000
DETECTOR = DetectorConfig(name="gzip_latency", query="x", step_seconds=60)


class CountingPage(MetricsPage):
    """The real page, counting how each scrape was answered."""

    def __init__(self) -> None:
        super().__init__(lambda: b"anomaly_exporter_up 1\n")
        self.gzip_scrapes = 0
        self.plain_scrapes = 0

    def gzip_body(self) -> bytes:
        self.gzip_scrapes += 1
        return super().gzip_body()

    def body(self) -> bytes:
        self.plain_scrapes += 1
        return super().body()


def test_prometheus_scrapes_the_compressed_page(
    prometheus_factory: Callable[..., launch.ManagedProcess],
) -> None:
    labels = [{"instance": f"host-{i:05d}:9100", "route": f"/r{i % 7}"} for i in range(N_SERIES)]
    probabilities = np.random.default_rng(4).random(N_SERIES)
    page = CountingPage()
    page.publish(assemble_page([render_detector(DETECTOR, labels, probabilities)], []))
    server = start_http_server("127.0.0.1:0", page, is_ready=lambda: True, is_healthy=lambda: True)
    try:
        target = f"127.0.0.1:{server.server_address[1]}"
        prometheus = prometheus_factory(scrape_targets={"slo-pipeline-exporter": [target]})
        wait_until(
            lambda: prometheus_query(prometheus, f'count(anomaly_score{{detector="{DETECTOR.name}"}})'),
            timeout=60,
            interval=0.5,
            describe=f"Prometheus to hold all {N_SERIES} scores",
            until=lambda count: bool(count) and float(count[0]["value"][1]) == N_SERIES,
        )
        up = prometheus_query(prometheus, 'up{job="slo-pipeline-exporter"}')
        assert float(up[0]["value"][1]) == 1
        assert page.gzip_scrapes >= 1 and page.plain_scrapes == 0
    finally:
        server.shutdown()
        server.server_close()
