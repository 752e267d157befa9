"""Scoring cost per series of one exporter cycle, without Prometheus: features, forest, evidence,
and (where the tree has it) the per-reason count of unscored series.

    .venv/bin/python benchmarks/bench_scoring_cost.py [--series 10000] [--repeat 5]

Run it in two checkouts (e.g. `PYTHONPATH=<other checkout>`) for a before/after comparison: it
uses `fit_detector_model` and `DetectorModel.score_latest`, which both have. Prints the median
of `--repeat` cycles per configuration in CPU time (the machine may be shared), also per 1,000
series, with the issue's ceiling (1.5x the default detector's cost before the change) beside it
when `--before-ms` is given.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument(
        "--before-ms", type=float, help="default detector's ms per 1k series before the change"
    )
    args = parser.parse_args()
    from slo_pipeline.core.training import fit_detector_model
    from slo_pipeline.settings import DetectorConfig, FeatureWindows

    try:
        from slo_pipeline.core.scorability import unscored_counts
    except ImportError:  # a tree from before the change
        unscored_counts = None
    configurations = [("default windows, 60 s step", FeatureWindows(), 60)]
    if "seasonal_baseline" in FeatureWindows.model_fields:
        configurations += [
            ("seasonal baseline 1 day, 5 min step", FeatureWindows(seasonal_baseline=288), 300),
            ("seasonal baseline 1 day, 60 s step", FeatureWindows(seasonal_baseline=1440), 60),
        ]
    if "shift" in FeatureWindows.model_fields:
        configurations += [("distribution-shift features, 60 s step", FeatureWindows(shift=True), 60)]
    rng = np.random.default_rng(0)
    print(f"{args.series} series, median of {args.repeat} cycles")
    print(
        "| configuration | rows per series | CPU ms per cycle | CPU ms per 1k series "
        "| ceiling (1.5x before) |"
    )
    print("|---|---|---|---|---|")
    for label, windows, step in configurations:
        detector = DetectorConfig(
            name="bench", query="x", step_seconds=step, windows=windows, n_estimators=200
        )
        season = getattr(windows, "seasonal_baseline", 0)
        train = 10 + rng.normal(0, 1, (max(2000, 3 * season), 20))
        model, _ = fit_detector_model(train, detector)
        history = 10 + rng.normal(0, 1, (model.scoring_rows, args.series))
        timings = []
        for _ in range(args.repeat):
            began = time.process_time()
            probabilities = model.score_latest(history)
            if unscored_counts is not None:
                unscored_counts(history, probabilities, model.windows)
            timings.append(time.process_time() - began)
        ms = 1000 * statistics.median(timings)
        per_k = ms * 1000 / args.series
        ceiling = f"{1.5 * args.before_ms:.1f}" if args.before_ms else "-"
        print(f"| {label} | {model.scoring_rows} | {ms:.0f} | {per_k:.1f} | {ceiling} |")


if __name__ == "__main__":
    main()
