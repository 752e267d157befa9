"""The Numenta Anomaly Benchmark score, re-implemented from NAB's `nab/sweeper.py` (v1.1).

Semantics kept exactly as NAB scores a data file (so numbers are comparable with its scoreboard):

- Rows before the probationary period (`min(floor(0.15 * rows), 0.15 * 5000)`) are ignored.
- A detection inside a window scores `tp_weight * S(-(right - i + 1) / width) / S(-1)` where
  `S(x) = 2 * sigmoid(-5x) - 1` (the scaled sigmoid); only the best, i.e. the earliest, detection in
  a window counts. A window without any detection costs `-fn_weight`.
- Every detection outside a window is a false positive worth `fp_weight * S(|i - prev_right| /
  (prev_width - 1))` relative to the closest preceding window (`S > 3` is -1), or `-fp_weight` when
  no window precedes it. Early false positives right after a window are therefore cheap.
- Normalisation (NAB's runner): `100 * (raw - null) / (perfect - null)` with `null` the score of the
  detector that never fires and `perfect = tp_weight * number of windows`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

PROBATION_PERCENT = 0.15
# NAB caps the probationary period at 15 % of 5000 rows (750 rows).
PROBATION_CAP_ROWS = 5000


@dataclass(frozen=True)
class CostProfile:
    tp_weight: float
    fp_weight: float
    fn_weight: float


# NAB's config/profiles.json.
STANDARD = CostProfile(tp_weight=1.0, fp_weight=0.11, fn_weight=1.0)
REWARD_LOW_FP = CostProfile(tp_weight=1.0, fp_weight=0.22, fn_weight=1.0)
REWARD_LOW_FN = CostProfile(tp_weight=1.0, fp_weight=0.11, fn_weight=2.0)


@dataclass(frozen=True)
class NabResult:
    raw: float
    null: float
    perfect: float

    @property
    def normalised(self) -> float:
        """NAB's 0..100 score (can go negative); NaN when the file has no window to score."""
        if self.perfect == self.null:
            return math.nan
        return 100.0 * (self.raw - self.null) / (self.perfect - self.null)

    def __add__(self, other: NabResult) -> NabResult:
        # NAB normalises the *sums* over the corpus, not the mean of per-file scores.
        return NabResult(self.raw + other.raw, self.null + other.null, self.perfect + other.perfect)


def probationary_length(n_rows: int) -> int:
    """Rows `0 .. length-1` are the detector's warm-up; NAB ignores detections there."""
    return int(min(math.floor(PROBATION_PERCENT * n_rows), PROBATION_PERCENT * PROBATION_CAP_ROWS))


def scaled_sigmoid(relative_position: float) -> float:
    """NAB's S(x): ~1 at the left edge of a window (-1), 0 at its right edge, -1 far after it."""
    if relative_position > 3.0:
        return -1.0
    return 2.0 / (1.0 + math.exp(5.0 * relative_position)) - 1.0


def nab_score(
    detections: Sequence[bool] | np.ndarray,
    windows: Sequence[tuple[int, int]],
    profile: CostProfile = STANDARD,
) -> NabResult:
    """Score one file: `detections[i]` is True where the detector fired on row i.

    `windows` are inclusive row ranges `(first, last)`, sorted and disjoint (NAB's windows are).
    """
    detected = np.asarray(detections, dtype=bool)
    _check_windows(windows, len(detected))
    probation = probationary_length(len(detected))
    max_tp = scaled_sigmoid(-1.0)
    # Windows that end inside the probationary period never get a name in NAB's sweep, so they
    # count neither as misses nor as hits (perfect still counts them, as NAB's runner does).
    best = {k: -profile.fn_weight for k, (_, last) in enumerate(windows) if last >= probation}
    fp_total = 0.0
    for i in np.flatnonzero(detected).tolist():
        if i < probation:
            continue
        inside = _window_containing(windows, i)
        if inside is not None:
            first, last = windows[inside]
            width = last - first + 1
            weighted = scaled_sigmoid(-(last - i + 1) / width) * profile.tp_weight / max_tp
            best[inside] = max(best[inside], weighted)
            continue
        previous = _closest_preceding_window(windows, i)
        if previous is None:
            unweighted = -1.0
        else:
            first, last = windows[previous]
            # NAB divides by (width - 1); a one-row window would divide by zero there.
            unweighted = scaled_sigmoid(abs(i - last) / max(last - first, 1))
        fp_total += unweighted * profile.fp_weight
    raw = sum(best.values()) + fp_total
    return NabResult(raw=raw, null=-profile.fn_weight * len(best), perfect=profile.tp_weight * len(windows))


def _check_windows(windows: Sequence[tuple[int, int]], n_rows: int) -> None:
    previous_last = -1
    for first, last in windows:
        if not 0 <= first <= last < n_rows:
            raise ValueError(f"window {(first, last)} is outside the {n_rows} rows or reversed")
        if first <= previous_last:
            raise ValueError(f"windows must be sorted and disjoint, got {list(windows)}")
        previous_last = last


def _window_containing(windows: Sequence[tuple[int, int]], i: int) -> int | None:
    for k, (first, last) in enumerate(windows):
        if first <= i <= last:
            return k
    return None


def _closest_preceding_window(windows: Sequence[tuple[int, int]], i: int) -> int | None:
    preceding = [k for k, (_, last) in enumerate(windows) if last < i]
    return preceding[-1] if preceding else None
