"""Explanations name the feature that drove an anomaly."""

from __future__ import annotations

import numpy as np
import pytest

from slo_pipeline.core.calibration import fit_calibration
from slo_pipeline.core.features import FEATURE_NAMES
from slo_pipeline.core.model import DetectorModel
from slo_pipeline.core.robust_z import RobustZ, fit_robust_z
from slo_pipeline.settings import FeatureWindows


def _model(robust_z: RobustZ | None) -> DetectorModel:
    from sklearn.ensemble import IsolationForest

    return DetectorModel(
        forest=IsolationForest(n_estimators=10),
        windows=FeatureWindows(),
        calibration=fit_calibration(np.arange(100.0)),
        robust_z=robust_z,
    )


def test_explain_names_the_feature_that_is_far_out() -> None:
    rng = np.random.default_rng(0)
    training = rng.normal(0, 1, size=(2000, len(FEATURE_NAMES)))
    model = _model(fit_robust_z(training))
    rows = np.zeros((len(FEATURE_NAMES), len(FEATURE_NAMES)))
    for k in range(len(FEATURE_NAMES)):
        rows[k, k] = 8.0  # row k deviates in feature k only
    assert model.explain(rows) == list(FEATURE_NAMES)


def test_explain_measures_in_robust_units_not_raw_size() -> None:
    rng = np.random.default_rng(1)
    training = rng.normal(0, 1, size=(2000, len(FEATURE_NAMES)))
    training[:, 0] *= 100  # feature 0 is naturally wide
    model = _model(fit_robust_z(training))
    row = np.zeros((1, len(FEATURE_NAMES)))
    row[0, 0], row[0, 1] = 50.0, 5.0  # 0.5 sigma on feature 0, 5 sigma on feature 1
    assert model.explain(row) == [FEATURE_NAMES[1]]


def test_explain_unscorable_row_is_none_and_needs_robust_z() -> None:
    rng = np.random.default_rng(2)
    model = _model(fit_robust_z(rng.normal(size=(100, len(FEATURE_NAMES)))))
    row = np.full((1, len(FEATURE_NAMES)), np.nan)
    assert model.explain(row) == [None]
    with pytest.raises(ValueError, match="robust-z"):
        _model(None).explain(row)


def test_explain_latest_blames_a_level_feature_for_a_sustained_shift() -> None:
    from slo_pipeline.core.training import fit_detector_model
    from slo_pipeline.settings import DetectorConfig

    detector = DetectorConfig(
        name="svc", query="x", windows=FeatureWindows(short=3, medium=10, long=40), n_estimators=30
    )
    rng = np.random.default_rng(3)
    model, _ = fit_detector_model(100 + rng.normal(0, 1, size=(1200, 2)), detector)
    recent = 100 + rng.normal(0, 1, size=(model.scoring_rows, 2))
    recent[-8:, 1] += 40  # series 1 shifted 8 samples ago: no step, no extra volatility left
    names = model.explain_latest(recent)
    level_family = {"level_vs_long", "short_mean_vs_long", "medium_mean_vs_long", "medium_median_vs_long"}
    assert names[1] in level_family
    assert names[0] in FEATURE_NAMES
