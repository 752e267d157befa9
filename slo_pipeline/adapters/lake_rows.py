"""A detector's `SeriesBlock` <-> the data lake's long rows, without any I/O.

One row per (series, signal, timestamp) that has a sample: `detector`, `day` (UTC date, the
partition), `timestamp` (UTC, microseconds), `series` (the label set as sorted JSON, the key
`series_keys` gives everywhere else), `signal` ("" for a single-query detector) and `value`.
Rows are sorted by series, signal and timestamp, so within a file each series is one run: the
dictionary-encoded `series` and the delta-encoded `timestamp` then cost almost nothing.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from slo_pipeline.adapters.prometheus import SeriesBlock, series_keys, step_grid

SECONDS_PER_DAY = 86400
MICROSECONDS = 1_000_000

SCHEMA = pa.schema(
    [
        pa.field("detector", pa.string(), nullable=False),
        pa.field("day", pa.string(), nullable=False),
        pa.field("timestamp", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("series", pa.string(), nullable=False),
        pa.field("signal", pa.string(), nullable=False),
        pa.field("value", pa.float64(), nullable=False),
    ]
)
PARTITION_COLUMNS = ["detector", "day"]


def day_of(seconds: float) -> str:
    """The partition of a unix time: its UTC date, `YYYY-MM-DD`."""
    return datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%d")


def days_between(start: float, end: float) -> list[str]:
    """Every UTC date that `[start, end]` touches, oldest first."""
    first = math.floor(start / SECONDS_PER_DAY)
    last = math.floor(end / SECONDS_PER_DAY)
    return [day_of(day * SECONDS_PER_DAY) for day in range(first, last + 1)]


def block_rows(detector: str, block: SeriesBlock) -> pa.Table:
    """The samples of `block` as lake rows (missing samples, NaN in the block, are not rows)."""
    keys_in_block = series_keys(block.labels)
    # Columns in key order, so rows are sorted by series: a merge batch then covers one range of
    # series, and the merge's series bounds let delta-rs skip the files of the other batches.
    order = np.argsort(np.asarray(keys_in_block, dtype=object), kind="stable")
    ordered = block.values[:, order]
    values = ordered if block.signals else ordered[:, :, None]
    signals = list(block.signals) or [""]
    t, n, k = values.shape
    # Series-major: [N, K, T] flattened, so each series' samples are contiguous and in time order.
    flat = np.ascontiguousarray(values.transpose(1, 2, 0)).reshape(-1)
    present = ~np.isnan(flat)
    series_index = np.repeat(np.arange(n, dtype=np.int32), k * t)[present]
    signal_index = np.tile(np.repeat(np.arange(k, dtype=np.int32), t), n)[present]
    micros = np.rint(np.asarray(block.timestamps, dtype=np.float64) * MICROSECONDS).astype(np.int64)
    time_index = np.tile(np.arange(t), n * k)[present]
    day_numbers, day_of_row = np.unique(micros // (SECONDS_PER_DAY * MICROSECONDS), return_inverse=True)
    day_names = pa.array([day_of(float(d) * SECONDS_PER_DAY) for d in day_numbers], pa.string())
    keys = pa.array([keys_in_block[i] for i in order], type=pa.string())
    columns = {
        "detector": pa.repeat(pa.scalar(detector, pa.string()), len(series_index)),
        "day": pa.DictionaryArray.from_arrays(pa.array(day_of_row[time_index]), day_names).cast(pa.string()),
        "timestamp": pa.array(micros[time_index], type=pa.timestamp("us", tz="UTC")),
        "series": pa.DictionaryArray.from_arrays(pa.array(series_index), keys).cast(pa.string()),
        "signal": pa.DictionaryArray.from_arrays(pa.array(signal_index), pa.array(signals, pa.string())).cast(
            pa.string()
        ),
        "value": pa.array(flat[present], type=pa.float64()),
    }
    return pa.table(columns, schema=SCHEMA)


def rows_block(
    rows: pa.Table, *, start: float, end: float, step_seconds: float, signals: Sequence[str] = ()
) -> SeriesBlock:
    """Lake rows back into a block on the step grid of `[start, end]`; series sorted by key.

    Rows off the grid or of a signal the detector no longer has are ignored; a step without a
    row is NaN, as Prometheus' missing samples are.
    """
    grid = step_grid(start, end, step_seconds)
    names = list(signals) or [""]
    keys, series_index = np.unique(rows.column("series").to_numpy(zero_copy_only=False), return_inverse=True)
    signal_index = _positions(rows.column("signal").to_numpy(zero_copy_only=False), names)
    seconds = rows.column("timestamp").cast(pa.int64()).to_numpy().astype(np.float64) / MICROSECONDS
    row_index = np.rint((seconds - grid[0]) / step_seconds).astype(np.int64)
    usable = (signal_index >= 0) & (row_index >= 0) & (row_index < len(grid))
    usable &= np.abs(grid[np.clip(row_index, 0, len(grid) - 1)] - seconds) < 1e-3
    values = np.full((len(grid), len(keys), len(names)), np.nan)
    values[row_index[usable], series_index[usable], signal_index[usable]] = rows.column("value").to_numpy()[
        usable
    ]
    labels = [json.loads(key) for key in keys]
    if not signals:
        return SeriesBlock(labels=labels, timestamps=grid, values=values[:, :, 0])
    return SeriesBlock(labels=labels, timestamps=grid, values=values, signals=tuple(signals))


def _positions(found: np.ndarray, names: Sequence[str]) -> np.ndarray:
    lookup = {name: index for index, name in enumerate(names)}
    return np.fromiter((lookup.get(name, -1) for name in found), dtype=np.int64, count=len(found))


def rows_digest(rows: pa.Table) -> str:
    """A content hash of rows, independent of their order and of how they are split in files."""
    ordered = rows.select(["series", "signal", "timestamp", "value"]).sort_by(
        [("series", "ascending"), ("signal", "ascending"), ("timestamp", "ascending")]
    )
    digest = hashlib.sha256()
    for name in ("series", "signal"):
        encoded = pc.dictionary_encode(ordered.column(name)).combine_chunks()
        digest.update(encoded.indices.to_numpy().astype(np.int64).tobytes())
        digest.update("\0".join(encoded.dictionary.to_pylist()).encode())
    digest.update(ordered.column("timestamp").cast(pa.int64()).to_numpy().tobytes())
    digest.update(ordered.column("value").to_numpy().tobytes())
    return digest.hexdigest()[:16]
