"""Read backtest inputs (CSV files, folders) and write the scored CSV. The only file I/O here."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np
import pandas as pd

from slo_pipeline.adapters.series_files import InputError, SeriesFile, read_series_csv

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
) -> None:
    """The input rows plus, per series, anomaly_score, anomaly_tail_probability, alarm, firing,
    scored and driver (the feature behind an anomalous row, as the exporter names it).

    One series (or one multivariate entity): plain column names; several: suffixed `_<column>`.
    Rows no model could score (warm-up, gaps) get probability 1 and score 0 ("no evidence"), and
    `scored` = 0.
    """
    frame = pd.DataFrame({"timestamp": series.timestamps.strftime("%Y-%m-%d %H:%M:%S")})
    if series.signals:
        for k, column in enumerate(series.signal_columns or series.signals):
            frame[column] = series.values[:, 0, k]
    else:
        for k, column in enumerate(series.columns):
            frame[column] = series.values[:, k]
    for k, column in enumerate(series.columns):
        suffix = "" if len(series.columns) == 1 else f"_{column}"
        scored = np.isfinite(tail_probability[:, k])
        frame[f"anomaly_score{suffix}"] = np.where(scored, anomaly_score[:, k], 0.0)
        frame[f"anomaly_tail_probability{suffix}"] = np.where(scored, tail_probability[:, k], 1.0)
        frame[f"alarm{suffix}"] = alarm[:, k].astype(int)
        frame[f"firing{suffix}"] = firing[:, k].astype(int)
        frame[f"scored{suffix}"] = scored.astype(int)
        if driver is not None:
            frame[f"driver{suffix}"] = driver[:, k]
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        frame.to_csv(output, index=False, float_format="%.6g")
    except OSError as err:
        raise InputError(f"cannot write {output}: {err}") from err
