"""Bytes per sample of the data lake: N series x D days at 60 s, written the way a backfill does.

Each kind of series is written to its own table through `lake.merge_rows` (one UTC day per
sync, in merge batches) and measured from the table's own file list (the Parquet bytes the table
references; the `_delta_log` is counted apart). Kinds, because the size is the values' entropy:

- counter_rate: `rate()` of a Poisson counter (what most detectors query); few distinct values;
- integer_gauge: small integers (queue lengths, replicas);
- noisy_gauge: a continuous value with full-precision noise (a latency quantile).

Usage: python benchmarks/bench_lake_size.py [--series 10000] [--days 7] [--kinds a,b]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

from slo_pipeline.adapters import lake
from slo_pipeline.adapters.lake_rows import SECONDS_PER_DAY, block_rows
from slo_pipeline.adapters.prometheus import SeriesBlock

STEP_SECONDS = 60
TARGET_BYTES_PER_SAMPLE = 2.0  # the issue's aim; Prometheus' TSDB manages about 1.3
FIRST_DAY = 20_000 * SECONDS_PER_DAY  # 2024-10-04, any whole UTC day


def labels(n_series: int) -> list[dict[str, str]]:
    return [
        {
            "__name__": "http_requests:rate5m",
            "job": "api",
            "instance": f"10.0.{i // 250 % 256}.{i % 250}:8080",
            "route": f"/api/v1/resource{i % 500}",
        }
        for i in range(n_series)
    ]


def day_values(kind: str, n_series: int, steps: int, rng: np.random.Generator) -> np.ndarray:
    if kind == "counter_rate":
        per_second = rng.uniform(0.5, 50.0, n_series)
        # Increase over a 5 m window of 15 s scrapes, extrapolated to the window as rate() does.
        return rng.poisson(per_second * 285, (steps, n_series)) / 285.0
    if kind == "integer_gauge":
        return rng.poisson(rng.uniform(1, 20, n_series), (steps, n_series)).astype(float)
    if kind == "noisy_gauge":
        return np.exp(rng.normal(np.log(0.2), 0.3, (steps, n_series)))
    raise ValueError(f"unknown kind {kind!r}")


def measure(kind: str, n_series: int, days: int, root: Path) -> dict[str, float]:
    rng = np.random.default_rng(0)
    names = labels(n_series)
    steps = SECONDS_PER_DAY // STEP_SECONDS
    samples = 0
    started = time.perf_counter()
    for day in range(days):
        timestamps = FIRST_DAY + day * SECONDS_PER_DAY + STEP_SECONDS * np.arange(steps, dtype=float)
        block = SeriesBlock(
            labels=names, timestamps=timestamps, values=day_values(kind, n_series, steps, rng)
        )
        rows = block_rows(kind, block)
        lake.merge_rows(str(root), kind, rows)
        samples += rows.num_rows
    seconds = time.perf_counter() - started
    table = lake.open_table(str(root))
    actions = pa.table(table.get_add_actions(flatten=True))
    data_bytes = int(sum(actions.column("size_bytes").to_pylist()))
    log_bytes = sum(path.stat().st_size for path in (root / lake.TABLE_NAME / "_delta_log").iterdir())
    return {
        "samples": samples,
        "files": actions.num_rows,
        "data_bytes": data_bytes,
        "log_bytes": log_bytes,
        "bytes_per_sample": data_bytes / samples,
        "samples_per_second": samples / seconds,
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--series", type=int, default=10_000)
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--kinds", default="counter_rate,integer_gauge,noisy_gauge")
    args = parser.parse_args()
    print(f"{args.series} series x {args.days} days at {STEP_SECONDS} s, one table per kind")
    header = (
        f"{'kind':<14} {'samples':>12} {'files':>6} {'Parquet MB':>11} {'log KB':>7} "
        f"{'bytes/sample':>13} {'aim':>5} {'write samples/s':>16}"
    )
    print(header)
    print("-" * len(header))
    for kind in args.kinds.split(","):
        with tempfile.TemporaryDirectory(prefix="lake-size-") as folder:
            result = measure(kind, args.series, args.days, Path(folder))
        print(
            f"{kind:<14} {result['samples']:>12,} {result['files']:>6} {result['data_bytes'] / 1e6:>11.1f} "
            f"{result['log_bytes'] / 1e3:>7.1f} {result['bytes_per_sample']:>13.3f} "
            f"{'<=' + str(TARGET_BYTES_PER_SAMPLE):>5} {result['samples_per_second']:>16,.0f}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
