"""Exporter cost per stage at 1k and 10k series, against a real Prometheus with backfilled data.

Run: `.venv/bin/python benchmarks/bench_exporter.py [--series 1000 10000] [--render-series 100000]
[--rows-out FILE]` (`--series` with no sizes: only the `/metrics` part)

For each size: backfill a synthetic history with promtool, start Prometheus on a free port, then
time one detector's cycle split into stages (HTTP fetch, JSON decode, grid alignment, features,
IsolationForest scoring, exposition rendering) for both transports of `fetch_range`, the
incremental path's own stages (the newest steps only, merged onto the cached matrix), and the
end-to-end `ExporterService.run_cycle` twice: fetching the whole window every cycle (v1) and
incrementally in steady state. The service runs on a simulated clock that advances 60 s per cycle
over the backfilled history, so every steady cycle asks for a new step as it would in production.
Wall time, the exporter's CPU time and Prometheus' CPU time (from /proc) are reported per cycle.
Finally `/metrics` is served at `--render-series` series (no Prometheus needed: the exposition is
pre-rendered, which is the point) and timed over HTTP.
Prints one table; every figure is the median of `--repeat` runs (`--cycles` steady cycles).
`--rows-out FILE` writes the `/metrics` result rows (benchmarks/rowtable.py) for run_all.py.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from slo_pipeline.adapters.prometheus import (
    TRANSPORTS,
    align_matrix,
    fetch_range,
    fetch_range_answer,
    step_grid,
)
from slo_pipeline.core.training import fit_detector_model
from slo_pipeline.devstack import launch
from slo_pipeline.settings import DetectorConfig, PipelineConfig, load_settings

sys.path.insert(0, str(Path(__file__).resolve().parent))
from rowtable import Row, format_table, write_rows

METRIC = "bench_latency_seconds"
STEP_SECONDS = 60


def synthetic_values(n_series: int, times: np.ndarray, seed: int) -> np.ndarray:
    """`[T, N]` gauges with a daily-ish wave plus noise: what the benchmark serves and trains on."""
    rng = np.random.default_rng(seed)
    columns = []
    for i in range(n_series):
        base = 0.05 + 0.2 * rng.random()
        wave = base * (1 + 0.3 * np.sin(2 * np.pi * times / 86_400 + i))
        columns.append(np.round(wave + rng.normal(0, base * 0.05, len(times)), 4))
    return np.stack(columns, axis=1)


def write_openmetrics(path: Path, n_series: int, n_points: int, end: int, step: int = STEP_SECONDS) -> None:
    """`n_series` synthetic gauges, one sample per `step`, ending at `end`."""
    times = end - step * np.arange(n_points - 1, -1, -1)
    values = synthetic_values(n_series, times, seed=7)
    with path.open("w", encoding="utf-8") as out:
        out.write(f"# HELP {METRIC} Synthetic latency for the exporter benchmark.\n# TYPE {METRIC} gauge\n")
        for i in range(n_series):
            labels = f'{METRIC}{{instance="host-{i:05d}:9100",service="svc-{i % 50:02d}"}}'
            rows = zip(values[:, i].tolist(), times.tolist(), strict=True)
            out.writelines(f"{labels} {v} {t}\n" for v, t in rows)
        out.write("# EOF\n")


def median_seconds(action: Callable[[], object], repeat: int) -> float:
    timings = []
    for _ in range(repeat):
        began = time.perf_counter()
        action()
        timings.append(time.perf_counter() - began)
    return statistics.median(timings)


def fetch_body(url: str, query: str, start: float, end: float, gzip: bool) -> bytes:
    import requests

    headers = {"Accept-Encoding": "gzip" if gzip else "identity"}
    params = {"query": query, "start": repr(start), "end": repr(end), "step": str(STEP_SECONDS)}
    response = requests.get(f"{url}/api/v1/query_range", params=params, headers=headers, timeout=120)
    response.raise_for_status()
    return response.content


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, nargs="*", default=[1000, 10_000])
    parser.add_argument("--render-series", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--cycles", type=int, default=5, help="steady-state service cycles per mode")
    parser.add_argument("--rows-out", help="write the /metrics result rows as JSON to this file")
    args = parser.parse_args(argv)

    rows: list[tuple[str, str, float]] = []
    for n_series in args.series:
        rows.extend(bench_cycle(n_series, args.repeat, args.cycles))
    endpoint_rows, result = bench_metrics_endpoint(args.render_series, args.repeat)
    rows.extend(endpoint_rows)

    print(f"\n{'series':>8}  {'stage':<58} {'seconds':>9}")
    for size, stage, seconds in rows:
        print(f"{size:>8}  {stage:<58} {seconds:>9.4f}")
    print("\n" + format_table(result))
    write_rows(result, args.rows_out)
    return 0


def bench_cycle(n_series: int, repeat: int, cycles: int) -> list[tuple[str, str, float]]:
    import orjson

    detector = DetectorConfig(name="bench", query=METRIC, step_seconds=STEP_SECONDS)
    # The window, plus room for the simulated clock of the service cycles to advance over.
    n_points = int(detector.scoring_window_seconds / STEP_SECONDS) + 20 + cycles + 2
    end = int(time.time()) // STEP_SECONDS * STEP_SECONDS
    rows: list[tuple[str, str, float]] = []
    size = str(n_series)
    with tempfile.TemporaryDirectory(prefix="bench-exporter-") as tmp:
        folder = Path(tmp)
        openmetrics = folder / "history.om"
        began = time.perf_counter()
        write_openmetrics(openmetrics, n_series, n_points, end)
        launch.backfill_openmetrics(openmetrics, folder / "data")
        openmetrics.unlink()
        elapsed = time.perf_counter() - began
        print(f"[{n_series}] history written and backfilled in {elapsed:.1f}s", flush=True)
        config = launch.write_prometheus_config(
            folder / "prometheus.yml", scrape_targets={}, alertmanager_url=None, rule_files=[]
        )
        prometheus = launch.start_prometheus(config_file=config, data_dir=folder / "data")
        try:
            start = end - detector.scoring_window_seconds
            fetch_range(prometheus.url, METRIC, start=start, end=end, step_seconds=STEP_SECONDS)  # warm
            for gzip in (True, False):
                body = fetch_body(prometheus.url, METRIC, start, end, gzip)
                seconds = median_seconds(
                    lambda g=gzip: fetch_body(prometheus.url, METRIC, start, end, g), repeat
                )
                label = "gzip" if gzip else "identity"
                rows.append((size, f"HTTP query_range ({label}, {len(body) / 1e6:.1f} MB raw)", seconds))
            gc.disable()
            rows.append((size, "decode: stdlib json", median_seconds(lambda: json.loads(body), repeat)))
            rows.append((size, "decode: orjson", median_seconds(lambda: orjson.loads(body), repeat)))
            result = orjson.loads(body)["data"]["result"]
            grid = step_grid(start, end, STEP_SECONDS)
            seconds = median_seconds(lambda: align_matrix([result], grid), repeat)
            rows.append((size, "align onto step grid (str -> float64)", seconds))
            gc.enable()
            for transport in TRANSPORTS:
                seconds = median_seconds(
                    lambda t=transport: fetch_range(
                        prometheus.url, METRIC, start=start, end=end, step_seconds=STEP_SECONDS, transport=t
                    ),
                    repeat,
                )
                rows.append((size, f"fetch_range total ({transport})", seconds))
            block = fetch_range(prometheus.url, METRIC, start=start, end=end, step_seconds=STEP_SECONDS)
            rows.extend(bench_incremental_stages(size, prometheus.url, start, end, repeat))
            rows.extend(bench_model_stages(size, detector, block.values, repeat))
            rows.extend(bench_render(size, detector, block.labels, repeat))
            for incremental in (False, True):
                rows.extend(bench_service_cycles(size, detector, prometheus, end, cycles, incremental))
        finally:
            prometheus.stop()
    return rows


def bench_incremental_stages(
    size: str, url: str, start: float, end: float, repeat: int
) -> list[tuple[str, str, float]]:
    """The incremental path's own stages: the newest steps only, merged onto the cached matrix."""
    from exporter.series_cache import CachedMatrix, merge

    # The previous cycle's window, and this cycle's newest 3 steps (2 re-read + 1 new).
    previous = fetch_range_answer(
        url, METRIC, start=start - STEP_SECONDS, end=end - STEP_SECONDS, step_seconds=STEP_SECONDS
    )
    newest_start = end - 2 * STEP_SECONDS
    newest = fetch_range_answer(url, METRIC, start=newest_start, end=end, step_seconds=STEP_SECONDS)
    fetch_seconds = median_seconds(
        lambda: fetch_range_answer(url, METRIC, start=newest_start, end=end, step_seconds=STEP_SECONDS),
        repeat,
    )
    cached = CachedMatrix.from_answer(previous)
    window = step_grid(start, end, STEP_SECONDS)
    merge_seconds = median_seconds(lambda: merge(cached, newest, window, STEP_SECONDS), repeat)
    return [
        (size, "incremental: fetch the newest 3 steps (2 re-read + 1 new)", fetch_seconds),
        (size, "incremental: merge them onto the cached matrix", merge_seconds),
    ]


def bench_model_stages(
    size: str, detector: DetectorConfig, values: np.ndarray, repeat: int
) -> list[tuple[str, str, float]]:
    from slo_pipeline.core.features import latest_features

    model = trained_model(detector)
    features = latest_features(values, model.windows)
    features_seconds = median_seconds(lambda: latest_features(values, model.windows), repeat)
    scoring_seconds = median_seconds(lambda: model.sample_tail_probability(features), repeat)
    score_latest_seconds = median_seconds(lambda: model.score_latest(values), repeat)
    return [
        (size, "features (latest row, all series)", features_seconds),
        (size, "IsolationForest + calibration (latest row)", scoring_seconds),
        (size, "score_latest (features + forest over the evidence rows)", score_latest_seconds),
    ]


_MODELS: dict[str, object] = {}


def trained_model(detector: DetectorConfig):  # type: ignore[no-untyped-def]
    """A model trained once (the same for every size) on history like the served series', so a
    steady cycle sees what production does: few anomalous series, hence few explanations."""
    if detector.name not in _MODELS:
        times = 1_600_000_000 + STEP_SECONDS * np.arange(2000, dtype=np.float64)
        history = synthetic_values(200, times, seed=3)
        _MODELS[detector.name] = fit_detector_model(history, detector)[0]
    return _MODELS[detector.name]


def bench_render(
    size: str, detector: DetectorConfig, labels: list[dict[str, str]], repeat: int
) -> list[tuple[str, str, float]]:
    from exporter.exposition import render_detector

    rng = np.random.default_rng(5)
    probabilities = rng.random(len(labels))
    return [
        (
            size,
            "render exposition (score + tail probability)",
            median_seconds(lambda: render_detector(detector, labels, probabilities), repeat),
        )
    ]


class FixedModelSource:
    """Serves one in-memory model as champion (the registry is timed by the integration tests)."""

    def __init__(self, model: object) -> None:
        from slo_pipeline.adapters.registry import ModelRef

        self.ref = ModelRef(model_name="bench", version="1", run_id="bench")
        self.model = model

    def champion_ref(self, detector_name: str):  # type: ignore[no-untyped-def]
        return self.ref

    def load_model(self, ref):  # type: ignore[no-untyped-def]
        return self.model


class SimulatedClock:
    """The service's wall clock: moved by the benchmark, one interval per cycle."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def process_cpu_seconds(pid: int) -> float:
    """utime + stime of another process (Prometheus), from /proc."""
    import os

    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bench_service_cycles(
    size: str,
    detector: DetectorConfig,
    prometheus: launch.ManagedProcess,
    end: float,
    cycles: int,
    incremental: bool,
) -> list[tuple[str, str, float]]:
    """`run_cycle` in steady state: the clock advances 60 s per cycle over the backfilled history,
    ending on its last step; the first cycle (model load, first full fetch) is not timed."""
    from exporter.service import ExporterService, PrometheusSeriesSource

    url, pid = prometheus.url, prometheus.pid
    settings = load_settings(prometheus_url=url, pipeline=PipelineConfig(detectors=[detector]))
    clock = SimulatedClock(end + 17 - cycles * STEP_SECONDS)  # a clock off the grid, like a real one
    source = PrometheusSeriesSource(settings, incremental=incremental)
    service = ExporterService(
        settings,
        model_source=FixedModelSource(trained_model(detector)),
        series_source=source,
        wall_clock=clock,
    )
    service.run_cycle()
    walls, cpus, prometheus_cpus, steps, explained = [], [], [], [], []
    for _ in range(cycles):
        clock.now += STEP_SECONDS
        wall, cpu, prometheus_cpu = time.perf_counter(), time.process_time(), process_cpu_seconds(pid)
        report = service.run_cycle()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
        prometheus_cpus.append(process_cpu_seconds(pid) - prometheus_cpu)
        stats = source.last_fetch(detector.name)
        assert report.all_up and stats is not None, report.errors
        steps.append(stats.steps)
        explained.append(report.explained[detector.name])
    mode = "incremental, steady state" if incremental else "whole window every cycle (v1 fetch)"
    cpu = statistics.median(cpus)
    return [
        (size, f"run_cycle, {mode}: wall", statistics.median(walls)),
        (size, f"run_cycle, {mode}: exporter CPU", cpu),
        (size, "  = % of one core at a 60 s interval", 100 * cpu / 60),
        (size, "  Prometheus CPU answering the cycle's query", statistics.median(prometheus_cpus)),
        (size, "  grid steps fetched per cycle", statistics.median(steps)),
        (size, "  series scoring >= 1 (explained) per cycle", statistics.median(explained)),
    ]


def bench_metrics_endpoint(n_series: int, repeat: int) -> tuple[list[tuple[str, str, float]], list[Row]]:
    """Render once, then time what a scrape costs: the cached page plus the self-metrics."""
    from exporter.exposition import assemble_page, render_detector
    from exporter.http_server import MetricsPage, start_http_server
    from exporter.self_metrics import ExporterMetrics

    detector = DetectorConfig(name="bench", query=METRIC, step_seconds=STEP_SECONDS, slo="bench_slo")
    labels = [{"instance": f"host-{i:06d}:9100", "service": f"svc-{i % 50:02d}"} for i in range(n_series)]
    probabilities = np.random.default_rng(1).random(n_series)
    render_seconds = median_seconds(lambda: render_detector(detector, labels, probabilities), repeat)
    page = MetricsPage(ExporterMetrics([detector.name]).render)
    text = assemble_page([render_detector(detector, labels, probabilities)], [])
    page.publish(text)
    server = start_http_server("127.0.0.1:0", page, is_ready=lambda: True, is_healthy=lambda: True)
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/metrics"
        plain_bytes = len(fetch_url(url))
        size_mb = plain_bytes / 1e6
        scrape_seconds = median_seconds(lambda: fetch_url(url), repeat)
        # gzip (what Prometheus asks for): the first scrape after a publish compresses the page,
        # the next ones reuse it; each publish starts over, so both are timed.
        compress_seconds = median_seconds(lambda: republish_and_fetch(page, text, url), repeat)
        gzip_bytes = len(fetch_url(url, gzip=True))
        gzip_mb = gzip_bytes / 1e6
        gzip_scrape_seconds = median_seconds(lambda: fetch_url(url, gzip=True), repeat)
    finally:
        server.shutdown()
        server.server_close()
    size = str(n_series)
    n = f"{n_series:,}"
    result = [
        Row(f"/metrics at {n} series: bytes per scrape, plain", plain_bytes / 1e6, "MB"),
        Row(
            f"/metrics at {n} series: bytes per scrape, gzip",
            gzip_bytes / 1e6,
            "MB",
            plain_bytes / 1e6,
            "plain",
        ),
        Row(f"/metrics at {n} series: scrape time, plain", scrape_seconds, "s"),
        Row(
            f"/metrics at {n} series: scrape time, gzip (later scrapes)",
            gzip_scrape_seconds,
            "s",
            scrape_seconds,
            "plain",
        ),
        Row(
            f"/metrics at {n} series: first gzip scrape after a cycle (compresses once)",
            compress_seconds,
            "s",
            render_seconds,
            "rendering the page, once per cycle",
        ),
    ]
    return [
        (size, "render exposition (once per cycle, background)", render_seconds),
        (size, f"GET /metrics over HTTP ({size_mb:.1f} MB, pre-rendered)", scrape_seconds),
        (
            size,
            f"GET /metrics gzip, first scrape after a cycle (compresses; {gzip_mb:.1f} MB)",
            compress_seconds,
        ),
        (size, f"GET /metrics gzip, later scrapes ({gzip_mb:.1f} MB)", gzip_scrape_seconds),
    ], result


def republish_and_fetch(page, text: str, url: str) -> bytes:  # type: ignore[no-untyped-def]
    """A new cycle's page (publishing drops the compressed copy), then the first gzip scrape.
    Publishing encodes the text (part of every cycle already): included, so slightly pessimistic."""
    page.publish(text)
    return fetch_url(url, gzip=True)


def fetch_url(url: str, gzip: bool = False) -> bytes:
    """The body as sent (still compressed when gzip was asked for: that is what a scraper reads)."""
    request = urllib.request.Request(url, headers={"Accept-Encoding": "gzip" if gzip else "identity"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return response.read()


if __name__ == "__main__":
    raise SystemExit(main())
