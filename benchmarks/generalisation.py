"""Does the detector carry over to data it was not tuned on? One command, a table per category.

    .venv/bin/python benchmarks/generalisation.py --aws-dir PATH/TO/nab-aws [--seeds 0,1]

Every category is scored by the unchanged `slo-pipeline backtest` (CSV defaults, the operating
point chosen on the AWS data), through its own command line, against labelled windows:

- `aws`: the shared NAB AWS files (the development set);
- `aws_15min`, `aws_1h`: the same files averaged into 15-minute and 1-hour buckets, same labels;
- `injected_simulated`: the simulator's request counts and 5xx ratios of two routes (5-minute
  buckets, 2 weeks like an AWS file, daily cycle), one known anomaly injected per copy;
- `injected_real`: the one AWS file without labelled windows (`ec2_cpu_utilization_c6585a`,
  a daily job), with the same injections.

- `other_labelled`: public labelled series that a PyPI package ships inside its wheel, read from
  the installed package (never copied into this repository): aeon (BSD-3-Clause) ships
  `135_UCR_Anomaly_InternalBleeding16` (a real series from the UCR / KDD Cup 2021 anomaly
  archive, one labelled anomaly in 7,500 samples) and `ecg-diff-count-3` (a synthetic ECG with
  three labelled anomalies in 10,000 samples). They have sample numbers, not times: they are
  given NAB's 5-minute step, and each labelled run becomes a NAB-style window (10 % of the file
  shared between the runs, centred on each). Install the data without aeon's dependencies:
  `.venv/bin/pip install --no-deps aeon==1.6.0` (only its data files are read, aeon is not
  imported).

Injections (one per file, at a random time in the last 60 % of the series; the labelled window is
NAB's: 10 % of the file, centred on the anomaly): `spike` (+10 local sigma, one sample),
`level_shift` (+1 IQR of the series from there on), `variance` (noise x4 for a day), and
`seasonal_break` (one day replaced by its own mean: the cycle stops). Local sigma is the robust
spread of the series around its 1-hour median.

The settings were fixed before these categories were scored; run it with the tree you want to
measure (e.g. `PYTHONPATH=<other checkout>` for a before/after comparison: it uses only the CLI).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

STEP = 300
DAY = 288
KINDS = ("spike", "level_shift", "variance", "seasonal_break")
UNLABELLED_REAL = "ec2_cpu_utilization_c6585a.csv"


CATEGORIES = ("aws", "aws_15min", "aws_1h", "injected_simulated", "injected_real", "other_labelled")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--aws-dir", type=Path, required=True, help="folder with realAWSCloudwatch/ and windows.json"
    )
    parser.add_argument("--seeds", default="0", help="comma-separated detector seeds (default 0)")
    parser.add_argument(
        "--categories", default=",".join(CATEGORIES), help="comma-separated, from: " + ", ".join(CATEGORIES)
    )
    parser.add_argument("--extra-args", default="", help="more backtest arguments, space-separated")
    args = parser.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    extra = args.extra_args.split()
    unknown = set(args.categories.split(",")) - set(CATEGORIES)
    if unknown:
        parser.error(f"unknown categories {sorted(unknown)}; known: {', '.join(CATEGORIES)}")
    if "other_labelled" in args.categories.split(",") and importlib.util.find_spec("aeon") is None:
        # Say so before an hour of the other categories, not after.
        parser.error("other_labelled reads aeon's data: .venv/bin/pip install --no-deps aeon==1.6.0")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        builders = {
            "aws": lambda: _aws(args.aws_dir, folder / "aws", None),
            "aws_15min": lambda: _aws(args.aws_dir, folder / "aws_15min", "15min"),
            "aws_1h": lambda: _aws(args.aws_dir, folder / "aws_1h", "1h"),
            "injected_simulated": lambda: _injected(_simulated_series(), folder / "sim", seed=101),
            "injected_real": lambda: _injected(_real_series(args.aws_dir), folder / "real", seed=202),
            "other_labelled": lambda: _packaged_labelled(folder / "other"),
        }
        for category in args.categories.split(","):
            data, labels = builders[category]()
            totals = [_backtest(data, labels, seed, extra) for seed in seeds]
            rows.append((category, totals))
    print(_table(rows, seeds))
    return 0


def _aws(aws_dir: Path, out: Path, bucket: str | None) -> tuple[Path, Path]:
    source = aws_dir / "realAWSCloudwatch"
    labels = aws_dir / "windows.json"
    if bucket is None:
        return source, labels
    out.mkdir(parents=True)
    for path in sorted(source.glob("*.csv")):
        frame = pd.read_csv(path, parse_dates=["timestamp"]).set_index("timestamp")
        resampled = frame.resample(bucket).mean().dropna().reset_index()
        resampled.to_csv(out / path.name, index=False, date_format="%Y-%m-%d %H:%M:%S")
    return out, labels


def _simulated_series() -> dict[str, pd.Series]:
    """Request counts and 5xx ratios per route, 5-minute buckets over 4 weeks."""
    from slo_pipeline.devstack.simulator.model import (
        DEFAULT_ROUTES,
        SERVER_ERROR_CODE_INDEX,
        sample_intervals,
    )

    start = 1_700_006_400.0  # a midnight UTC
    starts = start + STEP * np.arange(14 * DAY)
    sample = sample_intervals(starts, starts + STEP, incidents=[], rng=np.random.default_rng(7))
    total = sample.requests.sum(axis=1)  # [routes, steps]
    errors = sample.requests[:, SERVER_ERROR_CODE_INDEX, :]
    times = pd.to_datetime(starts, unit="s")
    series = {}
    for k, route in enumerate(DEFAULT_ROUTES[:2]):
        name = route.route.strip("/").replace("/", "_")
        series[f"sim_{name}_requests"] = pd.Series(total[k], index=times)
        series[f"sim_{name}_error_ratio"] = pd.Series(errors[k] / np.maximum(total[k], 1), index=times)
    return series


def _real_series(aws_dir: Path) -> dict[str, pd.Series]:
    frame = pd.read_csv(aws_dir / "realAWSCloudwatch" / UNLABELLED_REAL, parse_dates=["timestamp"])
    return {"real_c6585a": frame.set_index("timestamp")["value"]}


def _injected(series: dict[str, pd.Series], out: Path, seed: int) -> tuple[Path, Path]:
    rng = np.random.default_rng(seed)
    out.mkdir(parents=True)
    windows: dict[str, list[list[str]]] = {}
    for name, base in series.items():
        values = base.to_numpy(dtype=np.float64)
        local = values - pd.Series(values).rolling(13, center=True, min_periods=1).median().to_numpy()
        sigma = 1.4826 * np.median(np.abs(local - np.median(local))) or np.std(values) or 1.0
        iqr = np.subtract(*np.percentile(values, [75, 25])) or sigma
        for kind in KINDS:
            at = int(rng.uniform(0.4, 0.9) * len(values))
            injected = values.copy()
            if kind == "spike":
                injected[at] += 10 * sigma
            elif kind == "level_shift":
                injected[at:] += iqr
            elif kind == "variance":
                injected[at : at + DAY] += rng.normal(0, 4 * sigma, len(injected[at : at + DAY]))
            else:
                injected[at : at + DAY] = injected[at : at + DAY].mean()
            file = f"{name}_{kind}.csv"
            pd.DataFrame({"timestamp": base.index, "value": injected}).to_csv(
                out / file, index=False, date_format="%Y-%m-%d %H:%M:%S"
            )
            half = len(values) // 20
            lo, hi = base.index[max(0, at - half)], base.index[min(len(values) - 1, at + half)]
            windows[file] = [[f"{lo:%Y-%m-%d %H:%M:%S}.000000", f"{hi:%Y-%m-%d %H:%M:%S}.000000"]]
    labels = out / "windows.json"
    labels.write_text(json.dumps(windows, indent=1))
    return out, labels


# Files in aeon's wheel (aeon/datasets/data/...): `timestamp` (a sample number), values, `is_anomaly`.
PACKAGED_LABELLED = (
    "KDD-TSAD_135/135_UCR_Anomaly_InternalBleeding16_TEST.csv",
    "UnitTest/ecg-diff-count-3_TEST.csv",
)


def _packaged_labelled(out: Path) -> tuple[Path, Path]:
    spec = importlib.util.find_spec("aeon")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("other_labelled reads aeon's data: .venv/bin/pip install --no-deps aeon==1.6.0")
    data = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data"
    out.mkdir(parents=True)
    windows: dict[str, list[list[str]]] = {}
    for name in PACKAGED_LABELLED:
        frame = pd.read_csv(data / name)
        values = frame.iloc[:, 1].to_numpy(dtype=np.float64)
        labels = frame["is_anomaly"].to_numpy() > 0
        times = pd.Timestamp("2024-01-01") + pd.to_timedelta(np.arange(len(values)) * STEP, unit="s")
        file = Path(name).name
        pd.DataFrame({"timestamp": times, "value": values}).to_csv(
            out / file, index=False, date_format="%Y-%m-%d %H:%M:%S"
        )
        edges = np.flatnonzero(np.diff(np.concatenate([[0], labels.astype(np.int8), [0]])))
        runs = list(zip(edges[::2], edges[1::2] - 1, strict=True))
        half = len(values) // 20 // max(1, len(runs))
        windows[file] = [
            [
                f"{times[max(0, (a + b) // 2 - half)]:%Y-%m-%d %H:%M:%S}.000000",
                f"{times[min(len(values) - 1, (a + b) // 2 + half)]:%Y-%m-%d %H:%M:%S}.000000",
            ]
            for a, b in runs
        ]
    labels_path = out / "windows.json"
    labels_path.write_text(json.dumps(windows, indent=1))
    return out, labels_path


def _backtest(data: Path, labels: Path, seed: int, extra: list[str]) -> dict[str, float]:
    from slo_pipeline.cli import main as cli

    printed = io.StringIO()
    with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(io.StringIO()):
        code = cli(
            [
                "backtest",
                "--input",
                str(data),
                "--labels",
                str(labels),
                "--seed",
                str(seed),
                "--quiet",
                *extra,
            ]
        )
    if code != 0:
        raise SystemExit(f"backtest failed on {data} (exit {code})")
    text = printed.getvalue()
    total = [
        "nan" if cell == "-" else cell
        for cell in next(line for line in text.splitlines() if line.startswith("TOTAL")).split()
    ]
    unscored = sum(1 for line in text.splitlines() if "not scored at all" in line)
    return {
        "windows": float(total[1]),
        "hit": float(total[2]),
        "false": float(total[3]),
        "precision": float(total[4]),
        "recall": float(total[5]),
        "fa_week": float(total[8]),
        "nab": float(total[9]),
        "unscored_files": float(unscored),
    }


def _table(rows: list[tuple[str, list[dict[str, float]]]], seeds: list[int]) -> str:
    lines = [
        f"seeds {','.join(map(str, seeds))}",
        "| category | NAB standard (mean; per seed) | recall | precision | FA/week | windows "
        "| files never scored |",
        "|---|---|---|---|---|---|---|",
    ]
    for category, totals in rows:
        nab = [t["nab"] for t in totals]
        per_seed = ", ".join(f"{v:.1f}" for v in nab)
        recall, precision, fa_week = (
            np.mean([t[key] for t in totals]) for key in ("recall", "precision", "fa_week")
        )
        lines.append(
            f"| {category} | {np.mean(nab):.1f} ({per_seed}) | {recall:.2f} | {precision:.2f} "
            f"| {fa_week:.2f} "
            f"| {totals[0]['windows']:.0f} | {totals[0]['unscored_files']:.0f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
