"""Validation and the UI preview read the shipped alert rule's timing instead of repeating it."""

from __future__ import annotations

from pathlib import Path

import pytest

from slo_pipeline.core.rule_timing import (
    anomaly_alert_durations,
    anomaly_alert_rule,
    evaluation_interval_seconds,
)


def test_the_shipped_rule_at_a_60s_step_is_for_2_keep_15_samples() -> None:
    assert anomaly_alert_durations() == (120.0, 900.0)
    rule = anomaly_alert_rule(60, evaluation_seconds=15)
    assert (rule.for_steps, rule.keep_firing_steps) == (2, 15)


def test_a_step_longer_than_for_fires_on_the_first_exceeding_sample() -> None:
    rule = anomaly_alert_rule(300, evaluation_seconds=60)
    assert (rule.for_steps, rule.keep_firing_steps) == (0, 3)


def test_the_evaluation_interval_comes_from_the_shipped_prometheus_config() -> None:
    assert evaluation_interval_seconds() == 15.0


def test_a_rules_file_without_the_alert_is_an_error_naming_it(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yml"
    rules.write_text("groups:\n  - name: g\n    rules:\n      - alert: Other\n        expr: up == 0\n")
    with pytest.raises(ValueError, match="AnomalyDetected"):
        anomaly_alert_durations(rules)
