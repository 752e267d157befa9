"""Training cost: 1,000 series x 7 days at a 5-minute step (2M samples), stage by stage.

Run: `.venv/bin/python benchmarks/bench_training.py [--series 1000] [--days 7] [--step 300]`

The history is synthetic (daily cycle + noise + a few level shifts) and built in memory, so this
measures the pure training path the worker runs after its Prometheus fetch: features, forest fit,
calibration (forest scores, evidence, onset factor) and the model's metadata. The Prometheus
fetch itself is measured by bench_exporter.py. Reference point from the design brief: Prophet
per series takes ~1.3 s each here (~22 min for 1,000 series); the target is >= 200x faster.
Prints one table; every figure is the median of `--repeat` runs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from slo_pipeline.features import compute_features
from slo_pipeline.settings import DetectorConfig
from slo_pipeline.training import fit_detector_model

PROPHET_SECONDS_PER_SERIES = 1.3


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=1000)
    parser.add_argument("--days", type=float, default=7.0)
    parser.add_argument("--step", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)

    n_rows = round(args.days * 86400 / args.step)
    detector = DetectorConfig(
        name="bench", query="x", step_seconds=args.step, training_window_seconds=round(args.days * 86400)
    )
    values = synthetic_history(args.series, n_rows, args.step)
    features_s = median_seconds(lambda: compute_features(values, detector.windows), args.repeat)
    total_s = median_seconds(lambda: fit_detector_model(values, detector, seed=0), args.repeat)
    model, report = fit_detector_model(values, detector, seed=0)
    metadata_bytes = len(json.dumps(model.metadata()))
    prophet_s = PROPHET_SECONDS_PER_SERIES * args.series

    rows = [
        ("samples (series x steps)", f"{args.series} x {n_rows} = {args.series * n_rows:,}"),
        ("features (compute_features)", f"{features_s:.3f} s"),
        ("fit_detector_model, total", f"{total_s:.3f} s"),
        ("  of which forest + calibration + onset factor", f"{total_s - features_s:.3f} s"),
        ("calibration rows scored", f"{report.n_calibration_rows:,}"),
        ("model metadata (JSON)", f"{metadata_bytes:,} bytes"),
        ("onset factor (alarms per exceeding sample)", f"{report.onset_factor:.3f}"),
        ("Prophet per series, same data (brief's figure)", f"{prophet_s:,.0f} s"),
        ("speed-up vs Prophet (fetch not included)", f"{prophet_s / total_s:,.0f}x"),
    ]
    width = max(len(name) for name, _ in rows)
    print(f"\n{'stage':<{width}}  value")
    print(f"{'-' * width}  {'-' * 24}")
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
