"""Training, validation and the UI preview simulate the deployed anomaly rule's timing."""

from __future__ import annotations

from slo_pipeline.core.rule_timing import RuleTiming, anomaly_alert_rule
from slo_pipeline.settings import Settings

SHIPPED = RuleTiming(for_seconds=120.0, keep_firing_for_seconds=900.0, evaluation_interval_seconds=15.0)


def test_the_default_settings_give_the_shipped_timing() -> None:
    assert RuleTiming.from_settings(Settings()) == SHIPPED


def test_the_shipped_rule_at_a_60s_step_is_for_2_keep_15_samples() -> None:
    rule = anomaly_alert_rule(60, SHIPPED)
    assert (rule.for_steps, rule.keep_firing_steps) == (2, 15)


def test_a_step_longer_than_for_fires_on_the_first_exceeding_sample() -> None:
    rule = anomaly_alert_rule(300, SHIPPED, evaluation_seconds=60)
    assert (rule.for_steps, rule.keep_firing_steps) == (0, 3)


def test_settings_override_the_timing_for_teams_that_edit_their_rules() -> None:
    timing = RuleTiming.from_settings(
        Settings(anomaly_alert_for_seconds=300.0, anomaly_alert_keep_firing_for_seconds=0.0)
    )
    rule = anomaly_alert_rule(60, timing)
    assert (rule.for_steps, rule.keep_firing_steps) == (5, 0)
