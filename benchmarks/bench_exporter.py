"""Exporter cost per stage at 1k and 10k series, against a real Prometheus with backfilled data.

Run: `.venv/bin/python benchmarks/bench_exporter.py [--series 1000 10000] [--render-series 100000]`

For each size: backfill a synthetic history with promtool, start Prometheus on a free port, then
time one detector's cycle split into stages (HTTP fetch, JSON decode, grid alignment, features,
IsolationForest scoring, exposition rendering) for both transports of `fetch_range`, plus the
end-to-end `ExporterService.run_cycle`. Finally `/metrics` is served at `--render-series` series
(no Prometheus needed: the exposition is pre-rendered, which is the point) and timed over HTTP.
Prints one table; every figure is the median of `--repeat` runs.
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

from slo_pipeline import launch
from slo_pipeline.prometheus_io import TRANSPORTS, align_matrix, fetch_range, step_grid
from slo_pipeline.settings import DetectorConfig, PipelineConfig, load_settings
from slo_pipeline.training import fit_detector_model

METRIC = "bench_latency_seconds"
STEP_SECONDS = 60


def write_openmetrics(path: Path, n_series: int, n_points: int, end: int, step: int = STEP_SECONDS) -> None:
    """`n_series` gauges with a daily-ish wave plus noise, one sample per `step`, ending at `end`."""
    rng = np.random.default_rng(7)
    times = end - step * np.arange(n_points - 1, -1, -1)
    with path.open("w", encoding="utf-8") as out:
        out.write(f"# HELP {METRIC} Synthetic latency for the exporter benchmark.\n# TYPE {METRIC} gauge\n")
        for i in range(n_series):
            base = 0.05 + 0.2 * rng.random()
            wave = base * (1 + 0.3 * np.sin(2 * np.pi * times / 86_400 + i))
            values = np.round(wave + rng.normal(0, base * 0.05, n_points), 4)
            labels = f'{METRIC}{{instance="host-{i:05d}:9100",service="svc-{i % 50:02d}"}}'
            rows = zip(values.tolist(), times.tolist(), strict=True)
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
    parser.add_argument("--series", type=int, nargs="+", default=[1000, 10_000])
    parser.add_argument("--render-series", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)

    rows: list[tuple[str, str, float]] = []
    for n_series in args.series:
        rows.extend(bench_cycle(n_series, args.repeat))
    rows.extend(bench_metrics_endpoint(args.render_series, args.repeat))

    print(f"\n{'series':>8}  {'stage':<58} {'seconds':>9}")
    for size, stage, seconds in rows:
        print(f"{size:>8}  {stage:<58} {seconds:>9.4f}")
    return 0


def bench_cycle(n_series: int, repeat: int) -> list[tuple[str, str, float]]:
    import orjson

    detector = DetectorConfig(name="bench", query=METRIC, step_seconds=STEP_SECONDS)
    n_points = int(detector.scoring_window_seconds / STEP_SECONDS) + 20
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
            rows.extend(bench_model_stages(size, detector, block.values, repeat))
            rows.extend(bench_render(size, detector, block.labels, repeat))
            rows.extend(bench_service_cycle(size, detector, prometheus.url, block.values, repeat))
        finally:
            prometheus.stop()
    return rows


def bench_model_stages(
    size: str, detector: DetectorConfig, values: np.ndarray, repeat: int
) -> list[tuple[str, str, float]]:
    from slo_pipeline.features import latest_features

    model = trained_model(detector)
    features = latest_features(values, model.windows)
    features_seconds = median_seconds(lambda: latest_features(values, model.windows), repeat)
    scoring_seconds = median_seconds(lambda: model.tail_probability(features), repeat)
    return [
        (size, "features (latest row, all series)", features_seconds),
        (size, "IsolationForest + calibration", scoring_seconds),
    ]


_MODELS: dict[str, object] = {}


def trained_model(detector: DetectorConfig):  # type: ignore[no-untyped-def]
    """A model trained once on synthetic history (the same for every size)."""
    if detector.name not in _MODELS:
        rng = np.random.default_rng(3)
        history = 1 + 0.1 * rng.standard_normal((2000, 20))
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
        from slo_pipeline.registry import ModelRef

        self.ref = ModelRef(model_name="bench", version="1", run_id="bench")
        self.model = model

    def champion_ref(self, detector_name: str):  # type: ignore[no-untyped-def]
        return self.ref

    def load_model(self, ref):  # type: ignore[no-untyped-def]
        return self.model


def bench_service_cycle(
    size: str, detector: DetectorConfig, url: str, values: np.ndarray, repeat: int
) -> list[tuple[str, str, float]]:
    from exporter.service import ExporterService

    settings = load_settings(prometheus_url=url, pipeline=PipelineConfig(detectors=[detector]))
    service = ExporterService(settings, model_source=FixedModelSource(trained_model(detector)))
    service.run_cycle()  # loads the model
    cpu_began = time.process_time()
    seconds = median_seconds(service.run_cycle, repeat)
    cpu_per_cycle = (time.process_time() - cpu_began) / repeat
    rows = [(size, "ExporterService.run_cycle end to end (wall)", seconds)]
    rows.append((size, "ExporterService.run_cycle CPU", cpu_per_cycle))
    rows.append((size, "  = % of one core at a 60 s interval", 100 * cpu_per_cycle / 60))
    return rows


def bench_metrics_endpoint(n_series: int, repeat: int) -> list[tuple[str, str, float]]:
    """Render once, then time what a scrape costs: the cached page plus the self-metrics."""
    from exporter.exposition import assemble_page, render_detector
    from exporter.http_server import MetricsPage, start_http_server
    from exporter.self_metrics import ExporterMetrics

    detector = DetectorConfig(name="bench", query=METRIC, step_seconds=STEP_SECONDS, slo="bench_slo")
    labels = [{"instance": f"host-{i:06d}:9100", "service": f"svc-{i % 50:02d}"} for i in range(n_series)]
    probabilities = np.random.default_rng(1).random(n_series)
    render_seconds = median_seconds(lambda: render_detector(detector, labels, probabilities), repeat)
    page = MetricsPage(ExporterMetrics([detector.name]).render)
    page.publish(assemble_page([render_detector(detector, labels, probabilities)], []))
    server = start_http_server("127.0.0.1:0", page, is_ready=lambda: True, is_healthy=lambda: True)
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/metrics"
        size_mb = len(fetch_url(url)) / 1e6
        scrape_seconds = median_seconds(lambda: fetch_url(url), repeat)
    finally:
        server.shutdown()
        server.server_close()
    return [
        (str(n_series), "render exposition (once per cycle, background)", render_seconds),
        (str(n_series), f"GET /metrics over HTTP ({size_mb:.1f} MB, pre-rendered)", scrape_seconds),
    ]


def fetch_url(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=60) as response:
        return response.read()


if __name__ == "__main__":
    raise SystemExit(main())
