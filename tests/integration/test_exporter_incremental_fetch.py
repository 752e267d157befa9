"""Incremental fetching against a real Prometheus 2.42: every cycle's block equals a full fetch's.

Samples are pushed through Prometheus' remote-write receiver, so the test decides exactly what is
in the TSDB at each fetch (no race with a scrape landing between the incremental fetch and the
full one it is compared with): series that appear, vanish with a staleness marker, go silent
(ended by the lookback delta), have a gap, carry NaN values, and one whose samples always arrive
100 s late, like a slow scrape or rule evaluation. A univariate detector and a multivariate one
with a `rate()` signal are fetched incrementally through `PrometheusSeriesSource` (the exporter's
source, default re-read window) and compared with `fetch_detector_range` over the same window,
cycle after cycle. A source that re-reads nothing must differ on the same data: the overlap is
what keeps the blocks equal.
"""

from __future__ import annotations

import math
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import pytest
import requests

from exporter.service import PrometheusSeriesSource
from slo_pipeline.adapters.prometheus import SeriesBlock, fetch_detector_range
from slo_pipeline.devstack import launch
from slo_pipeline.settings import DetectorConfig, FeatureWindows, SignalConfig, load_settings

pytestmark = pytest.mark.integration

STEP = 60
WINDOWS = FeatureWindows(short=2, medium=4, long=8)  # a 13-step window
LATENCY = DetectorConfig(name="latency", query="it_latency_seconds", step_seconds=STEP, windows=WINDOWS)
SERVICE = DetectorConfig(
    name="service",
    step_seconds=STEP,
    windows=WINDOWS,
    signals=[
        SignalConfig(name="latency", query="it_latency_seconds"),
        SignalConfig(name="requests", query="rate(it_requests_total[3m])"),
    ],
)
WINDOW = LATENCY.scoring_window_seconds
SCRAPE = 15  # seconds between samples of one series
LATE_SECONDS = 100  # the late route's samples become visible this long after their timestamp
CYCLES = 34
STALE_NAN = struct.unpack("<d", struct.pack("<Q", 0x7FF0000000000002))[0]  # Prometheus' staleness marker


# --- remote write: protobuf WriteRequest + snappy, by hand (both formats are tiny) -----------


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _time_series(labels: dict[str, str], samples: list[tuple[float, float]]) -> bytes:
    body = b"".join(
        _field(1, _field(1, k.encode()) + _field(2, v.encode())) for k, v in sorted(labels.items())
    )
    for timestamp, value in samples:
        sample = b"\x09" + struct.pack("<d", value) + b"\x10" + _varint(round(timestamp * 1000))
        body += _field(2, sample)
    return body


def _snappy_literal(data: bytes) -> bytes:
    """Snappy's block format with the whole payload as one literal (valid, just not compressed)."""
    n = len(data) - 1
    if n < 60:
        tag = bytes([n << 2])
    else:
        size = (n.bit_length() + 7) // 8
        tag = bytes([(59 + size) << 2]) + n.to_bytes(size, "little")
    return _varint(len(data)) + tag + data


def remote_write(url: str, series: dict[tuple[tuple[str, str], ...], list[tuple[float, float]]]) -> None:
    request = b"".join(
        _field(1, _time_series(dict(key), samples)) for key, samples in series.items() if samples
    )
    response = requests.post(
        f"{url}/api/v1/write",
        data=_snappy_literal(request),
        headers={
            "Content-Encoding": "snappy",
            "Content-Type": "application/x-protobuf",
            "X-Prometheus-Remote-Write-Version": "0.1.0",
        },
        timeout=10,
    )
    assert response.status_code == 204, f"remote write answered {response.status_code}: {response.text}"


# --- the world the test writes --------------------------------------------------------------


@dataclass
class World:
    """Per route, what is written when; `advance(end)` writes everything up to `end`."""

    first_time: float
    rng: np.random.Generator = field(default_factory=lambda: np.random.default_rng(8))
    written_until: dict[str, float] = field(default_factory=dict)
    counters: dict[str, float] = field(default_factory=dict)
    stale_written: set[str] = field(default_factory=set)

    ROUTES = ("/steady", "/late", "/vanishing", "/silent", "/new", "/gap", "/nan")

    def state(self, route: str, cycle: int) -> str:
        """'on', 'stale' (write a staleness marker once, then nothing) or 'off' (write nothing)."""
        if route == "/vanishing" and cycle >= 8:
            return "stale"
        if route == "/silent" and cycle >= 12:
            return "off"  # no marker: the lookback delta ends it after 5 minutes
        if route == "/new" and cycle < 10:
            return "off"
        if route == "/gap" and 5 <= cycle < 9:
            return "stale"
        if route == "/nan" and cycle >= 20:
            return "stale"
        return "on"

    def value(self, route: str, cycle: int) -> float:
        if route == "/nan" and cycle >= 3:
            return math.nan  # e.g. 0/0 in a ratio: points that are there but not a number
        if route == "/steady" and cycle == 6:
            return math.inf
        return float(0.1 + 0.01 * self.rng.standard_normal())

    def advance(self, url: str, end: float, cycle: int) -> None:
        batch: dict[tuple[tuple[str, str], ...], list[tuple[float, float]]] = {}
        for route in self.ROUTES:
            state = self.state(route, cycle)
            if state != "stale":
                self.stale_written.discard(route)
            latest = end - LATE_SECONDS if route == "/late" else end
            since = self.written_until.get(route, self.first_time)
            times = np.arange(since + SCRAPE, latest + 1e-9, SCRAPE) if latest > since else np.array([])
            if state == "off" or len(times) == 0:
                self.written_until[route] = max(since, float(times[-1])) if len(times) else since
                continue
            gauge = batch.setdefault((("__name__", "it_latency_seconds"), ("route", route)), [])
            counter = batch.setdefault((("__name__", "it_requests_total"), ("route", route)), [])
            if state == "stale":
                if route not in self.stale_written:
                    gauge.append((float(times[0]), STALE_NAN))
                    counter.append((float(times[0]), STALE_NAN))
                    self.stale_written.add(route)
            else:
                for t in times.tolist():
                    gauge.append((t, self.value(route, cycle)))
                    self.counters[route] = self.counters.get(route, 0.0) + float(self.rng.integers(1, 20))
                    counter.append((t, self.counters[route]))
            self.written_until[route] = float(times[-1])
        remote_write(url, batch)


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[launch.ManagedProcess]:
    folder = tmp_path_factory.mktemp("incremental-fetch")
    config = launch.write_prometheus_config(
        folder / "prometheus.yml", scrape_targets={}, alertmanager_url=None, rule_files=[]
    )
    process = launch.start_prometheus(
        config_file=config, data_dir=folder / "data", extra_args=["--web.enable-remote-write-receiver"]
    )
    try:
        yield process
    finally:
        process.stop()


def same_block(a: SeriesBlock, b: SeriesBlock) -> bool:
    return (
        a.labels == b.labels
        and a.signals == b.signals
        and np.array_equal(a.timestamps, b.timestamps)
        and a.values.shape == b.values.shape
        and np.array_equal(a.values, b.values, equal_nan=True)
    )


def routes(block: SeriesBlock) -> list[str]:
    return [labels["route"] for labels in block.labels]


def test_incremental_blocks_equal_full_fetches_cycle_after_cycle(prometheus: launch.ManagedProcess) -> None:
    # The head accepts samples up to an hour behind its newest one; the simulated clock runs
    # 60 s per cycle from 50 minutes ago, with history for the first window before it.
    start = (time.time() - 50 * 60) // STEP * STEP
    world = World(first_time=start - WINDOW - 120)
    settings = load_settings(prometheus_url=prometheus.url)
    source = PrometheusSeriesSource(settings)
    no_overlap = PrometheusSeriesSource(settings, reread_seconds=0)  # what the overlap protects against
    mismatches_without_overlap = 0
    seen: dict[str, list[list[str]]] = {"latency": [], "service": []}
    nan_only_columns = 0
    for cycle in range(CYCLES):
        end = start + cycle * STEP + 17  # a clock that is not on the grid
        world.advance(prometheus.url, end, cycle)
        for detector in (LATENCY, SERVICE):
            block = source.fetch(detector, start=end - WINDOW, end=end)
            stats = source.last_fetch(detector.name)
            assert stats is not None
            assert stats.full == (cycle == 0), f"cycle {cycle}: {stats}"
            expected = fetch_detector_range(prometheus.url, detector, start=end - WINDOW, end=end)
            assert same_block(block, expected), (
                f"{detector.name}, cycle {cycle}: {routes(block)} vs {routes(expected)}"
            )
            seen[detector.name].append(routes(block))
            if detector is LATENCY:
                nan_only_columns += int(np.isnan(block.values).all(axis=0).sum())
                unguarded = no_overlap.fetch(detector, start=end - WINDOW, end=end)
                mismatches_without_overlap += not same_block(unguarded, expected)
        if cycle:
            assert not stats.full and stats.steps == 3, stats  # 2 re-read steps + the new one

    latency = seen["latency"]
    assert "/new" not in latency[9] and "/new" in latency[10]
    # Each vanished series stays while it has a point in the window, then leaves.
    # Its last point is cycle 7's newest instant; the 13-step window lets it go at cycle 20.
    vanishing = ["/vanishing" in names for names in latency]
    assert all(vanishing[:20]) and not any(vanishing[20:])
    assert "/silent" in latency[-10] and "/silent" not in latency[-1]
    # Only NaN points in the window from cycle 16 on, but points: in the answer until cycle 32.
    assert "/nan" in latency[25] and "/nan" not in latency[-1]
    assert nan_only_columns > 0, "a series with only NaN points must have been compared"
    assert all("/late" in names for names in latency)
    assert mismatches_without_overlap > 0, "without re-reading, the late samples are missed"
