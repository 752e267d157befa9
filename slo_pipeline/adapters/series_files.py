"""Time-series files on disk (CSV `timestamp,value[,...]`), shared by `backtest` and file training.

The first column is the time (anything pandas parses), the rest are one series each.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from slo_pipeline.core.export_rules import Timeline, TimelineError, build_timeline


class InputError(ValueError):
    """An input file cannot be used (backtest, file training); the message names the file and why."""


@dataclass(frozen=True)
class SeriesFile:
    path: Path
    timestamps: pd.DatetimeIndex  # [T], strictly increasing: the samples the detector replays
    columns: list[str]  # one name per series (entity)
    values: np.ndarray  # [T, N], or [T, N, K] with K signals
    # Multivariate: the K signal names, and (CSV) the file's value columns they were read from.
    signals: tuple[str, ...] = ()
    signal_columns: tuple[str, ...] = ()
    # CSV inputs: how the file's rows became samples (export_rules), the time column as written
    # and the value columns as read, so outputs keep the input's rows in the input's order.
    timeline: Timeline | None = None
    input_times: tuple[str, ...] = ()
    input_values: np.ndarray | None = None  # [R, C]

    @property
    def epoch_seconds(self) -> np.ndarray:
        return np.asarray((self.timestamps - pd.Timestamp(0)) / pd.Timedelta(seconds=1), dtype=np.float64)

    @property
    def step_seconds(self) -> int:
        """The median spacing of samples (export_rules: rows are samples, gaps are filled)."""
        if self.timeline is not None:
            return max(1, round(self.timeline.step_ns / 1e9))
        if len(self.timestamps) < 2:
            raise InputError(f"{self.path}: need at least two rows to infer the step")
        step = float(np.median(np.diff(self.epoch_seconds)))
        if step <= 0:
            raise InputError(f"{self.path}: timestamps do not increase (median spacing {step}s)")
        return max(1, round(step))


def read_series_csv(path: Path) -> SeriesFile:
    """`timestamp,value[,more value columns]`: first column is the time, the rest are series.

    Real exports are put on a time line by the rule in export_rules (sorted, the last row of a
    repeated timestamp kept, gaps filled with missing samples); `timeline.report` says how many
    rows each rule touched. Unreadable values are missing samples. Refused: a file that is not
    CSV, has no value column or not two readable timestamps.
    """
    try:
        frame = pd.read_csv(path)
    except (OSError, ValueError) as err:
        raise InputError(f"{path}: cannot read CSV: {err}") from err
    if frame.shape[1] < 2:
        raise InputError(f"{path}: need a timestamp column and at least one value column")
    time_column = frame.columns[0]
    parsed = _parse_times(frame[time_column])
    readable = np.asarray(parsed.notna())
    if not readable.any():
        raise InputError(f"{path}: column {time_column!r} holds no readable timestamp")
    try:
        timeline = build_timeline(parsed.to_numpy(dtype="datetime64[ns]").astype(np.int64), readable)
    except TimelineError as err:
        raise InputError(f"{path}: {err}") from err
    value_columns = [str(c) for c in frame.columns[1:]]
    values = frame[frame.columns[1:]].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)
    return SeriesFile(
        path=path,
        timestamps=pd.DatetimeIndex(timeline.times_ns.astype("datetime64[ns]")),
        columns=value_columns,
        values=timeline.take(values),
        timeline=timeline,
        input_times=tuple(frame[time_column].astype(str)),
        input_values=values,
    )


def _parse_times(column: pd.Series) -> pd.Series:
    """Naive UTC times (NaT where unreadable). Offsets (RFC 3339, also mixed ones across a
    daylight-saving change) are converted to UTC; naive times are taken as they are."""
    text = column.astype(str)
    has_offset = text.str.contains(r"(?:[+-]\d\d:?\d\d|Z)$", regex=True)
    with warnings.catch_warnings():
        # "Could not infer format": per-element parsing is the intended fallback here.
        warnings.simplefilter("ignore", UserWarning)
        if has_offset.any():
            parsed = pd.to_datetime(column, errors="coerce", utc=True, format="mixed").dt.tz_localize(None)
        else:
            parsed = pd.to_datetime(column, errors="coerce")
            if parsed.isna().any():
                parsed = pd.to_datetime(column, errors="coerce", format="mixed")
    if not pd.api.types.is_datetime64_any_dtype(parsed):
        return pd.Series(pd.NaT, index=column.index, dtype="datetime64[ns]")
    return parsed.astype("datetime64[ns]")
