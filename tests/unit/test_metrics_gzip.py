"""`/metrics` gzip: the compressed answer is exactly the plain page (the anomaly part compressed
once per publish, the live self metrics appended per scrape), and only scrapers that accept gzip
get it."""

from __future__ import annotations

import gzip
import urllib.request
from collections.abc import Iterator

import numpy as np
import pytest

from exporter.exposition import assemble_page, render_detector
from exporter.http_server import MetricsPage, accepts_gzip, start_http_server
from slo_pipeline.settings import DetectorConfig

DETECTOR = DetectorConfig(name="latency", query="x", step_seconds=60, slo="checkout")


def rendered_page(n_series: int, seed: int) -> str:
    labels = [{"instance": f"host-{i:05d}:9100", "route": f"/r{i % 7}"} for i in range(n_series)]
    probabilities = np.random.default_rng(seed).random(n_series)
    return assemble_page([render_detector(DETECTOR, labels, probabilities)], [])


class LiveSelfMetrics:
    """Self metrics that change between scrapes, like the exporter's counters."""

    def __init__(self) -> None:
        self.scrapes = 0

    def __call__(self) -> bytes:
        self.scrapes += 1
        return f"anomaly_exporter_scrapes_total {self.scrapes}\n".encode()


def test_the_gzip_page_equals_the_plain_page_across_scrapes_and_publishes() -> None:
    live = LiveSelfMetrics()
    page = MetricsPage(live)
    for seed in (1, 2):
        page.publish(rendered_page(2000, seed))
        for _ in range(3):
            compressed = page.gzip_body()
            live.scrapes -= 1  # the plain page must show the same counter value
            assert gzip.decompress(compressed) == page.body()
        assert len(compressed) < len(page.body()) / 4


def test_an_empty_page_compresses_too() -> None:
    page = MetricsPage(lambda: b"")
    assert gzip.decompress(page.gzip_body()) == b""
    page.publish("")
    assert gzip.decompress(page.gzip_body()) == b""


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("gzip", True),
        ("gzip, deflate, br", True),
        ("deflate, GZIP;q=0.5", True),
        ("x-gzip", True),
        ("gzip;q=0", False),
        ("gzip;q=0.0, identity", False),
        ("identity", False),
        ("br", False),
        ("", False),
        (None, False),
        ("gzip;q=nonsense", False),
    ],
)
def test_accept_encoding(header: str | None, expected: bool) -> None:
    assert accepts_gzip(header) is expected


@pytest.fixture
def served() -> Iterator[tuple[str, MetricsPage]]:
    page = MetricsPage(lambda: b"anomaly_exporter_up 1\n")
    page.publish(rendered_page(500, 3))
    server = start_http_server("127.0.0.1:0", page, is_ready=lambda: True, is_healthy=lambda: True)
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/metrics", page
    finally:
        server.shutdown()
        server.server_close()


def get(url: str, accept_encoding: str | None) -> tuple[dict[str, str], bytes]:
    request = urllib.request.Request(
        url, headers={"Accept-Encoding": accept_encoding} if accept_encoding else {}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return dict(response.headers.items()), response.read()


def test_the_endpoint_compresses_only_for_a_scraper_that_asks(served: tuple[str, MetricsPage]) -> None:
    url, page = served
    headers, body = get(url, "gzip")
    assert headers["Content-Encoding"] == "gzip" and headers["Vary"] == "Accept-Encoding"
    assert int(headers["Content-Length"]) == len(body)
    assert gzip.decompress(body) == page.body()
    for refused in (None, "identity", "gzip;q=0"):
        headers, body = get(url, refused)
        assert "Content-Encoding" not in headers
        assert body == page.body()
