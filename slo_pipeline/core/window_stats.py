"""Trailing-window statistics behind the features, computed two ways with identical results.

- `rolling_stats`: every row of a history (training, backtests): pandas' rolling C loops,
  O(T) per series, and bottleneck's moving median (a double heap over the whole [T, N] array in
  C, ~5x faster than pandas' skip list: 0.13-0.16 s instead of 0.63-0.82 s for 1,000 series x
  2,016 rows).
- `trailing_stats`: only the last few rows (the exporter, every cycle, 10k series): numpy over the
  window slices, vectorised across series. Rolling over all fetched rows would cost ~4.5 s at 10k
  series because pandas loops over columns; slicing costs one partition per statistic.

Both follow pandas' semantics (NaN skipped, `min_periods` counted on finite values, std with
ddof=1, linear quantiles), and a unit test checks they agree, so training and serving see the
same features.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import bottleneck
import numpy as np
import pandas as pd

from slo_pipeline.settings import FeatureWindows


@dataclass(frozen=True)
class WindowStats:
    """Per row and series `[R, N]`: the sample, its predecessor and the window statistics."""

    value: np.ndarray
    previous: np.ndarray
    median_long: np.ndarray
    iqr_long: np.ndarray
    mean_abs_long: np.ndarray  # typical magnitude, for the scale floor of mostly-zero series
    std_long: np.ndarray  # plain spread, for the scale floor when the IQR collapses to 0
    mean_short: np.ndarray
    std_short: np.ndarray
    mean_medium: np.ndarray
    median_medium: np.ndarray
    season_lower: np.ndarray | None  # range around the same time one season earlier
    season_upper: np.ndarray | None


def long_min_periods(windows: FeatureWindows) -> int:
    # Half a window is enough for a usable median and IQR; waiting for a full one would leave
    # a freshly deployed detector (and NAB's short probationary period) without any features.
    return max(2, windows.long // 2)


def medium_min_periods(windows: FeatureWindows) -> int:
    return max(2, windows.medium // 2)


def rolling_stats(cleaned: np.ndarray, windows: FeatureWindows) -> WindowStats:
    frame = pd.DataFrame(cleaned)
    long_roll = frame.rolling(windows.long, min_periods=long_min_periods(windows))
    short_roll = frame.rolling(windows.short, min_periods=windows.short)
    medium_roll = frame.rolling(windows.medium, min_periods=medium_min_periods(windows))
    lower = upper = None
    if windows.seasonal:
        span_roll = frame.rolling(2 * windows.short + 1, min_periods=1)
        delay = windows.seasonal - windows.short
        lower = _lag(span_roll.min().to_numpy(), delay)
        upper = _lag(span_roll.max().to_numpy(), delay)
    return WindowStats(
        value=cleaned,
        previous=_lag(cleaned, 1),
        median_long=moving_median(cleaned, windows.long, long_min_periods(windows)),
        iqr_long=(long_roll.quantile(0.75) - long_roll.quantile(0.25)).to_numpy(),
        mean_abs_long=frame.abs()
        .rolling(windows.long, min_periods=long_min_periods(windows))
        .mean()
        .to_numpy(),
        std_long=long_roll.std().to_numpy(),
        mean_short=short_roll.mean().to_numpy(),
        std_short=short_roll.std().to_numpy(),
        mean_medium=medium_roll.mean().to_numpy(),
        median_medium=moving_median(cleaned, windows.medium, medium_min_periods(windows)),
        season_lower=lower,
        season_upper=upper,
    )


def trailing_stats(cleaned: np.ndarray, windows: FeatureWindows, rows: int) -> WindowStats:
    """The same statistics for the last `rows` rows of `cleaned[T, N]` only."""
    n_rows, n_series = cleaned.shape
    # Series-major copy: every window below is then a contiguous run per series, and sorting
    # rows of it (for quantiles) is several times faster than partitioning along axis 0.
    by_series = np.ascontiguousarray(cleaned.T)
    parts: dict[str, list[np.ndarray]] = {name: [] for name in WindowStats.__dataclass_fields__}
    for i in range(max(0, n_rows - rows), n_rows):
        long_block = by_series[:, max(0, i - windows.long + 1) : i + 1]
        q1, median, q3 = _quantiles(long_block, (0.25, 0.5, 0.75), long_min_periods(windows))
        short_block = by_series[:, max(0, i - windows.short + 1) : i + 1]
        medium_block = by_series[:, max(0, i - windows.medium + 1) : i + 1]
        (medium_median,) = _quantiles(medium_block, (0.5,), medium_min_periods(windows))
        parts["value"].append(by_series[:, i])
        parts["previous"].append(by_series[:, i - 1] if i > 0 else np.full(n_series, np.nan))
        parts["median_long"].append(median)
        parts["iqr_long"].append(q3 - q1)
        parts["mean_abs_long"].append(_mean(np.abs(long_block), long_min_periods(windows)))
        parts["std_long"].append(_std(long_block, long_min_periods(windows)))
        parts["mean_short"].append(_mean(short_block, windows.short))
        parts["std_short"].append(_std(short_block, windows.short))
        parts["mean_medium"].append(_mean(medium_block, medium_min_periods(windows)))
        parts["median_medium"].append(medium_median)
        if windows.seasonal:
            end = i - (windows.seasonal - windows.short)
            span = by_series[:, max(0, end - 2 * windows.short) : end + 1] if end >= 0 else by_series[:, :0]
            parts["season_lower"].append(_extreme(span, np.nanmin, n_series))
            parts["season_upper"].append(_extreme(span, np.nanmax, n_series))
    stacked = {name: np.stack(values) for name, values in parts.items() if values}
    return WindowStats(**{name: stacked.get(name) for name in WindowStats.__dataclass_fields__})  # type: ignore[arg-type]


def long_mean_abs(cleaned: np.ndarray, windows: FeatureWindows, rows: int) -> np.ndarray:
    """Mean |x| over the long window for the last `rows` rows of `cleaned[T, N]` (as rolling_stats'
    and trailing_stats' `mean_abs_long`)."""
    n_rows = cleaned.shape[0]
    if rows >= n_rows:
        frame = pd.DataFrame(np.abs(cleaned))
        full: np.ndarray = (
            frame.rolling(windows.long, min_periods=long_min_periods(windows)).mean().to_numpy()
        )
        return full
    by_series = np.abs(np.ascontiguousarray(cleaned.T))
    return np.stack(
        [
            _mean(by_series[:, max(0, i - windows.long + 1) : i + 1], long_min_periods(windows))
            for i in range(n_rows - rows, n_rows)
        ]
    )


def moving_median(cleaned: np.ndarray, window: int, min_periods: int) -> np.ndarray:
    """Trailing median down each column, NaN skipped, NaN until `min_periods` finite values: the
    result of pandas' `rolling(window, min_periods).median()` for data without +-Inf, which
    `clean` has turned into gaps (bottleneck ranks an Inf as a value where pandas skips it)."""
    cleaned = np.asarray(cleaned, dtype=np.float64)
    rows = cleaned.shape[0]
    if min_periods > rows:
        return np.full_like(cleaned, np.nan)
    # bottleneck wants window <= rows; a trailing window longer than the data is the whole prefix.
    medians: np.ndarray = bottleneck.move_median(cleaned, min(window, rows), min_count=min_periods, axis=0)
    return medians


def _lag(x: np.ndarray, rows: int) -> np.ndarray:
    """`x` delayed by `rows` (NaN where there is no earlier row)."""
    lagged = np.full_like(x, np.nan)
    if rows < len(x):
        lagged[rows:] = x[: len(x) - rows]
    return lagged


def _quantiles(block: np.ndarray, levels: tuple[float, ...], min_periods: int) -> list[np.ndarray]:
    """Linear-interpolated quantiles of each row of `block[N, W]`, skipping NaN (as pandas)."""
    ordered = np.sort(block, axis=1)  # NaN sorts last
    count = np.isfinite(block).sum(axis=1)
    result = []
    for level in levels:
        position = level * np.maximum(count - 1, 0)
        below = np.floor(position).astype(np.int64)
        above = np.minimum(below + 1, np.maximum(count - 1, 0))
        low = np.take_along_axis(ordered, below[:, None], axis=1)[:, 0] if block.shape[1] else position
        high = np.take_along_axis(ordered, above[:, None], axis=1)[:, 0] if block.shape[1] else position
        value = low + (high - low) * (position - below)
        result.append(np.where(count >= min_periods, value, np.nan))
    return result


def _mean(block: np.ndarray, min_periods: int) -> np.ndarray:
    finite = np.isfinite(block)
    count = finite.sum(axis=1)
    total = np.where(finite, block, 0.0).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count >= min_periods, total / count, np.nan)


def _std(block: np.ndarray, min_periods: int) -> np.ndarray:
    finite = np.isfinite(block)
    count = finite.sum(axis=1)
    mean = _mean(block, 1)
    squares = np.where(finite, (block - mean[:, None]) ** 2, 0.0).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((count >= min_periods) & (count > 1), np.sqrt(squares / (count - 1)), np.nan)


def _extreme(block: np.ndarray, reducer: Callable[..., np.ndarray], n_series: int) -> np.ndarray:
    if block.shape[1] == 0:
        return np.full(n_series, np.nan)
    with warnings.catch_warnings():
        # All-NaN spans are expected (gaps); their NaN result is the right answer.
        warnings.simplefilter("ignore", RuntimeWarning)
        return reducer(block, axis=1)
