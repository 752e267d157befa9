"""Exporter cycle, its floor, memory and CPU per scored series (docs/benchmarks.md, docs/scaling.md).

Run: `.venv/bin/python benchmarks/bench_exporter_memory.py [--series 1000 10000 100000] [--rows-out FILE]`

Each size runs in a fresh Python process (a clean resident set): backfill a synthetic history
with promtool, start Prometheus, load one model, read VmRSS, run the exporter's first cycle (the
whole window) and `--cycles` steady cycles on a clock that advances 60 s per cycle, read VmRSS and
the peak (VmHWM) again. Resident memory per series is (after - before) / series: the cached
matrix, the label sets, the rendered page and whatever the cycle keeps.

After the memory is read, the same process times the floor of a steady cycle: the work no
design can avoid, i.e. fetching the one new step of every series (one `query_range` of a single
step) plus scoring one new row per series (last-row features and the forest on them). The steady
cycle's wall time is compared with it (target <= 1.25x), and the steady cycle's CPU per series
between sizes ten times apart (the larger <= 12x the smaller). Prints one table; with
`--rows-out FILE` also writes the result rows (benchmarks/rowtable.py) for run_all.py.
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

from rowtable import Row, format_table, write_rows

MEMORY_TARGET_BYTES = 2000  # per scored series (issue 11); Netdata: about 18 KB per metric
FLOOR_TARGET = 1.25
FLATNESS_TARGET = 12.0  # 10x the series for at most 12x the cost


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
            # The first cycle's whole-window fetch of 100k series takes longer than the default 30 s
            # on a loaded machine; the steady cycles are timed, not bounded, so give it room.
            settings = load_settings(
                prometheus_url=prometheus.url, pipeline=pipeline, query_timeout_seconds=600
            )
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
            floor = floor_seconds(settings.prometheus, detector, model, clock.now)
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
        **floor,
    }


def floor_seconds(connection, detector, model, now: float) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """Medians of 3: fetch the newest step alone, and score one new row per series."""
    from bench_exporter import median_seconds

    from slo_pipeline.adapters.prometheus import fetch_range, fetch_range_answer
    from slo_pipeline.core.features import latest_features

    step = detector.step_seconds
    newest = now // step * step
    fetch_s = median_seconds(
        lambda: fetch_range_answer(connection, detector.query, start=newest, end=newest, step_seconds=step), 3
    )
    window = fetch_range(  # with the settings' timeout: 100k series x 188 steps exceed the default
        connection,
        detector.query,
        start=newest - detector.scoring_window_seconds,
        end=newest,
        step_seconds=step,
    ).values
    score_s = median_seconds(lambda: model.sample_tail_probability(latest_features(window, model.windows)), 3)
    return {"floor_fetch_s": fetch_s, "floor_score_s": score_s}


def result_rows(rows: list[dict[str, float]]) -> list[Row]:
    """Figure / floor / target rows: the steady cycle vs its floor per size, CPU flatness between
    sizes ten times apart, and resident memory per series at the largest size."""
    out: list[Row] = []
    for row in rows:
        n = int(row["series"])
        floor = row["floor_fetch_s"] + row["floor_score_s"]
        out.append(
            Row(
                f"exporter steady cycle, {n:,} series (wall)",
                row["steady_cycle_wall_s"],
                "s",
                floor,
                f"fetch 1 new step {row['floor_fetch_s']:.3g} s"
                f" + score 1 row/series {row['floor_score_s']:.3g} s",
                f"<= {FLOOR_TARGET}",
            )
        )
        out.append(Row(f"exporter steady cycle, {n:,} series (exporter CPU)", row["steady_cycle_cpu_s"], "s"))
    by_size = {int(row["series"]): row for row in rows}
    for n, row in sorted(by_size.items()):
        smaller = by_size.get(n // 10)
        if smaller is not None:
            out.append(
                Row(
                    f"flatness: steady-cycle CPU at {n:,} vs {n // 10:,} series",
                    row["steady_cycle_cpu_s"],
                    "s",
                    smaller["steady_cycle_cpu_s"],
                    f"{n // 10:,} series",
                    f"<= {FLATNESS_TARGET}",
                )
            )
    for row in rows:
        n = int(row["series"])
        out.append(
            Row(
                f"resident memory per scored series, {n:,} series",
                row["bytes_per_series"],
                "B",
                target=f"<= {MEMORY_TARGET_BYTES}" if n == max(by_size) else "",
            )
        )
        out.append(
            Row(f"peak resident memory, {n:,} series (first, whole-window cycle)", row["peak_mib"], "MiB")
        )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, nargs="+", default=[1000, 10_000, 100_000])
    parser.add_argument("--rows-out", help="write the result rows as JSON to this file")
    parser.add_argument("--cycles", type=int, default=5)
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(measure(args.child, args.cycles)))
        return 0
    rows: list[dict[str, float]] = []
    failed: list[int] = []
    for n_series in args.series:
        print(f"[{n_series}] measuring in a fresh process", file=sys.stderr, flush=True)
        completed = subprocess.run(
            [sys.executable, __file__, "--child", str(n_series), "--cycles", str(args.cycles)],
            stdout=subprocess.PIPE,
            text=True,
            check=False,
            cwd=Path(__file__).resolve().parent,
        )
        if completed.returncode != 0:  # keep the sizes that worked; say which did not
            print(f"[{n_series}] FAILED (exit {completed.returncode}), no row", file=sys.stderr, flush=True)
            failed.append(n_series)
            continue
        rows.append(json.loads(completed.stdout.strip().splitlines()[-1]))
        print(f"[{n_series}] {rows[-1]}", file=sys.stderr, flush=True)
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
    result = result_rows(rows)
    print("\n" + format_table(result))
    write_rows(result, args.rows_out)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
