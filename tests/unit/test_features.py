"""Features: causal, scale-free, and the exporter's short path equals the full computation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from slo_pipeline.core.features import (
    FEATURE_NAMES,
    SEASONAL_FEATURE,
    SHIFT_FEATURES,
    compute_features,
    feature_names,
    history_rows_needed,
    latest_features,
    trailing_features,
)
from slo_pipeline.core.window_stats import moving_median
from slo_pipeline.settings import FeatureWindows

WINDOWS = FeatureWindows(short=3, medium=8, long=30, evidence=3, shift=True)


def _series(rows: int = 200, n: int = 3, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return 50 + np.cumsum(rng.normal(0, 1, size=(rows, n)), axis=0)


def test_shape_and_names() -> None:
    features = compute_features(_series(), WINDOWS)
    assert features.shape == (200, 3, len(FEATURE_NAMES) + len(SHIFT_FEATURES))
    assert feature_names(WINDOWS) == (*FEATURE_NAMES, *SHIFT_FEATURES)
    without = WINDOWS.model_copy(update={"shift": False})
    assert feature_names(without) == FEATURE_NAMES
    np.testing.assert_array_equal(compute_features(_series(), without), features[..., : len(FEATURE_NAMES)])


def test_changing_future_rows_never_changes_past_features() -> None:
    values = _series()
    changed = values.copy()
    changed[120:] = changed[120:] * 5 + 1000  # an outage from row 120 on
    before, after = compute_features(values, WINDOWS), compute_features(changed, WINDOWS)
    np.testing.assert_array_equal(before[:120], after[:120])
    assert not np.allclose(before[120:], after[120:], equal_nan=True)


def test_features_do_not_depend_on_the_series_scale_or_offset() -> None:
    values = _series()
    np.testing.assert_allclose(
        compute_features(values, WINDOWS), compute_features(values * 1000 + 7, WINDOWS), rtol=1e-6, atol=1e-8
    )


def test_trailing_features_equal_the_full_computation() -> None:
    values = _series(rows=300)
    rows = 4
    tail = trailing_features(values[-history_rows_needed(WINDOWS, rows) :], WINDOWS, rows)
    np.testing.assert_allclose(tail, compute_features(values, WINDOWS)[-rows:], rtol=1e-9)
    np.testing.assert_allclose(latest_features(values, WINDOWS), compute_features(values, WINDOWS)[-1])


def test_short_history_leaves_features_undefined_instead_of_guessing() -> None:
    assert np.isnan(latest_features(_series(rows=5), WINDOWS)).all()


def test_long_gaps_are_not_bridged() -> None:
    values = _series(rows=100, n=1)
    values[60:70] = np.nan  # longer than `short`: no invented data
    row = compute_features(values, WINDOWS)[65, 0]
    # The sample itself is unknown, so the row is unscorable (models need every feature finite).
    assert np.isnan(row[FEATURE_NAMES.index("level_vs_long")])
    assert not np.isfinite(row).all()
    assert np.isfinite(compute_features(values, WINDOWS)[61, 0]).all()  # within `short`: bridged


def test_spike_moves_level_and_step_features() -> None:
    values = 100 + np.random.default_rng(1).normal(0, 1, size=(100, 1))
    values[80, 0] += 50
    features = compute_features(values, WINDOWS)[:, 0]
    level, step = FEATURE_NAMES.index("level_vs_long"), FEATURE_NAMES.index("step_change")
    assert features[80, level] > 2.5 and features[80, step] > 2.5
    assert abs(features[79, level]) < 2.0


def test_seasonal_feature_ignores_a_job_that_ran_at_the_same_time_a_season_earlier() -> None:
    windows = FeatureWindows(short=2, medium=5, long=20, seasonal=50)
    rng = np.random.default_rng(2)
    values = 10 + rng.normal(0, 0.1, size=(200, 1))
    values[[60, 110, 160], 0] += 20  # a periodic job every 50 samples
    values[185, 0] += 20  # an unexpected one
    features = compute_features(values, windows)[:, 0, feature_names(windows).index(SEASONAL_FEATURE)]
    assert abs(features[110]) < 0.5 and abs(features[160]) < 0.5
    assert features[185] > 2.5


def test_rejects_one_dimensional_input() -> None:
    with pytest.raises(ValueError, match=r"\[time, series\]"):
        compute_features(np.zeros(10), WINDOWS)


@pytest.mark.parametrize("seasonal", [0, 40])
def test_fast_trailing_path_matches_rolling_path_with_gaps_and_flat_series(seasonal: int) -> None:
    windows = FeatureWindows(short=3, medium=8, long=30, evidence=3, seasonal=seasonal, shift=True)
    values = _series(rows=250, n=6, seed=4)
    values[200:204, 1] = np.nan  # a gap the cleaner bridges
    values[150:245, 2] = np.nan  # a long outage: undefined, not invented
    values[:, 3] = 7.0  # perfectly flat
    values[-40:, 4] = np.nan  # stopped reporting
    values[np.random.default_rng(5).random(values.shape) < 0.05] = np.nan  # scattered misses
    for rows in (1, 3, 7):
        fast = trailing_features(values, windows, rows)
        slow = compute_features(values, windows)[-rows:]
        np.testing.assert_allclose(fast, slow, rtol=1e-7, atol=1e-9, equal_nan=True)


def test_trailing_features_of_an_empty_history_are_undefined() -> None:
    assert np.isnan(trailing_features(np.empty((0, 2)), WINDOWS, 3)).all()


@pytest.mark.parametrize("rows", [0, 5, 20, 250])
def test_moving_median_is_pandas_rolling_median_with_gaps(rows: int) -> None:
    values = _series(rows=250, n=5, seed=9)[:rows]
    values[np.random.default_rng(2).random(values.shape) < 0.1] = np.nan
    values[10:60, 1] = np.nan  # an outage longer than the window's minimum
    if rows:
        values[:, 2] = 3.0  # flat
    for window, min_periods in ((30, 15), (8, 4), (400, 2)):
        expected = pd.DataFrame(values).rolling(window, min_periods=min_periods).median().to_numpy()
        np.testing.assert_array_equal(moving_median(values, window, min_periods), expected)
