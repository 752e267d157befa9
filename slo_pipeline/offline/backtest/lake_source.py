"""A configured detector's range from the data lake, alone or filling what Prometheus lacks.

`--source lake` replays the lake only (Prometheus may be gone); `--source auto` takes every
sample Prometheus still has and the lake's for the rest (older than Prometheus' retention, or
gaps). Both give the same `RangeSeries` as a Prometheus fetch: series sorted by label set, one row
per instant of the detector's step grid.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from slo_pipeline.adapters.lake import LakeError, read_slice
from slo_pipeline.adapters.lake_rows import rows_block
from slo_pipeline.adapters.prometheus import SeriesBlock, label_key, step_grid
from slo_pipeline.offline.backtest.io import InputError, SeriesFile
from slo_pipeline.offline.backtest.prometheus_range import RangeSeries, format_time, series_selector
from slo_pipeline.settings import DetectorConfig


def lake_block(
    lake: str, detector: DetectorConfig, *, start: float, end: float, step_seconds: int
) -> SeriesBlock:
    """The detector's samples the lake holds over `[start, end]`, on the step grid."""
    try:
        lake_slice = read_slice(lake, detector.name, start=start, end=end)
    except LakeError as err:
        raise InputError(str(err)) from err
    return rows_block(
        lake_slice.rows, start=start, end=end, step_seconds=step_seconds, signals=detector.signal_names
    )


def lake_range(
    lake: str, detector: DetectorConfig, *, start: float, end: float, step_seconds: int
) -> RangeSeries:
    if end <= start:
        raise InputError(
            f"the range is empty: --start {format_time(start)} is not before --end {format_time(end)}"
        )
    block = lake_block(lake, detector, start=start, end=end, step_seconds=step_seconds)
    if block.n_series == 0:
        raise InputError(
            f"the lake {lake!r} holds no samples of detector {detector.name!r} between "
            f"{format_time(start)} and {format_time(end)} (backfill it with `slo-pipeline lake sync`)"
        )
    return as_range_series(block, detector)


def as_range_series(block: SeriesBlock, detector: DetectorConfig) -> RangeSeries:
    timestamps = pd.DatetimeIndex(pd.to_datetime(block.timestamps, unit="s"))
    series = SeriesFile(
        path=Path(detector.name),
        timestamps=timestamps,
        columns=[series_selector(labels) for labels in block.labels],
        values=block.values,
        signals=block.signals,
    )
    return RangeSeries(series=series, labels=block.labels)


def prefer_primary(primary: SeriesBlock, fallback: SeriesBlock) -> SeriesBlock:
    """Both blocks' series (sorted by label set) on their shared grid: `primary`'s value where it
    has one, else `fallback`'s."""
    if not np.array_equal(primary.timestamps, fallback.timestamps):
        raise ValueError("the blocks to combine are on different time grids")
    if primary.signals != fallback.signals:
        raise ValueError(f"signals differ: {primary.signals} vs {fallback.signals}")
    keys = sorted({label_key(labels) for labels in [*primary.labels, *fallback.labels]})
    column = {key: index for index, key in enumerate(keys)}
    values = np.full((len(primary.timestamps), len(keys), *primary.values.shape[2:]), np.nan)
    for block, only_where_present in ((fallback, False), (primary, True)):
        for index, labels in enumerate(block.labels):
            source = block.values[:, index]
            target = values[:, column[label_key(labels)]]
            if only_where_present:
                present = ~np.isnan(source)
                target[present] = source[present]
            else:
                target[...] = source
    return SeriesBlock(
        labels=[dict(key) for key in keys],
        timestamps=primary.timestamps,
        values=values,
        signals=primary.signals,
    )


def fill_from_lake(
    fetched: RangeSeries, lake: str, detector: DetectorConfig, *, start: float, end: float, step_seconds: int
) -> RangeSeries:
    """`fetched` (from Prometheus) with its missing samples taken from the lake."""
    grid = step_grid(start, end, step_seconds)
    primary = SeriesBlock(
        labels=fetched.labels, timestamps=grid, values=fetched.series.values, signals=detector.signal_names
    )
    combined = prefer_primary(
        primary, lake_block(lake, detector, start=start, end=end, step_seconds=step_seconds)
    )
    return as_range_series(combined, detector)
