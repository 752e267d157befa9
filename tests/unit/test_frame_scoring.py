"""Row scoring for `mlflow models serve`: each row equals the exporter's score at that time."""

from __future__ import annotations

import numpy as np
import pytest

from slo_pipeline.core.frame_scoring import ServingParams, score_rows
from slo_pipeline.core.model import DetectorModel
from slo_pipeline.core.training import fit_detector_model
from slo_pipeline.settings import DetectorConfig, FeatureWindows

STEP = 60
DETECTOR = DetectorConfig(
    name="latency",
    query="x",
    step_seconds=STEP,
    windows=FeatureWindows(short=3, medium=8, long=20, evidence=3),
    n_estimators=30,
    min_training_samples=200,
)
PARAMS = ServingParams(step_seconds=STEP, false_alarms_per_week=DETECTOR.false_alarms_per_week)


@pytest.fixture(scope="module")
def model() -> DetectorModel:
    history = 100 + np.random.default_rng(0).normal(0, 3, size=(1200, 3))
    feedback = {"b": 4.0}  # a per-series feedback threshold, so the series key matters
    fitted = fit_detector_model(history, DETECTOR, seed=0)[0]
    return DetectorModel(**{**fitted.__dict__, "series_threshold_factors": feedback})


def exporter_view(model: DetectorModel, grid: np.ndarray, row: int, key: str) -> tuple[float, float]:
    """What the exporter publishes at grid row `row`: score_latest over the window ending there,
    samples before the series began being gaps (NaN) as query_range returns them."""
    window = np.full(model.scoring_rows, np.nan)
    history = grid[max(0, row + 1 - model.scoring_rows) : row + 1]
    window[len(window) - len(history) :] = history
    p = model.score_latest(window[:, None])
    threshold = model.alarm_threshold(PARAMS.false_alarms_per_week, PARAMS.step_seconds)
    return float(model.anomaly_scores(p, threshold, [key])[0]), float(p[0])


def test_every_row_equals_the_exporters_score_at_that_time(model: DetectorModel) -> None:
    rng = np.random.default_rng(7)
    rows = 150
    grids = {key: 100 + rng.normal(0, 3, size=rows) for key in ("a", "b")}
    grids["a"][90:95] = 160.0  # an incident
    grids["b"][40:43] = np.nan  # a short scrape gap (bridged) ...
    grids["b"][60:70] = np.nan  # ... and a long one (unscorable)
    series, stamps, values = [], [], []
    for key, grid in grids.items():
        for row in range(rows):
            if key == "b" and 60 <= row < 70:
                continue  # absent rows, not NaN values: the grid must show the gap itself
            series.append(key)
            stamps.append(1_700_000_000 + STEP * row + (7 if key == "b" else 0))
            values.append(grid[row])
    order = np.random.default_rng(1).permutation(len(series))  # input order must not matter
    result = score_rows(
        model, PARAMS, np.array(series)[order], np.array(stamps)[order], np.array(values)[order]
    )
    checked = 0
    for position, index in enumerate(order):
        key, row = series[index], (stamps[index] - 1_700_000_000) // STEP
        expected_score, expected_p = exporter_view(model, grids[key], row, key)
        got_score, got_p = result.anomaly_score[position], result.anomaly_tail_probability[position]
        np.testing.assert_allclose(
            [got_score, got_p], [expected_score, expected_p], rtol=1e-9, equal_nan=True
        )
        checked += np.isfinite(expected_p)
    assert checked > 200  # most rows were scored, not only compared as NaN
    a_rows = [pos for pos, i in enumerate(order) if series[i] == "a"]
    a_times = np.array([stamps[order[p]] for p in a_rows])
    earliest = np.array(a_rows)[np.argsort(a_times)][:5]
    assert np.isnan(result.anomaly_score[earliest]).all(), "too little history must be null"
    incident = [
        pos
        for pos, i in enumerate(order)
        if series[i] == "a" and 91 <= (stamps[i] - 1_700_000_000) // STEP <= 94
    ]
    assert (result.anomaly_score[incident] >= 1).any()


def test_hostile_requests_get_clear_errors(model: DetectorModel) -> None:
    with pytest.raises(ValueError, match="spans"):
        score_rows(model, PARAMS, np.array(["a", "a"]), np.array([0.0, 1e12]), np.array([1.0, 2.0]))
    with pytest.raises(ValueError, match="within one step"):
        score_rows(model, PARAMS, np.array(["a", "a"]), np.array([0.0, 10.0]), np.array([1.0, 2.0]))
    with pytest.raises(ValueError, match="finite"):
        score_rows(model, PARAMS, np.array(["a"]), np.array([np.nan]), np.array([1.0]))
