"""Operator feedback: false positives tighten that series' threshold and count as normal."""

from __future__ import annotations

import numpy as np
import pytest

from slo_pipeline.core import feedback
from slo_pipeline.core.training import fit_detector_model
from slo_pipeline.settings import DetectorConfig, FeatureWindows

DETECTOR = DetectorConfig(
    name="svc",
    query="x",
    step_seconds=60,
    windows=FeatureWindows(short=3, medium=10, long=40, evidence=3),
    n_estimators=50,
    min_training_samples=200,
    false_alarms_per_week=5.0,
)


def test_interval_mask_marks_incident_and_settle_time_per_series() -> None:
    times = np.arange(10) * 60.0
    mask = feedback.interval_mask(times, 2, {1: [(120.0, 180.0)]}, settle_seconds=60.0)
    assert mask[:, 0].sum() == 0
    assert mask[:, 1].tolist() == [False, False, True, True, True, False, False, False, False, False]
    with pytest.raises(ValueError, match="series index 3"):
        feedback.interval_mask(times, 2, {3: [(0.0, 1.0)]})


def test_oversampling_repeats_only_flagged_rows() -> None:
    rows = np.arange(6.0).reshape(3, 2)
    out = feedback.oversampled_rows(rows, np.array([False, True, False]))
    assert len(out) == 3 + feedback.FALSE_POSITIVE_OVERSAMPLING - 1
    assert (out[3:] == rows[1]).all()


def test_threshold_factors_silence_the_false_positive_and_are_bounded() -> None:
    p = np.ones((5, 3))
    p[2, 0] = 1e-4  # false positive below the threshold 1e-3
    p[2, 1] = 1e-40  # extreme: the factor is capped
    p[2, 2] = 1e-5  # not flagged: untouched
    flagged = np.zeros((5, 3), dtype=bool)
    flagged[2, :2] = True
    factors = feedback.threshold_factors(p, flagged, 1e-3, ["a", "b", "c"])
    assert set(factors) == {"a", "b"}
    assert factors["a"] == pytest.approx(feedback.THRESHOLD_MARGIN * 1e-3 / 1e-4)
    assert 1e-3 / factors["a"] < 1e-4  # the same evidence now stays below the threshold
    assert factors["b"] == feedback.MAX_THRESHOLD_FACTOR


def test_incident_windows_are_row_ranges() -> None:
    times = np.arange(10) * 60.0
    assert feedback.incident_windows(times, [(125.0, 300.0), (900.0, 950.0)]) == [(3, 5)]


def test_false_positive_feedback_stores_a_factor_for_that_series_only() -> None:
    rng = np.random.default_rng(0)
    values = 100 + rng.normal(0, 2, size=(1500, 2))
    values[1000:1010, 1] += 25  # an episode an operator called noise
    flagged = np.zeros(values.shape, dtype=bool)
    flagged[1000:1015, 1] = True
    model, _ = fit_detector_model(values, DETECTOR, false_positive=flagged, series_keys=["api", "db"])
    assert set(model.series_threshold_factors) == {"db"}
    assert model.series_threshold_factors["db"] > 1.0
    rebuilt = type(model).from_parts(model.forest, model.metadata())
    assert rebuilt.series_threshold_factors == pytest.approx(model.series_threshold_factors, rel=1e-5)
