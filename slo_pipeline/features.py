"""Feature extraction shared by training, scoring and backtesting (one code path, no drift).

Input is a time-major matrix `values[T, N]` (T samples on a regular step grid, N series; NaN
marks a gap). Output is `features[T, N, F]`. Every feature at time t depends on rows <= t only
(causal), and every feature is expressed in *robust units of its own series* (deviation divided
by a rolling inter-quartile range), so one IsolationForest can serve series of any scale.

The rolling statistics use pandas' C implementations column-wise, which vectorises across
series; the exporter calls the same function on a short window and keeps the last row.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from slo_pipeline.settings import FeatureWindows

FEATURE_NAMES: tuple[str, ...] = (
    "level_vs_long",  # latest value against the long-window median
    "short_mean_vs_long",  # sustained shift over the short window
    "medium_mean_vs_long",  # slower drift over the medium window
    "step_change",  # jump from the previous sample
    "short_volatility",  # spread inside the short window, relative to the long one
)

# Features are compressed with a signed log so that a 1000-sigma outage and a 50-sigma one are
# both "far out" without stretching the forest's split range (IsolationForest picks split
# points uniformly between the min and max of a feature).
_MAX_ROBUST_UNITS = 1e6
# IQR of a normal distribution is 1.349 sigma.
_IQR_TO_SIGMA = 1.349


def clean(values: np.ndarray, max_gap: int) -> np.ndarray:
    """Replace +-Inf by NaN and bridge gaps of at most `max_gap` samples with the last value.

    Longer gaps stay NaN: features over them are NaN and those rows are neither trained on nor
    scored, which is more honest than inventing data through an outage of the scrape path.
    """
    frame = pd.DataFrame(np.asarray(values, dtype=np.float64))
    frame = frame.replace([np.inf, -np.inf], np.nan)
    return frame.ffill(limit=max_gap).to_numpy()


def compute_features(values: np.ndarray, windows: FeatureWindows) -> np.ndarray:
    """Return `features[T, N, len(FEATURE_NAMES)]` for `values[T, N]`; NaN where not defined."""
    if values.ndim != 2:
        raise ValueError(f"values must be 2-D [time, series], got shape {values.shape}")
    cleaned = clean(values, max_gap=windows.short)
    frame = pd.DataFrame(cleaned)
    long_roll = frame.rolling(windows.long, min_periods=windows.long // 2)
    median_long = long_roll.median().to_numpy()
    iqr_long = (long_roll.quantile(0.75) - long_roll.quantile(0.25)).to_numpy()
    short_roll = frame.rolling(windows.short, min_periods=windows.short)
    mean_short = short_roll.mean().to_numpy()
    std_short = short_roll.std().to_numpy()
    mean_medium = frame.rolling(windows.medium, min_periods=windows.medium // 2).mean().to_numpy()

    scale = _robust_scale(iqr_long, median_long)
    previous = np.vstack([np.full((1, cleaned.shape[1]), np.nan), cleaned[:-1]])
    raw = np.stack(
        [
            (cleaned - median_long) / scale,
            (mean_short - median_long) / scale,
            (mean_medium - median_long) / scale,
            (cleaned - previous) / scale,
            std_short / scale,
        ],
        axis=-1,
    )
    return _signed_log(raw)


def latest_features(values: np.ndarray, windows: FeatureWindows) -> np.ndarray:
    """Features of the last row only: `[N, F]`. Same code as training, last row kept."""
    return compute_features(values, windows)[-1]


def _robust_scale(iqr: np.ndarray, median: np.ndarray) -> np.ndarray:
    sigma = iqr / _IQR_TO_SIGMA
    # A perfectly flat series has IQR 0; fall back to a small fraction of its level so that a
    # real change still registers without dividing by zero.
    floor = np.maximum(np.abs(median) * 0.01, 1e-9)
    return np.where(np.isfinite(sigma), np.maximum(sigma, floor), np.nan)


def _signed_log(x: np.ndarray) -> np.ndarray:
    clipped = np.clip(x, -_MAX_ROBUST_UNITS, _MAX_ROBUST_UNITS)
    return np.sign(clipped) * np.log1p(np.abs(clipped))


def training_rows(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flatten `[T, N, F]` to the rows where every feature is finite.

    Returns `(rows[M, F], time_index[M])`; the time index lets callers split by time.
    """
    t, n, f = features.shape
    flat = features.reshape(t * n, f)
    finite = np.isfinite(flat).all(axis=1)
    time_index = np.repeat(np.arange(t), n)
    return flat[finite], time_index[finite]
