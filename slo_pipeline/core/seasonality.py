"""Choose a seasonal baseline at training time, only where the data has a cycle. Pure.

Features measure deviations from the recent level (features.py). On a series with a strong daily
or weekly cycle every peak is then a deviation, and the forest cannot learn "high is fine if it
was high yesterday" from a handful of days: alarm storms at every peak. Measured against the same
time one season earlier (`FeatureWindows.seasonal_baseline`, features.deseasonalised) the cycle
disappears and what is left is what changed.

Where there is no cycle a seasonal baseline only adds the noise of a second sample, so it is used
only when it clearly helps: on the training rows, the spread (IQR) of the series around its
seasonal baseline must be at most half the spread of its deviations from the long-window median
(the quantity the level features measure), and on a quantised series (fewer distinct values
than half its samples) so must their mean absolute deviation: a real cycle shrinks the whole
distribution of deviations, while the IQR alone can collapse on repeated values (two NAB AWS CPU
series qualified on the IQR at one retrain out of ~11, with ratios 0.26 and 0.31, while their
mean-deviation ratio stayed above 1.0; a daily pattern has both near 0.1). On a fine-grained
series the IQR ratio is kept alone: with the second check the AWS files averaged to one hour
(no longer quantised) lost baselines that helped them (IQR ratio 0.03, mean-deviation ratio
0.61 on one of them; −7 NAB points, docs/detection.md). A flat or noisy series never
qualifies, and then the model is exactly the non-seasonal one. Candidates are one day and one
week, each only with at least `MIN_SEASONS` seasons of training history.
"""

from __future__ import annotations

import numpy as np

from slo_pipeline.core.features import clean, deseasonalised
from slo_pipeline.core.window_stats import long_min_periods, moving_median
from slo_pipeline.settings import FeatureWindows

SEASONS_SECONDS: tuple[int, ...] = (24 * 3600, 7 * 24 * 3600)
# One season is consumed by the baseline itself; two more give rows to judge (and train on).
MIN_SEASONS = 3
# The baseline must at least halve the spread of the deviations the features measure.
MAX_SPREAD_RATIO = 0.5


def choose_seasonal_baseline(values: np.ndarray, windows: FeatureWindows, step_seconds: int) -> int:
    """The season in samples (0 = none) for `values[T, N]` or `[T, N, K]` (one choice for all)."""
    values = np.asarray(values, dtype=np.float64)
    columns = values.reshape(values.shape[0], -1)
    n_rows = columns.shape[0]
    candidates = [round(period / step_seconds) for period in SEASONS_SECONDS]
    candidates = [lag for lag in candidates if lag > 2 * windows.short and n_rows >= MIN_SEASONS * lag]
    if not candidates:
        return 0
    cleaned = clean(columns, max_gap=windows.short)
    level = cleaned - moving_median(cleaned, windows.long, long_min_periods(windows))
    best, best_ratio = 0, MAX_SPREAD_RATIO
    for lag in candidates:
        residual = deseasonalised(cleaned, windows.model_copy(update={"seasonal_baseline": lag}))
        ratio = spread_ratio(residual, level, quantised=is_quantised(cleaned))
        if ratio <= best_ratio:
            best, best_ratio = lag, ratio
    return best


def is_quantised(cleaned: np.ndarray) -> np.ndarray:
    """Per series: fewer distinct values than half its samples (values on a coarse grid)."""
    flags = []
    for k in range(cleaned.shape[1]):
        column = cleaned[np.isfinite(cleaned[:, k]), k]
        flags.append(column.size > 0 and 2 * np.unique(column).size < column.size)
    return np.array(flags, dtype=bool)


def spread_ratio(residual: np.ndarray, level: np.ndarray, quantised: np.ndarray | None = None) -> float:
    """Median over series of IQR(residual) / IQR(level) and, on a quantised series, the larger of
    that and the same ratio of mean absolute deviations (from the median), on the rows where both
    are defined; inf where no series has a spread to compare (a flat series is not seasonal)."""
    ratios = []
    for k in range(residual.shape[1]):
        both = np.isfinite(residual[:, k]) & np.isfinite(level[:, k])
        if both.sum() < 10:
            continue
        r, x = residual[both, k], level[both, k]
        level_iqr = np.subtract(*np.percentile(x, [75, 25]))
        level_mad = float(np.mean(np.abs(x - np.median(x))))
        if level_iqr <= 0 or level_mad <= 0:
            continue
        iqr_ratio = float(np.subtract(*np.percentile(r, [75, 25])) / level_iqr)
        if quantised is None or quantised[k]:
            ratios.append(max(iqr_ratio, float(np.mean(np.abs(r - np.median(r)))) / level_mad))
        else:
            ratios.append(iqr_ratio)
    return float(np.median(ratios)) if ratios else float("inf")
