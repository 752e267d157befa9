"""Event-level metrics: did an alarm arrive during each labelled incident, and how many did not?

An operator experiences incidents and pages, not rows, so everything here counts *alarm onsets*
(the rows where the alert starts firing) against labelled windows:

- a window with at least one onset inside it is detected; its delay is first onset - window start;
- an onset outside every window is a false alarm; further onsets inside an already detected
  window are redundant (counted, but neither true nor false);
- precision = detected / (detected + false alarms), recall = detected / windows.

Rows of the probationary period (the detector's warm-up) are ignored, as NAB does, and windows
that end inside it are not counted.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from slo_pipeline.offline.evaluation.nab import probationary_length

SECONDS_PER_WEEK = 7 * 24 * 3600


@dataclass(frozen=True)
class EventCounts:
    windows: int
    detected: int
    false_alarms: int
    redundant_alarms: int
    delay_seconds_total: float
    normal_seconds: float  # scored time outside windows: the exposure for false alarms

    @property
    def precision(self) -> float:
        alarms = self.detected + self.false_alarms
        return self.detected / alarms if alarms else math.nan

    @property
    def recall(self) -> float:
        return self.detected / self.windows if self.windows else math.nan

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        if math.isnan(p) or math.isnan(r) or p + r == 0:
            return math.nan
        return 2 * p * r / (p + r)

    @property
    def mean_delay_seconds(self) -> float:
        return self.delay_seconds_total / self.detected if self.detected else math.nan

    @property
    def false_alarms_per_week(self) -> float:
        if self.normal_seconds <= 0:
            return math.nan
        return self.false_alarms * SECONDS_PER_WEEK / self.normal_seconds

    def __add__(self, other: EventCounts) -> EventCounts:
        return EventCounts(
            windows=self.windows + other.windows,
            detected=self.detected + other.detected,
            false_alarms=self.false_alarms + other.false_alarms,
            redundant_alarms=self.redundant_alarms + other.redundant_alarms,
            delay_seconds_total=self.delay_seconds_total + other.delay_seconds_total,
            normal_seconds=self.normal_seconds + other.normal_seconds,
        )


def event_counts(
    onsets: Sequence[bool] | np.ndarray,
    windows: Sequence[tuple[int, int]],
    timestamps_seconds: np.ndarray,
) -> EventCounts:
    """Count one file. `windows` are inclusive row ranges; timestamps are epoch seconds per row."""
    onset = np.asarray(onsets, dtype=bool)
    times = np.asarray(timestamps_seconds, dtype=np.float64)
    if len(onset) != len(times):
        raise ValueError(f"{len(onset)} onsets but {len(times)} timestamps")
    probation = probationary_length(len(onset))
    scored = np.arange(len(onset)) >= probation
    in_window = np.zeros(len(onset), dtype=bool)
    detected = redundant = 0
    delay_total = 0.0
    counted_windows = 0
    for first, last in windows:
        if last < probation:
            continue
        counted_windows += 1
        in_window[first : last + 1] = True
        hits = np.flatnonzero(onset[first : last + 1] & scored[first : last + 1])
        if len(hits):
            detected += 1
            redundant += len(hits) - 1
            delay_total += times[first + hits[0]] - times[first]
    false_alarms = int(np.sum(onset & scored & ~in_window))
    return EventCounts(
        windows=counted_windows,
        detected=detected,
        false_alarms=false_alarms,
        redundant_alarms=redundant,
        delay_seconds_total=delay_total,
        normal_seconds=_exposure_seconds(times, scored & ~in_window),
    )


def _exposure_seconds(times: np.ndarray, mask: np.ndarray) -> float:
    """Time covered by the masked rows, each row standing for the step that ends at it."""
    if len(times) < 2:
        return 0.0
    steps = np.diff(times, prepend=times[0] - np.median(np.diff(times)))
    return float(np.sum(steps[mask]))
