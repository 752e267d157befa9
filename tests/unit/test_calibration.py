"""Calibration: tail probabilities mean what they say, and budgets mean alarms per week."""

from __future__ import annotations

import numpy as np
import pytest

from slo_pipeline.core.alert_sim import AlertRule, simulate_alerts
from slo_pipeline.core.calibration import TailCalibration, anomaly_score, fit_calibration, onset_factor
from slo_pipeline.core.training import fit_detector_model
from slo_pipeline.settings import DetectorConfig, FeatureWindows


def test_tail_probability_is_uniform_on_fresh_draws_from_the_reference() -> None:
    rng = np.random.default_rng(0)
    calibration = fit_calibration(rng.gamma(2.0, size=20_000))
    p = calibration.tail_probability(rng.gamma(2.0, size=20_000))
    for level in (0.5, 0.1, 0.01):
        assert np.mean(p < level) == pytest.approx(level, rel=0.25)


def test_tail_extrapolates_beyond_the_largest_reference_score() -> None:
    rng = np.random.default_rng(1)
    scores = rng.exponential(size=2000)
    calibration = fit_calibration(scores)
    p = calibration.tail_probability(np.array([scores.max(), scores.max() + 2, scores.max() + 10]))
    assert p[0] > p[1] > p[2] > 0
    # Exponential reference: each extra unit divides the survival by ~e.
    assert p[1] / p[2] == pytest.approx(np.exp(8), rel=0.5)


def test_round_trip_keeps_probabilities_and_is_compact() -> None:
    calibration = fit_calibration(np.random.default_rng(2).normal(size=5000))
    restored = TailCalibration.from_dict(calibration.to_dict())
    probe = np.linspace(-4, 6, 50)
    expected = calibration.tail_probability(probe)
    np.testing.assert_allclose(restored.tail_probability(probe), expected, rtol=1e-5)
    assert len(str(calibration.to_dict())) < 2500


def test_anomaly_score_is_one_at_the_threshold() -> None:
    assert anomaly_score(np.array([1e-3]), 1e-3)[0] == pytest.approx(1.0)
    assert anomaly_score(np.array([1.0]), 1e-3)[0] == pytest.approx(0.0)
    assert anomaly_score(np.array([1e-6]), 1e-3)[0] == pytest.approx(2.0)


def test_onset_factor_is_one_for_isolated_exceedances_and_small_for_clusters() -> None:
    rule = AlertRule(for_steps=0, keep_firing_steps=0)
    isolated = np.ones((1000, 1))
    isolated[::50] = 0.001
    clustered = np.ones((1000, 1))
    for start in range(0, 1000, 100):
        clustered[start : start + 10] = 0.001
    assert onset_factor(isolated, rule, 0.01) == pytest.approx(1.0)
    # 10 onsets over 100 exceedances, estimated as (10 + 1) / 100.
    assert onset_factor(clustered, rule, 0.01) == pytest.approx(0.11)


def test_one_long_cluster_does_not_collapse_the_onset_factor() -> None:
    """p* is proportional to 1 / factor. One training week puts ~3 onsets among the reference's
    ~30 exceedances; when one long run holds them all, onsets / exceedances = 1/30 made p* four
    times looser than the typical estimate. (onsets + 1) / exceedances halves that swing: for
    Poisson onset counts X of mean m, E[m / (X + 1)] = 1 - exp(-m) <= 1, where E[m / max(X, 1)]
    is about 1.4 at m = 3."""
    rule = AlertRule(for_steps=0, keep_firing_steps=0)
    one_run = np.ones((1000, 1))
    one_run[100:130] = 0.001
    assert onset_factor(one_run, rule, 0.01) == pytest.approx(2 / 30)


def test_alarm_rate_on_clean_data_matches_the_budget() -> None:
    """Train on clean noise, then count alert onsets on fresh clean noise: ~budget per week."""
    step = 300
    detector = DetectorConfig(
        name="clean",
        query="x",
        step_seconds=step,
        false_alarms_per_week=3.0,
        windows=FeatureWindows(short=3, medium=12, long=48, evidence=3),
        n_estimators=100,
    )
    rule = AlertRule(for_steps=2, keep_firing_steps=15)
    week = 7 * 24 * 3600 // step
    rng = np.random.default_rng(3)
    n_series = 30
    history = 100 + rng.normal(0, 5, size=(2 * week, n_series))
    model, report = fit_detector_model(history, detector, seed=0, rule=rule)
    fresh = 100 + rng.normal(0, 5, size=(week + 100, n_series))
    from slo_pipeline.core.features import compute_features

    p = model.feature_tail_probability(compute_features(fresh, detector.windows))[100:]
    threshold = model.alarm_threshold(detector.false_alarms_per_week, step)
    _, onsets = simulate_alerts(anomaly_score(np.nan_to_num(p, nan=1.0), threshold), rule)
    alarms_per_week = onsets.sum() / n_series
    # 90 alarms expected in total; allow the estimation error of a tail fitted on two weeks.
    assert 0.4 * detector.false_alarms_per_week < alarms_per_week < 2.5 * detector.false_alarms_per_week
    assert report.training_alarms_per_week == pytest.approx(detector.false_alarms_per_week, rel=0.6)
