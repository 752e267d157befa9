"""Read backtest inputs (CSV files, folders) and write the scored CSV. The only file I/O here."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np
import pandas as pd

from slo_pipeline.adapters.series_files import InputError, SeriesFile, read_series_csv
from slo_pipeline.core.export_rules import Timeline
from slo_pipeline.core.scorability import DUPLICATE_TIMESTAMP, UNREADABLE_TIMESTAMP

__all__ = ["InputError", "SeriesFile", "as_signals", "expand_inputs", "read_series_csv", "write_scored_csv"]


def expand_inputs(paths: list[Path]) -> list[Path]:
    """Files as given, folders as every *.csv below them (sorted), duplicates removed."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found.extend(sorted(p for p in path.rglob("*.csv") if p.is_file()))
        elif path.is_file():
            found.append(path)
        else:
            raise InputError(f"{path}: no such file or folder")
    unique = list(dict.fromkeys(p.resolve() for p in found))
    if not unique:
        raise InputError(f"no CSV files in {', '.join(map(str, paths))}")
    return unique


def as_signals(series: SeriesFile) -> SeriesFile:
    """A CSV's value columns as the signals of one entity (`--multivariate`): `[T, 1, K]`.

    Column names become signal names (snake_case: lower case, other characters `_`), which name
    features and drivers (`cpu:level_vs_long`).
    """
    if series.signals:
        return series
    if len(series.columns) < 2:
        raise InputError(f"{series.path}: --multivariate needs at least two value columns")
    names = tuple(_signal_name(column) for column in series.columns)
    if len(set(names)) != len(names):
        raise InputError(f"{series.path}: value columns {series.columns} give clashing signal names {names}")
    return dataclasses.replace(
        series,
        columns=[series.path.stem],
        values=series.values[:, None, :],
        signals=names,
        signal_columns=tuple(series.columns),
    )


def _signal_name(column: str) -> str:
    name = re.sub(r"[^a-z0-9_]", "_", column.strip().lower())
    return name if re.match(r"^[a-z]", name) else f"s_{name}"


def write_scored_csv(
    series: SeriesFile,
    output: Path,
    *,
    anomaly_score: np.ndarray,
    tail_probability: np.ndarray,
    alarm: np.ndarray,
    firing: np.ndarray,
    driver: np.ndarray | None = None,
    unscored_reason: np.ndarray | None = None,
) -> None:
    """The input rows, in the input's order, plus per series anomaly_score,
    anomaly_tail_probability, alarm, firing, scored, driver (the feature behind an anomalous row,
    as the exporter names it) and reason (why a row has no score, slo_pipeline.scorability).

    One series (or one multivariate entity): plain column names; several: suffixed `_<column>`.
    Rows no model could score (warm-up, gaps) get probability 1 and score 0 ("no evidence"), and
    `scored` = 0. A row replaced by a later row with the same timestamp is not scored
    (reason `duplicate_timestamp`); its timestamp's sample is, on the row that was kept.
    """
    timeline = series.timeline

    def rows(per_sample: np.ndarray, fill: object) -> np.ndarray:
        return per_sample if timeline is None else timeline.to_input_rows(per_sample, fill)

    formatted = series.timestamps.strftime("%Y-%m-%d %H:%M:%S").to_numpy(dtype=object)
    times = rows(formatted, "")
    if timeline is not None:
        # An unreadable timestamp is written as it was read.
        unreadable = timeline.row_position < 0
        times[unreadable] = np.asarray(series.input_times, dtype=object)[unreadable]
    frame = pd.DataFrame({"timestamp": times})
    file_values = series.input_values if series.input_values is not None else None
    if series.signals:
        for k, column in enumerate(series.signal_columns or series.signals):
            frame[column] = file_values[:, k] if file_values is not None else series.values[:, 0, k]
    else:
        for k, column in enumerate(series.columns):
            frame[column] = file_values[:, k] if file_values is not None else series.values[:, k]
    reasons = (
        unscored_reason if unscored_reason is not None else np.full(tail_probability.shape, "", dtype=object)
    )
    for k, column in enumerate(series.columns):
        suffix = "" if len(series.columns) == 1 else f"_{column}"
        scored = np.isfinite(tail_probability[:, k])
        frame[f"anomaly_score{suffix}"] = rows(np.where(scored, anomaly_score[:, k], 0.0), 0.0)
        frame[f"anomaly_tail_probability{suffix}"] = rows(np.where(scored, tail_probability[:, k], 1.0), 1.0)
        frame[f"alarm{suffix}"] = rows(alarm[:, k].astype(int), 0)
        frame[f"firing{suffix}"] = rows(firing[:, k].astype(int), 0)
        frame[f"scored{suffix}"] = rows(scored.astype(int), 0)
        if driver is not None:
            frame[f"driver{suffix}"] = rows(driver[:, k], "")
        frame[f"reason{suffix}"] = _input_row_reasons(timeline, rows(reasons[:, k].astype(object), ""))
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        frame.to_csv(output, index=False, float_format="%.6g")
    except OSError as err:
        raise InputError(f"cannot write {output}: {err}") from err


def _input_row_reasons(timeline: Timeline | None, reasons: np.ndarray) -> np.ndarray:
    """Per input row: the sample's reason, or why the row itself was not used."""
    if timeline is None:
        return reasons
    reasons = reasons.copy()
    reasons[timeline.superseded] = DUPLICATE_TIMESTAMP
    reasons[timeline.row_position < 0] = UNREADABLE_TIMESTAMP
    return reasons
