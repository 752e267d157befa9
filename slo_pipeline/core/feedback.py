"""Operator feedback on incidents, as pure functions the worker applies when it retrains.

- True positive: the incident was real. Its samples are excluded from training (a model must
  not learn that outages are normal) and become labels for validation: a candidate that would
  not have alarmed during a confirmed incident is worse than one that would.
- False positive: the incident was noise. Its samples stay in training and are oversampled, so
  the forest learns that region as normal; and that series' threshold is tightened just enough
  that the same evidence would not have fired (bounded, so one label cannot mute a series).

Incidents are `(start, end)` unix-second intervals per series index; the caller maps series
label sets (the incident's fingerprint) to column indices.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

# How many times a false-positive sample is repeated in the forest's fitting rows.
FALSE_POSITIVE_OVERSAMPLING = 5
# A false positive may tighten a series' threshold by at most this factor (p* / factor).
MAX_THRESHOLD_FACTOR = 100.0
# Tighten a little past the incident's peak evidence, so the same episode stays quiet.
THRESHOLD_MARGIN = 2.0

Intervals = Mapping[int, Sequence[tuple[float, float]]]


def interval_mask(
    timestamps: np.ndarray, n_series: int, intervals: Intervals, settle_seconds: float = 0.0
) -> np.ndarray:
    """`[T, N]` True inside any interval of that series, or within `settle_seconds` after it.

    The settle time covers samples whose trailing windows still contain the incident.
    """
    times = np.asarray(timestamps, dtype=np.float64)
    mask = np.zeros((len(times), n_series), dtype=bool)
    for series, spans in intervals.items():
        if not 0 <= series < n_series:
            raise ValueError(f"incident for series index {series}, but there are {n_series} series")
        for start, end in spans:
            if end < start:
                raise ValueError(f"incident ends before it starts: {(start, end)}")
            mask[:, series] |= (times >= start) & (times <= end + settle_seconds)
    return mask


def oversampled_rows(rows: np.ndarray, false_positive: np.ndarray) -> np.ndarray:
    """Fitting rows with every false-positive row repeated FALSE_POSITIVE_OVERSAMPLING times."""
    rows = np.asarray(rows)
    flagged = np.asarray(false_positive, dtype=bool)
    if flagged.shape != (len(rows),):
        raise ValueError(f"false-positive flags {flagged.shape} do not match {len(rows)} rows")
    extra = np.repeat(rows[flagged], FALSE_POSITIVE_OVERSAMPLING - 1, axis=0)
    return np.concatenate([rows, extra]) if len(extra) else rows


def threshold_factors(
    tail_probabilities: np.ndarray, false_positive: np.ndarray, threshold: float, keys: Sequence[str]
) -> dict[str, float]:
    """Per-series tightening so that each false positive's lowest p would not have fired.

    `tail_probabilities[T, N]` are the published probabilities of the new model on the training
    history, `false_positive[T, N]` the samples of incidents marked false positive. Series whose
    false positives stay above `threshold` under the new model need no tightening.
    """
    p = np.asarray(tail_probabilities, dtype=np.float64)
    flagged = np.asarray(false_positive, dtype=bool)
    if p.shape != flagged.shape or p.ndim != 2 or len(keys) != p.shape[1]:
        raise ValueError(f"probabilities {p.shape}, flags {flagged.shape} and {len(keys)} keys disagree")
    factors: dict[str, float] = {}
    for k, key in enumerate(keys):
        during = p[flagged[:, k], k]
        during = during[np.isfinite(during)]
        if len(during) == 0 or during.min() >= threshold:
            continue
        factor = THRESHOLD_MARGIN * threshold / max(float(during.min()), 1e-300)
        factors[key] = float(min(factor, MAX_THRESHOLD_FACTOR))
    return factors


def incident_windows(timestamps: np.ndarray, spans: Sequence[tuple[float, float]]) -> list[tuple[int, int]]:
    """Row ranges (inclusive) of confirmed incidents, to score validation alarms against."""
    times = np.asarray(timestamps, dtype=np.float64)
    windows = []
    for start, end in spans:
        first = int(np.searchsorted(times, start, side="left"))
        last = int(np.searchsorted(times, end, side="right")) - 1
        if first <= last:
            windows.append((first, last))
    return sorted(windows)
