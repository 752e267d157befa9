"""Exporter memory and CPU per scored series, for sizing replicas (docs/scaling.md, deploy/).

Run: `.venv/bin/python benchmarks/bench_exporter_memory.py [--series 1000 10000]`

Each size runs in a fresh Python process (a clean resident set): backfill a synthetic history
with promtool, start Prometheus, load one model, read VmRSS, run the exporter's first cycle (the
whole window) and `--cycles` steady cycles on a clock that advances 60 s per cycle, read VmRSS and
the peak (VmHWM) again. Resident memory per series is (after - before) / series: the cached
matrix, the label sets, the rendered page and whatever the cycle keeps. Prints one table.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def rss_kib(field: str = "VmRSS") -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def measure(n_series: int, cycles: int) -> dict[str, float]:
    """One size, in this process: what the child prints as JSON."""
    from bench_exporter import (
        METRIC,
        STEP_SECONDS,
        FixedModelSource,
        SimulatedClock,
        trained_model,
        write_openmetrics,
    )

    from exporter.service import ExporterService
    from slo_pipeline.devstack import launch
    from slo_pipeline.settings import DetectorConfig, PipelineConfig, load_settings

    detector = DetectorConfig(name="bench", query=METRIC, step_seconds=STEP_SECONDS)
    n_points = int(detector.scoring_window_seconds / STEP_SECONDS) + 20 + cycles + 2
    end = int(time.time()) // STEP_SECONDS * STEP_SECONDS
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
        folder = Path(tmp)
        openmetrics = folder / "history.om"
        write_openmetrics(openmetrics, n_series, n_points, end)
        launch.backfill_openmetrics(openmetrics, folder / "data")
        openmetrics.unlink()
        config = launch.write_prometheus_config(
            folder / "prometheus.yml", scrape_targets={}, alertmanager_url=None, rule_files=[]
        )
        prometheus = launch.start_prometheus(config_file=config, data_dir=folder / "data")
        try:
            pipeline = PipelineConfig(detectors=[detector])
            settings = load_settings(prometheus_url=prometheus.url, pipeline=pipeline)
            model = trained_model(detector)
            clock = SimulatedClock(end + 17 - cycles * STEP_SECONDS)
            service = ExporterService(settings, model_source=FixedModelSource(model), wall_clock=clock)
            before = rss_kib()
            began = time.perf_counter()
            first = service.run_cycle()
            first_wall = time.perf_counter() - began
            assert first.all_up, first.errors
            walls, cpus = [], []
            for _ in range(cycles):
                clock.now += STEP_SECONDS
                wall, cpu = time.perf_counter(), time.process_time()
                report = service.run_cycle()
                walls.append(time.perf_counter() - wall)
                cpus.append(time.process_time() - cpu)
                assert report.all_up, report.errors
            after, peak = rss_kib(), rss_kib("VmHWM")
            page_bytes = len(service.page.body())
        finally:
            prometheus.stop()
    return {
        "series": n_series,
        "rss_before_mib": before / 1024,
        "rss_after_mib": after / 1024,
        "peak_mib": peak / 1024,
        "bytes_per_series": (after - before) * 1024 / n_series,
        "first_cycle_s": first_wall,
        "steady_cycle_wall_s": statistics.median(walls),
        "steady_cycle_cpu_s": statistics.median(cpus),
        "page_mb": page_bytes / 1e6,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, nargs="+", default=[1000, 10_000])
    parser.add_argument("--cycles", type=int, default=5)
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(measure(args.child, args.cycles)))
        return 0
    rows = []
    for n_series in args.series:
        completed = subprocess.run(
            [sys.executable, __file__, "--child", str(n_series), "--cycles", str(args.cycles)],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).resolve().parent,
        )
        rows.append(json.loads(completed.stdout.strip().splitlines()[-1]))
    print(
        f"\n{'series':>8} {'RSS before':>11} {'RSS after':>10} {'peak':>8} {'per series':>11} "
        f"{'1st cycle':>10} {'steady wall':>12} {'steady CPU':>11} {'page':>8}"
    )
    for row in rows:
        print(
            f"{row['series']:>8} {row['rss_before_mib']:>8.0f} MiB {row['rss_after_mib']:>6.0f} MiB "
            f"{row['peak_mib']:>4.0f} MiB {row['bytes_per_series']:>7.0f} B {row['first_cycle_s']:>8.2f} s "
            f"{row['steady_cycle_wall_s']:>10.3f} s {row['steady_cycle_cpu_s']:>9.3f} s "
            f"{row['page_mb']:>5.1f} MB"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
