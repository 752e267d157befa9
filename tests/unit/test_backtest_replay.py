"""Walk-forward replay: each row is scored by a model trained on earlier rows only."""

from __future__ import annotations

import numpy as np
import pytest

from slo_pipeline.core.alert_sim import AlertRule
from slo_pipeline.offline.backtest.replay import ReplayPlan, replay
from slo_pipeline.settings import DetectorConfig, FeatureWindows, SignalConfig

DETECTOR = DetectorConfig(
    name="bt",
    query="x",
    step_seconds=300,
    windows=FeatureWindows(short=3, medium=10, long=40, evidence=3),
    n_estimators=30,
    min_training_samples=60,
)
PLAN = ReplayPlan(initial_rows=150, retrain_every_rows=100, history_rows=400, retry_rows=20)
RULE = AlertRule(for_steps=1, keep_firing_steps=5)


def _values(rows: int = 600, seed: int = 0) -> np.ndarray:
    return 10 + np.random.default_rng(seed).normal(0, 1, size=(rows, 1))


def test_changing_future_rows_never_changes_past_scores_even_across_retrains() -> None:
    values = _values()
    changed = values.copy()
    changed[420:] += 30  # the future: an outage, which later retrains will also see
    before = replay(values, DETECTOR, PLAN, rule=RULE)
    after = replay(changed, DETECTOR, PLAN, rule=RULE)
    np.testing.assert_array_equal(before.tail_probability[:420], after.tail_probability[:420])
    np.testing.assert_array_equal(before.anomaly_score[:420], after.anomaly_score[:420])
    assert np.nanmax(after.anomaly_score[420:425]) > 1.0


def test_rows_before_the_first_model_are_unscored_and_models_retrain_on_schedule() -> None:
    result = replay(_values(), DETECTOR, PLAN, rule=RULE)
    assert np.isnan(result.tail_probability[:150]).all()
    assert np.isfinite(result.tail_probability[150:]).all()
    # Retrains at rows 150, 250, 350, 450, 550.
    assert result.models_trained == 5


def test_too_little_initial_data_retries_until_a_model_can_be_trained() -> None:
    plan = ReplayPlan(initial_rows=50, retrain_every_rows=100, history_rows=400, retry_rows=20)
    result = replay(_values(), DETECTOR, plan, rule=RULE)
    first_scored = int(np.flatnonzero(np.isfinite(result.tail_probability[:, 0]))[0])
    # 40-sample long window -> features from row 19; 60 usable rows exist from row 79 on,
    # and retries come every 20 rows after the first attempt at row 50.
    assert first_scored == 90


def test_progress_reports_reach_the_end() -> None:
    seen: list[tuple[int, int]] = []
    replay(_values(), DETECTOR, PLAN, rule=RULE, progress=lambda done, total: seen.append((done, total)))
    assert seen[-1] == (600, 600)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_plan_rejects_empty_intervals() -> None:
    with pytest.raises(ValueError, match=">= 1 row"):
        ReplayPlan(initial_rows=0, retrain_every_rows=1, history_rows=1, retry_rows=1)


def test_anomalous_rows_name_their_driver_and_a_multivariate_replay_blames_the_signal_that_moved() -> None:
    rng = np.random.default_rng(4)
    values = 10 + rng.normal(0, 1, size=(600, 1, 2))
    values[420:426, 0, 1] += 25  # only the second signal jumps
    detector = DETECTOR.model_copy(update={"query": None, "signals": [_signal("cpu"), _signal("errors")]})
    result = replay(values, detector, PLAN, rule=RULE)
    anomalous = np.nan_to_num(result.anomaly_score[:, 0]) >= 1
    assert result.driver is not None
    assert anomalous[420:426].any()
    drivers = set(result.driver[420:426, 0][anomalous[420:426]])
    assert drivers and all(name.startswith("errors:") for name in drivers), drivers
    # Calm rows carry no driver.
    assert (result.driver[~anomalous, 0] == "").all()


def _signal(name: str) -> SignalConfig:
    return SignalConfig(name=name, query=name)
