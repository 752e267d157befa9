"""Level shifts and distribution changes: the shift features respond, and the detector alarms
on each kind of change soon after it starts while clean series stay within the budget."""

from __future__ import annotations

import numpy as np

from slo_pipeline.core.alert_sim import AlertRule, simulate_alerts
from slo_pipeline.core.features import SHIFT_FEATURES, compute_features, feature_names
from slo_pipeline.core.model import DetectorModel
from slo_pipeline.core.training import fit_detector_model
from slo_pipeline.offline.backtest.replay import plan_for, replay
from slo_pipeline.settings import DetectorConfig, FeatureWindows

STEP = 1800  # 48 samples a day keep the replays short
DAY = 48
WEEK = 7 * DAY
RULE = AlertRule(for_steps=1, keep_firing_steps=5)
WINDOWS = FeatureWindows(short=3, medium=12, long=48, shift=True)
ONSET = 28 * DAY + 20  # every change starts here, in week 5
MAX_DELAY = DAY // 2  # an alarm within 12 hours of the change counts as detected


def _detector(seasonality: str = "off") -> DetectorConfig:
    return DetectorConfig(
        name="shift",
        query="x",
        step_seconds=STEP,
        windows=WINDOWS,
        training_window_seconds=14 * 86400,
        min_training_samples=200,
        n_estimators=50,
        false_alarms_per_week=1.0,
        seasonality=seasonality,  # type: ignore[arg-type]
    )


def _feature(values: np.ndarray, name: str) -> np.ndarray:
    return compute_features(values, WINDOWS)[:, :, feature_names(WINDOWS).index(name)]


def _noise(rng: np.random.Generator, rows: int) -> np.ndarray:
    return 50 + rng.normal(0, 5, rows)


def _spiky(rng: np.random.Generator, rows: int, density: float) -> np.ndarray:
    values = 20 + rng.normal(0, 1, rows)
    values[rng.random(rows) < density] += 30
    return values


def _daily(rng: np.random.Generator, rows: int) -> np.ndarray:
    """A square daily pattern: a busy plateau that decays, then a quiet night."""
    phase = (np.arange(rows) % DAY) / DAY
    busy = (phase >= 0.35) & (phase < 0.75)
    return np.where(busy, 80 - 40 * (phase - 0.35) / 0.4, 20.0) + rng.normal(0, 2, rows)


def _alarms(values: np.ndarray, detector: DetectorConfig) -> np.ndarray:
    result = replay(values, detector, plan_for(detector, len(values), initial_rows=WEEK), rule=RULE)
    _, onsets = simulate_alerts(result.anomaly_score, RULE)
    return onsets


def test_the_spread_ratio_falls_on_a_flat_line_and_rises_with_noise() -> None:
    rng = np.random.default_rng(0)
    values = np.stack([_noise(rng, 600), _noise(rng, 600)], axis=1)
    values[400:460, 0] = 50.0  # stops varying, inside the normal range
    values[400:460, 1] = 50 + rng.normal(0, 20, 60)  # four times the noise
    spread = _feature(values, "medium_spread_vs_long")
    normal = spread[100:400]
    assert np.abs(np.median(normal)) < 0.5  # medium and long spread agree on stationary noise
    assert spread[420:460, 0].max() < np.log(0.02)  # near the floor, log 0.01
    # Up while the long window still holds the old noise (it absorbs the new within a window).
    assert spread[405:415, 1].max() > np.percentile(normal, 99) + 0.5


def test_the_spike_density_sees_more_spikes_not_one() -> None:
    rng = np.random.default_rng(1)
    values = _spiky(rng, 600, 0.0)[:, None]
    values[300] += 30  # one spike
    values[450:480:3] += 30  # every third sample
    density = _feature(values, "medium_spike_density")[:, 0]
    assert density[300:312].max() <= 1 / WINDOWS.medium + 1e-12
    assert density[475:480].min() >= 0.3
    # Gaussian noise alone crosses 3 sigma about once in 370 samples: at most one at a time.
    assert np.nanmax(density[100:299]) <= 1 / WINDOWS.medium + 1e-12


def test_models_trained_without_the_shift_features_keep_scoring_with_theirs() -> None:
    values = _noise(np.random.default_rng(2), 3 * WEEK)[:, None]
    old_windows = WINDOWS.model_copy(update={"shift": False})
    model, _ = fit_detector_model(values, _detector().model_copy(update={"windows": old_windows}))
    metadata = model.metadata()
    metadata["windows"].pop("shift")  # as written before the field existed
    loaded = DetectorModel.from_parts(model.forest, metadata)
    assert not loaded.windows.shift
    assert not set(SHIFT_FEATURES) & set(loaded.feature_names)
    # Equal up to the metadata's 7 significant digits.
    np.testing.assert_allclose(loaded.score_latest(values), model.score_latest(values), rtol=1e-5)


def test_each_kind_of_change_alarms_soon_and_clean_series_stay_within_the_budget() -> None:
    rng = np.random.default_rng(3)
    rows = 35 * DAY
    window = slice(ONSET, ONSET + MAX_DELAY)
    clean_weeks = (rows - 2 * WEEK) / WEEK  # after the first model
    # Two detectors, as an operator would configure them: noisy gauges, and a spiky series.
    noisy = np.stack([_noise(rng, rows) for _ in range(5)], axis=1)
    noisy[ONSET : ONSET + DAY, 0] = 50.0  # a flat line inside the normal range
    noisy[ONSET : ONSET + DAY, 1] = 50 + rng.normal(0, 1, DAY)  # five times quieter
    noisy[ONSET : ONSET + DAY, 2] = 50 + rng.normal(0, 15, DAY)  # three times noisier
    noisy[ONSET:, 3] -= 15  # a sustained jump down of three sigma
    spiky = np.stack([_spiky(rng, rows, 1 / 300) for _ in range(2)], axis=1)
    spiky[ONSET : ONSET + DAY, 0] = _spiky(rng, DAY, 0.2)  # spike density 1/300 -> 1/5
    for values, kinds in (
        (noisy, ["flat line", "quieter", "noisier", "level shift"]),
        (spiky, ["spike density"]),
    ):
        onsets = _alarms(values, _detector())
        for k, kind in enumerate(kinds):
            assert onsets[window, k].any(), f"{kind}: no alarm within {MAX_DELAY} samples"
        rate = onsets[2 * WEEK :, -1].sum() / clean_weeks
        assert rate <= 1.5, f"clean series next to {kinds}: {rate:.2f} alarms per clean week"


def test_daily_patterns_that_jump_down_or_skip_their_jump_alarm_and_a_clean_one_stays_quiet() -> None:
    rng = np.random.default_rng(4)
    rows = 35 * DAY
    values = np.stack([_daily(rng, rows) for _ in range(3)], axis=1)
    day = slice(28 * DAY, 29 * DAY)
    busy = ((np.arange(DAY) / DAY >= 0.35) & (np.arange(DAY) / DAY < 0.75)).nonzero()[0] + day.start
    values[busy, 0] -= 30  # the busy plateau jumps down
    values[busy, 1] = 20 + rng.normal(0, 2, len(busy))  # the daily jump does not come
    onsets = _alarms(values, _detector("auto"))
    window = slice(busy[0], busy[0] + MAX_DELAY)
    assert onsets[window, 0].any() and onsets[window, 1].any()
    clean_weeks = (rows - 2 * WEEK) / WEEK
    assert onsets[2 * WEEK :, 2].sum() / clean_weeks <= 1.5


def test_the_spike_density_explains_but_stays_out_of_the_robust_z_statistic() -> None:
    values = _spiky(np.random.default_rng(5), 3 * WEEK, 1 / 300)[:, None]
    model, _ = fit_detector_model(values, _detector())
    robust = model.robust_z
    assert robust is not None and robust.in_statistic is not None
    density = model.feature_names.index("medium_spike_density")
    assert not robust.in_statistic[density] and robust.in_statistic.sum() == len(model.feature_names) - 1
    row = np.array(robust.center, copy=True)[None, :]
    row[0, density] = 1.0  # every sample a spike: far out in z, but not in the statistic
    assert robust.z(row)[0, density] > 10
    assert robust.statistic(row)[0] == 0
    loaded = DetectorModel.from_parts(model.forest, model.metadata()).robust_z
    assert loaded is not None and loaded.in_statistic is not None
    np.testing.assert_array_equal(loaded.in_statistic, robust.in_statistic)
