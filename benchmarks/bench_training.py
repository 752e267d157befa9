"""Training cost: 1,000 series x 7 days at a 5-minute step (2M samples), stage by stage.

Run: `.venv/bin/python benchmarks/bench_training.py [--series 1000] [--days 7] [--step 300]`

The history is synthetic (daily cycle + noise + a few level shifts). It is first backfilled into
a real Prometheus 2.42 (promtool) and fetched back the way the worker does
(`orchestration.retrain.fetch_history` = `fetch_detector_range` over the training window), then trained on:
features, forest fit, calibration (forest scores, evidence, onset factor) and the model's
metadata. `--no-fetch` skips Prometheus and trains on the in-memory history. Reference point:
Prophet per series takes ~1.3 s each here (~22 min for 1,000 series); the
target is >= 200x faster, fetch included.
Prints one table; every figure is the median of `--repeat` runs. `--rows-out FILE` writes the
result row (benchmarks/rowtable.py) for run_all.py.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from slo_pipeline.adapters.prometheus import DEFAULT_TRANSPORT, TRANSPORTS, Transport, fetch_detector_range
from slo_pipeline.core.features import compute_features
from slo_pipeline.core.training import fit_detector_model
from slo_pipeline.devstack import launch
from slo_pipeline.settings import DetectorConfig

sys.path.insert(0, str(Path(__file__).resolve().parent))
from rowtable import Row, format_table, write_rows

PROPHET_SECONDS_PER_SERIES = 1.3
TARGET_SPEEDUP = 200
METRIC = "bench_training_value"


def synthetic_history(n_series: int, n_rows: int, step: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    hours = np.arange(n_rows) * step / 3600.0
    daily = 1.0 + 0.4 * np.cos(2 * np.pi * (hours[:, None] - rng.uniform(0, 24, n_series)) / 24.0)
    level = rng.lognormal(3.0, 1.0, n_series)
    values = level * daily * rng.lognormal(0.0, 0.05, size=(n_rows, n_series))
    shifts = rng.integers(0, n_rows, size=n_series // 10)
    for column, row in enumerate(shifts):
        values[row:, column * 10] *= 1.5  # a few deploys that move the level for good
    return values


def median_seconds(action: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def write_openmetrics(path: Path, values: np.ndarray, end: int, step: int) -> None:
    """`values[T, N]` as N gauges sampled every `step` seconds up to `end`."""
    times = (end - step * np.arange(len(values) - 1, -1, -1)).tolist()
    with path.open("w", encoding="utf-8") as out:
        out.write(f"# TYPE {METRIC} gauge\n")
        for column in range(values.shape[1]):
            labels = f'{METRIC}{{series="s{column:05d}"}}'
            rows = zip(np.round(values[:, column], 6).tolist(), times, strict=True)
            out.writelines(f"{labels} {v} {t}\n" for v, t in rows)
        out.write("# EOF\n")


def fetched_history(
    values: np.ndarray, detector: DetectorConfig, repeat: int
) -> tuple[np.ndarray, dict[str, float], float]:
    """Backfill `values` into a real Prometheus and fetch the training window back as the worker
    does. Returns (the fetched values, median fetch seconds per transport, backfill seconds)."""
    step = detector.step_seconds
    end = int(time.time()) // step * step - step
    with tempfile.TemporaryDirectory(prefix="bench-training-") as tmp:
        folder = Path(tmp)
        began = time.perf_counter()
        write_openmetrics(folder / "history.om", values, end, step)
        launch.backfill_openmetrics(folder / "history.om", folder / "data")
        (folder / "history.om").unlink()
        backfill_seconds = time.perf_counter() - began
        config = launch.write_prometheus_config(
            folder / "prometheus.yml", scrape_targets={}, alertmanager_url=None, rule_files=[]
        )
        prometheus = launch.start_prometheus(config_file=config, data_dir=folder / "data")
        try:
            # The worker's call (orchestration.retrain.fetch_history), the window ending at `end`.
            def fetch(transport: Transport = DEFAULT_TRANSPORT) -> np.ndarray:
                start = end - detector.training_window_seconds + step
                url = prometheus.url
                return fetch_detector_range(url, detector, start=start, end=end, transport=transport).values

            fetched = fetch()
            fetch_seconds = {t: median_seconds(lambda t=t: fetch(t), repeat) for t in TRANSPORTS}
        finally:
            prometheus.stop()
    if fetched.shape != values.shape:
        raise RuntimeError(f"fetched {fetched.shape} from Prometheus, wrote {values.shape}")
    return fetched, fetch_seconds, backfill_seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=1000)
    parser.add_argument("--days", type=float, default=7.0)
    parser.add_argument("--step", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-fetch", action="store_true", help="train on the in-memory history only")
    parser.add_argument("--rows-out", help="write the result row as JSON to this file")
    args = parser.parse_args(argv)

    n_rows = round(args.days * 86400 / args.step)
    detector = DetectorConfig(
        name="bench",
        query=METRIC,
        step_seconds=args.step,
        training_window_seconds=round(args.days * 86400),
    )
    values = synthetic_history(args.series, n_rows, args.step)
    fetch_s = 0.0
    rows = [("samples (series x steps)", f"{args.series} x {n_rows} = {args.series * n_rows:,}")]
    if not args.no_fetch:
        values, fetch_by_transport, backfill_s = fetched_history(values, detector, args.repeat)
        fetch_s = fetch_by_transport[DEFAULT_TRANSPORT]  # what the worker uses
        rows.append(("(setup) history written and backfilled with promtool", f"{backfill_s:.1f} s"))
        for transport, seconds in fetch_by_transport.items():
            rows.append((f"Prometheus fetch of the training window ({transport})", f"{seconds:.3f} s"))
    features_s = median_seconds(lambda: compute_features(values, detector.windows), args.repeat)
    total_s = median_seconds(lambda: fit_detector_model(values, detector, seed=0), args.repeat)
    model, report = fit_detector_model(values, detector, seed=0)
    metadata_bytes = len(json.dumps(model.metadata()))
    prophet_s = PROPHET_SECONDS_PER_SERIES * args.series
    budget_s = prophet_s / TARGET_SPEEDUP
    with_fetch = fetch_s + total_s
    included = "fetch included" if not args.no_fetch else "fetch NOT included"

    rows += [
        ("features (compute_features)", f"{features_s:.3f} s"),
        ("fit_detector_model, total", f"{total_s:.3f} s"),
        ("  of which forest + calibration + onset factor", f"{total_s - features_s:.3f} s"),
        ("calibration rows scored", f"{report.n_calibration_rows:,}"),
        ("model metadata (JSON)", f"{metadata_bytes:,} bytes"),
        ("onset factor (alarms per exceeding sample)", f"{report.onset_factor:.3f}"),
        (f"fetch ({DEFAULT_TRANSPORT}) + fit ({included})", f"{with_fetch:.3f} s"),
        ("Prophet per series, same data (brief's figure)", f"{prophet_s:,.0f} s"),
        (f"speed-up vs Prophet ({included})", f"{prophet_s / with_fetch:,.0f}x"),
        (
            f"target >= {TARGET_SPEEDUP}x, i.e. <= {budget_s:.1f} s",
            "met" if with_fetch <= budget_s else "NOT met",
        ),
    ]
    width = max(len(name) for name, _ in rows)
    print(f"\n{'stage':<{width}}  value")
    print(f"{'-' * width}  {'-' * 24}")
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    result = [
        Row(
            f"training {args.series:,} series x {args.days:g} days @ {args.step} s, {included}",
            with_fetch,
            "s",
            prophet_s,
            f"Prophet, {PROPHET_SECONDS_PER_SERIES} s per series",
            f">= {TARGET_SPEEDUP}",
            inverted=True,
        )
    ]
    print("\n" + format_table(result))
    write_rows(result, args.rows_out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
