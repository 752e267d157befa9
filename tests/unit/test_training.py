"""fit_detector_model: refuses too little data, honours exclusions, reports what it did."""

from __future__ import annotations

import numpy as np
import pytest

from slo_pipeline.core.features import compute_features
from slo_pipeline.core.training import InsufficientDataError, fit_detector_model
from slo_pipeline.settings import DetectorConfig, FeatureWindows

DETECTOR = DetectorConfig(
    name="svc",
    query="x",
    step_seconds=60,
    windows=FeatureWindows(short=3, medium=10, long=40, evidence=3),
    n_estimators=50,
    min_training_samples=200,
)


def _noise(rows: int, n: int = 2, seed: int = 0) -> np.ndarray:
    return 100 + np.random.default_rng(seed).normal(0, 2, size=(rows, n))


def test_too_short_history_raises_with_context() -> None:
    with pytest.raises(InsufficientDataError, match="usable samples after feature warm-up"):
        fit_detector_model(_noise(60, n=1), DETECTOR)


def test_report_metrics_are_floats_and_consistent() -> None:
    model, report = fit_detector_model(_noise(1500), DETECTOR)
    metrics = report.as_metrics()
    assert all(isinstance(v, float) for v in metrics.values())
    assert metrics["n_series"] == 2.0 and metrics["n_timestamps"] == 1500.0
    assert report.expected_alarm_rate == pytest.approx(
        model.alarm_threshold(DETECTOR.false_alarms_per_week, DETECTOR.step_seconds)
    )


def test_same_seed_same_model() -> None:
    values = _noise(800)
    a, _ = fit_detector_model(values, DETECTOR, seed=3)
    b, _ = fit_detector_model(values, DETECTOR, seed=3)
    np.testing.assert_array_equal(a.score_latest(values), b.score_latest(values))


def test_excluding_an_incident_keeps_it_anomalous_for_the_next_model() -> None:
    """A recurring outage learnt as normal stops alarming; excluded from training, it still does."""
    values = _noise(2000, n=1)
    values[600:700] += 40  # a confirmed incident inside the training history
    exclude = np.zeros(values.shape, dtype=bool)
    exclude[600:760] = True  # incident + the time its trailing windows still see it
    learnt, _ = fit_detector_model(values, DETECTOR)
    clean, _ = fit_detector_model(values, DETECTOR, exclude=exclude)
    repeat = _noise(300, n=1, seed=5)
    repeat[200:] += 40
    features = compute_features(repeat, DETECTOR.windows)[200:215]
    p_learnt = learnt.feature_tail_probability(features)
    p_clean = clean.feature_tail_probability(features)
    assert np.nanmedian(p_clean) < np.nanmedian(p_learnt) / 10


def test_masks_must_match_the_values() -> None:
    with pytest.raises(ValueError, match="exclude mask"):
        fit_detector_model(_noise(500), DETECTOR, exclude=np.zeros((10, 2), dtype=bool))
