"""DetectorModel: MLflow round trip, causal scoring, thresholds from budgets."""

from __future__ import annotations

import json

import numpy as np
import pytest

from slo_pipeline.core.features import compute_features
from slo_pipeline.core.model import DetectorModel
from slo_pipeline.core.training import fit_detector_model
from slo_pipeline.settings import DetectorConfig, FeatureWindows

DETECTOR = DetectorConfig(
    name="latency",
    query="x",
    step_seconds=60,
    windows=FeatureWindows(short=3, medium=10, long=40, evidence=3),
    n_estimators=50,
    combine_robust_z=True,
)


@pytest.fixture(scope="module")
def model() -> DetectorModel:
    history = 100 + np.random.default_rng(0).normal(0, 3, size=(1500, 4))
    return fit_detector_model(history, DETECTOR, seed=0)[0]


def _fresh(rows: int = 200, seed: int = 1) -> np.ndarray:
    return 100 + np.random.default_rng(seed).normal(0, 3, size=(rows, 4))


def test_metadata_is_compact_json_and_rebuilds_the_same_model(model: DetectorModel) -> None:
    metadata = json.loads(json.dumps(model.metadata()))
    assert len(json.dumps(metadata)) < 6000
    rebuilt = DetectorModel.from_parts(model.forest, metadata)
    window = _fresh()
    np.testing.assert_allclose(rebuilt.score_latest(window), model.score_latest(window), rtol=1e-5)
    assert rebuilt.onset_factor == pytest.approx(model.onset_factor, rel=1e-5)


def test_from_parts_rejects_other_versions_and_estimators(model: DetectorModel) -> None:
    metadata = model.metadata()
    with pytest.raises(ValueError, match="incompatible version"):
        DetectorModel.from_parts(model.forest, {**metadata, "slo_pipeline_metadata_version": 1})
    with pytest.raises(ValueError, match="IsolationForest"):
        DetectorModel.from_parts(object(), metadata)
    with pytest.raises(ValueError, match="features"):
        DetectorModel.from_parts(model.forest, {**metadata, "feature_names": ["level_vs_long"]})


def test_score_latest_equals_the_last_row_of_the_full_computation(model: DetectorModel) -> None:
    values = _fresh(rows=300)
    full = model.feature_tail_probability(compute_features(values, model.windows))[-1]
    np.testing.assert_allclose(model.score_latest(values), full, rtol=1e-6)
    assert model.scoring_rows < 300


def test_changing_future_rows_never_changes_past_scores(model: DetectorModel) -> None:
    values = _fresh(rows=300)
    changed = values.copy()
    changed[200:] += 500
    before = model.feature_tail_probability(compute_features(values, model.windows))
    after = model.feature_tail_probability(compute_features(changed, model.windows))
    np.testing.assert_array_equal(before[:200], after[:200])
    assert np.nanmin(after[200:205]) < 1e-3  # and the outage itself is flagged


def test_unscorable_series_gives_nan(model: DetectorModel) -> None:
    values = _fresh()
    values[-20:, 2] = np.nan
    p = model.score_latest(values)
    assert np.isnan(p[2]) and np.isfinite(p[[0, 1, 3]]).all()


def test_alarm_threshold_follows_budget_and_onset_factor(model: DetectorModel) -> None:
    samples_per_week = 7 * 24 * 60
    expected = 2.0 / (samples_per_week * model.onset_factor)
    assert model.alarm_threshold(2.0, 60) == pytest.approx(expected)
    assert model.alarm_threshold(4.0, 60) == pytest.approx(2 * expected)
    assert 0.0 < model.onset_factor <= 1.0


def test_series_threshold_factor_tightens_only_that_series(model: DetectorModel) -> None:
    from dataclasses import replace

    tightened = replace(model, series_threshold_factors={"b": 10.0})
    p = np.array([1e-4, 1e-4])
    plain = tightened.anomaly_scores(p, 1e-3, ["a", "b"])
    assert plain[0] == pytest.approx(np.log(1e-4) / np.log(1e-3))
    assert plain[1] == pytest.approx(1.0)  # 1e-4 is exactly the tightened threshold 1e-3 / 10
