"""Any sampling step works: coarse series are scored once there is enough history, and say why before."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from slo_pipeline.cli import main
from slo_pipeline.core.alert_sim import AlertRule
from slo_pipeline.core.scorability import TOO_LITTLE_HISTORY
from slo_pipeline.offline.backtest.replay import ReplayPlan, plan_for, replay
from slo_pipeline.offline.backtest.run import run_backtest
from slo_pipeline.settings import DetectorConfig

HOUR = 3600
RULE = AlertRule(for_steps=1, keep_firing_steps=2)


def _hourly_detector(**overrides: object) -> DetectorConfig:
    # The production windows (5/30/180 samples) and training window (7 days), at a 1-hour step.
    return DetectorConfig(
        name="hourly", query="x", step_seconds=HOUR, n_estimators=30, min_training_samples=100, **overrides
    )


def _daily_cycle(rows: int, seed: int = 0) -> np.ndarray:
    hours = np.arange(rows)
    rng = np.random.default_rng(seed)
    return (100 + 20 * np.sin(2 * np.pi * hours / 24) + rng.normal(0, 2, rows))[:, None]


def test_a_1_hour_series_is_scored_after_enough_history_and_says_why_before() -> None:
    detector = _hourly_detector()
    values = _daily_cycle(60 * 24)
    # Seven days hold 168 hourly samples, fewer than the long window's warm-up plus the minimum:
    # the training window stretches to the samples one training needs.
    assert detector.effective_training_window_seconds == detector.training_rows_needed * HOUR > 7 * 86400
    plan = plan_for(detector, len(values), initial_rows=100)
    outcome = run_backtest(values, detector, plan, RULE)
    first = outcome.first_model_row
    assert first is not None and 100 < first < 24 * 14
    assert np.isnan(outcome.tail_probability[:first]).all()
    assert np.isfinite(outcome.tail_probability[first:]).all()
    assert outcome.unscored_reason is not None
    assert set(outcome.unscored_reason[:first, 0]) == {TOO_LITTLE_HISTORY}
    assert set(outcome.unscored_reason[first:, 0]) == {""}
    assert "usable samples after feature warm-up, need 100" in outcome.no_model_reason


def test_with_a_training_window_of_7_days_of_samples_no_model_trains_and_the_reason_is_kept() -> None:
    detector = _hourly_detector()
    values = _daily_cycle(30 * 24)
    plan = ReplayPlan(initial_rows=100, retrain_every_rows=24, history_rows=7 * 24, retry_rows=1)
    result = replay(values, detector, plan, rule=RULE)
    assert result.first_model_row is None and result.models_trained == 0
    assert "need 100" in result.no_model_reason
    assert set(result.unscored_reasons(values, detector.windows)[:, 0]) == {TOO_LITTLE_HISTORY}


@pytest.mark.parametrize("step_seconds", [15, 300, 900, HOUR])
def test_changing_the_future_never_changes_past_scores_at_any_step(step_seconds: int) -> None:
    detector = DetectorConfig(
        name="steps", query="x", step_seconds=step_seconds, n_estimators=20, min_training_samples=100
    )
    rows = 900
    values = _daily_cycle(rows, seed=step_seconds)
    changed = values.copy()
    changed[700:] += 500
    plan = plan_for(detector, rows, initial_rows=300)
    # Retrains fall both before and after the change at every step tried.
    plan = ReplayPlan(
        initial_rows=plan.initial_rows,
        retrain_every_rows=min(plan.retrain_every_rows, 150),
        history_rows=plan.history_rows,
        retry_rows=plan.retry_rows,
    )
    before = replay(values, detector, plan, rule=RULE)
    after = replay(changed, detector, plan, rule=RULE)
    assert before.first_model_row is not None
    np.testing.assert_array_equal(before.tail_probability[:700], after.tail_probability[:700])
    np.testing.assert_array_equal(before.anomaly_score[:700], after.anomaly_score[:700])
    assert np.nanmax(after.anomaly_score[700:705]) > 1.0


def test_the_backtest_names_unscored_rows_and_files_per_series(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    times = pd.date_range("2024-01-01", periods=40 * 24, freq="1h")
    pd.DataFrame({"timestamp": times, "value": _daily_cycle(len(times))[:, 0]}).to_csv(
        tmp_path / "hourly.csv", index=False
    )
    pd.DataFrame({"timestamp": times[:100], "value": _daily_cycle(100)[:, 0]}).to_csv(
        tmp_path / "short.csv", index=False
    )
    out = tmp_path / "scored"
    assert (
        main(["backtest", "--input", str(tmp_path), "--output", str(out), "--n-estimators", "20", "--quiet"])
        == 0
    )
    notes = capsys.readouterr().err
    assert "short.csv: not scored at all (100 samples at a 3600s step): too_little_history" in notes
    assert "hourly.csv: scored from sample" in notes
    scored = pd.read_csv(out / "hourly.scored.csv", keep_default_na=False)
    first = int(np.flatnonzero(scored["scored"].to_numpy())[0])
    assert set(scored["reason"][:first]) == {TOO_LITTLE_HISTORY}
    assert scored["scored"][first:].all() and set(scored["reason"][first:]) == {""}
    short = pd.read_csv(out / "short.scored.csv", keep_default_na=False)
    assert not short["scored"].any() and set(short["reason"]) == {TOO_LITTLE_HISTORY}
