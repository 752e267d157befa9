"""The threshold preview replays every budget in one `simulate_alerts` call: the rows must be the
ones a separate replay per budget gives (missing scores, a burst on one series, no series)."""

from __future__ import annotations

import numpy as np
import pytest

from slo_pipeline.core.alert_sim import AlertRule, simulate_alerts
from slo_pipeline.core.calibration import anomaly_score
from slo_pipeline.settings import DetectorConfig
from streamlit_app import threshold

DETECTOR = DetectorConfig(name="checkout_latency", query="up")
RULE = AlertRule(for_steps=2, keep_firing_steps=3)


def _one_by_one(matrix: np.ndarray, budget: float) -> tuple[int, int, float]:
    scored = np.isfinite(matrix)
    limit = threshold.threshold_for(DETECTOR, budget)
    scores = np.where(scored, anomaly_score(np.where(scored, matrix, 1.0), limit), np.nan)
    firing, onset = simulate_alerts(scores, RULE)
    return int(onset.sum()), int(onset.any(axis=0).sum()), float(firing.mean())


@pytest.mark.parametrize("n_series", [0, 1, 4])
def test_one_replay_for_all_budgets_matches_a_replay_per_budget(n_series: int) -> None:
    rng = np.random.default_rng(7)
    matrix = rng.uniform(size=(600, n_series)) ** 4
    if n_series:
        matrix[200:230, 0] = 1e-12  # a burst every budget catches
        matrix[rng.uniform(size=matrix.shape) < 0.02] = np.nan
    budgets = threshold.budgets_to_show(1.0, 3.0)

    rows = threshold.preview(matrix, DETECTOR, budgets, RULE)

    assert [r.false_alarms_per_week for r in rows] == budgets
    for row, budget in zip(rows, budgets, strict=True):
        alarms, series, share = _one_by_one(matrix, budget) if n_series else (0, 0, 0.0)
        assert (row.alarms, row.series_with_alarms, row.firing_share) == (alarms, series, share)
    if n_series:
        assert rows[0].alarms >= 1 and rows[-1].alarms >= rows[0].alarms
