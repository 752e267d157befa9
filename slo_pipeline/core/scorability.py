"""Why a series (or a row) has no score: one word from a small, fixed vocabulary.

A detector never stays silent about a series it cannot score. The exporter counts unscored series
per reason (`anomaly_exporter_unscored_series{reason=...}`, a bounded label), the backtest writes
the reason beside every unscored row and names it per file. Pure: arrays in, words out.
"""

from __future__ import annotations

import numpy as np

from slo_pipeline.core.features import clean, history_rows_needed
from slo_pipeline.core.window_stats import long_min_periods, medium_min_periods
from slo_pipeline.settings import FeatureWindows

# Fewer finite samples than the long window's warm-up (a new series, a coarse step with a short
# range), or, in a backtest, no model could be trained yet on the rows before.
TOO_LITTLE_HISTORY = "too_little_history"
# The latest sample is missing (the series stopped reporting, or a scrape gap right now).
NO_LATEST_SAMPLE = "no_latest_sample"
# Enough history, but a gap longer than the short window inside the windows the features need.
GAP_IN_WINDOW = "gap_in_window"
# Backtest only: an input row whose timestamp repeats a later row's (the later value is kept).
DUPLICATE_TIMESTAMP = "duplicate_timestamp"
# Backtest only: an input row whose timestamp could not be read (left out of the time line).
UNREADABLE_TIMESTAMP = "unreadable_timestamp"
# The reasons a live series can have (the exporter's `reason` label values), in order of priority.
SERIES_REASONS: tuple[str, ...] = (TOO_LITTLE_HISTORY, NO_LATEST_SAMPLE, GAP_IN_WINDOW)
REASONS: tuple[str, ...] = (*SERIES_REASONS, DUPLICATE_TIMESTAMP, UNREADABLE_TIMESTAMP)


def latest_unscored_reasons(values: np.ndarray, windows: FeatureWindows) -> np.ndarray:
    """Per series (entity) of `values[T, N]` or `[T, N, K]`: why its last row cannot be scored.

    Meant for the series whose score came out NaN; a series that looks scorable gets "" (it can
    still be unscorable for a reason the features alone do not show, e.g. a NaN the model
    produced). For K signals an entity takes the first reason any of its signals has, in the
    order of REASONS.
    """
    values = np.asarray(values, dtype=np.float64)
    n_signals = values.shape[2] if values.ndim == 3 else 1
    columns = values.reshape(values.shape[0], -1)
    n_columns = columns.shape[1]
    if columns.shape[0] == 0:
        return np.full(n_columns // n_signals, TOO_LITTLE_HISTORY, dtype=object)
    tail = clean(columns[-history_rows_needed(windows) :], max_gap=windows.short)
    reasons = np.full(n_columns, "", dtype=object)
    long_block = tail[-windows.long :]
    short_block = tail[-windows.short - 1 :]
    medium_block = tail[-windows.medium :]
    gap = ~np.isfinite(short_block).all(axis=0)
    gap |= np.isfinite(medium_block).sum(axis=0) < medium_min_periods(windows)
    reasons[gap] = GAP_IN_WINDOW
    reasons[~np.isfinite(tail[-1])] = NO_LATEST_SAMPLE
    reasons[np.isfinite(long_block).sum(axis=0) < long_min_periods(windows)] = TOO_LITTLE_HISTORY
    per_entity = reasons.reshape(-1, n_signals)
    result = np.full(per_entity.shape[0], "", dtype=object)
    for reason in reversed(SERIES_REASONS):
        result[(per_entity == reason).any(axis=1)] = reason
    return result


def unscored_counts(values: np.ndarray, probabilities: np.ndarray, windows: FeatureWindows) -> dict[str, int]:
    """Series of `values` whose published probability is NaN, counted per SERIES_REASONS (every
    reason present, 0 when none: a gauge per reason must drop back to 0, not keep its last value).
    A NaN the features do not explain counts as a gap, so the counts always add up."""
    unscored = ~np.isfinite(np.asarray(probabilities, dtype=np.float64))
    counts = dict.fromkeys(SERIES_REASONS, 0)
    if not unscored.any():
        return counts
    reasons = latest_unscored_reasons(np.asarray(values)[:, unscored], windows)
    reasons[reasons == ""] = GAP_IN_WINDOW
    for reason in SERIES_REASONS:
        counts[reason] = int(np.count_nonzero(reasons == reason))
    return counts
