"""Time-series files on disk (CSV `timestamp,value[,...]`), shared by `backtest` and file training.

The first column is the time (anything pandas parses), the rest are one series each.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd


class InputError(ValueError):
    """An input file cannot be used (backtest, file training); the message names the file and why."""


@dataclass(frozen=True)
class SeriesFile:
    path: Path
    timestamps: pd.DatetimeIndex  # [T], sorted
    columns: list[str]  # one name per series (entity)
    values: np.ndarray  # [T, N], or [T, N, K] with K signals
    # Multivariate: the K signal names, and (CSV) the file's value columns they were read from.
    signals: tuple[str, ...] = ()
    signal_columns: tuple[str, ...] = ()

    @property
    def epoch_seconds(self) -> np.ndarray:
        return np.asarray((self.timestamps - pd.Timestamp(0)) / pd.Timedelta(seconds=1), dtype=np.float64)

    @property
    def step_seconds(self) -> int:
        """The median spacing of rows: rows are samples, whatever irregularities the file has."""
        if len(self.timestamps) < 2:
            raise InputError(f"{self.path}: need at least two rows to infer the step")
        step = float(np.median(np.diff(self.epoch_seconds)))
        if step <= 0:
            raise InputError(f"{self.path}: timestamps do not increase (median spacing {step}s)")
        return max(1, round(step))


def read_series_csv(path: Path) -> SeriesFile:
    """`timestamp,value[,more value columns]`: first column is the time, the rest are series."""
    try:
        frame = pd.read_csv(path)
    except (OSError, ValueError) as err:
        raise InputError(f"{path}: cannot read CSV: {err}") from err
    if frame.shape[1] < 2:
        raise InputError(f"{path}: need a timestamp column and at least one value column")
    time_column = frame.columns[0]
    try:
        timestamps = pd.DatetimeIndex(pd.to_datetime(frame[time_column]))
    except (ValueError, TypeError) as err:
        raise InputError(f"{path}: column {time_column!r} is not a timestamp: {err}") from err
    if not timestamps.is_monotonic_increasing:
        raise InputError(f"{path}: timestamps must be sorted ascending")
    value_columns = [str(c) for c in frame.columns[1:]]
    values = frame[frame.columns[1:]].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)
    return SeriesFile(path=path, timestamps=timestamps, columns=value_columns, values=values)
