"""Read NAB `combined_windows.json` label files and turn windows into row ranges of a data file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd


class LabelError(ValueError):
    """The labels file is unreadable or does not describe the given data file."""


def load_windows(path: Path) -> dict[str, list[tuple[pd.Timestamp, pd.Timestamp]]]:
    """`{relative data path: [(start, end), ...]}` as NAB stores it."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise LabelError(f"cannot read labels file {str(path)!r}: {err}") from err
    if not isinstance(raw, dict):
        raise LabelError(f"labels file {str(path)!r} must map file names to lists of windows")
    windows: dict[str, list[tuple[pd.Timestamp, pd.Timestamp]]] = {}
    for key, limits in raw.items():
        try:
            windows[key] = [(pd.Timestamp(start), pd.Timestamp(end)) for start, end in limits]
        except (TypeError, ValueError) as err:
            raise LabelError(f"labels file {str(path)!r}: bad window list for {key!r}: {err}") from err
    return windows


def windows_for_file(
    labels: dict[str, list[tuple[pd.Timestamp, pd.Timestamp]]], data_path: Path
) -> list[tuple[pd.Timestamp, pd.Timestamp]] | None:
    """Find the entry of `data_path`: NAB keys are `category/file.csv`; match the longest suffix."""
    parts = data_path.resolve().parts
    best: tuple[int, str] | None = None
    for key in labels:
        key_parts = Path(key).parts
        if tuple(parts[-len(key_parts) :]) == key_parts:
            candidate = (len(key_parts), key)
            best = candidate if best is None or candidate > best else best
    if best is None:
        # Fall back to the bare file name, but only when it is unambiguous.
        matches = [key for key in labels if Path(key).name == data_path.name]
        if len(matches) > 1:
            raise LabelError(f"{data_path.name!r} matches several label entries: {matches}")
        return labels[matches[0]] if matches else None
    return labels[best[1]]


def window_rows(
    windows: list[tuple[pd.Timestamp, pd.Timestamp]], timestamps: pd.DatetimeIndex | np.ndarray
) -> list[tuple[int, int]]:
    """Inclusive row ranges: first row at or after the start, last row at or before the end.

    NAB requires window limits to be exact timestamps of the file; using the enclosing rows gives
    the same ranges in that case and still works for files resampled since.
    """
    index = pd.DatetimeIndex(timestamps)
    rows = []
    for start, end in windows:
        first = int(index.searchsorted(start, side="left"))
        last = int(index.searchsorted(end, side="right")) - 1
        if first <= last:
            rows.append((first, last))
    return sorted(rows)
