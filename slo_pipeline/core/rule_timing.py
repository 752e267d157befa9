"""The shipped anomaly alert rule's timing, read from rules/, as an onset simulation.

Validation, the backtest preview in the UI and the documentation must turn scores into alarms
exactly as Prometheus will. Reading `for:` / `keep_firing_for:` of the shipped `AnomalyDetected`
rule (instead of repeating the numbers in code) keeps the two from drifting apart.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from slo_pipeline.core.alert_sim import AlertRule
from slo_pipeline.devstack.launch import parse_duration_ms
from slo_pipeline.settings import REPO_ROOT

ANOMALY_RULES = REPO_ROOT / "rules" / "anomaly.rules.yml"
PROMETHEUS_CONFIG = REPO_ROOT / "prometheus" / "prometheus.yml"
ANOMALY_ALERT = "AnomalyDetected"


def anomaly_alert_durations(rules_file: Path = ANOMALY_RULES) -> tuple[float, float]:
    """`(for, keep_firing_for)` of the shipped anomaly alert, in seconds."""
    try:
        document = yaml.safe_load(rules_file.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as err:
        raise ValueError(f"could not read alert rules {str(rules_file)!r}: {err}") from err
    for group in document.get("groups", []):
        for rule in group.get("rules", []):
            if rule.get("alert") == ANOMALY_ALERT:
                return (
                    parse_duration_ms(str(rule.get("for", "0s"))) / 1000.0,
                    parse_duration_ms(str(rule.get("keep_firing_for", "0s"))) / 1000.0,
                )
    raise ValueError(f"{str(rules_file)!r} has no alert named {ANOMALY_ALERT!r}")


def evaluation_interval_seconds(prometheus_config: Path = PROMETHEUS_CONFIG) -> float:
    """The shipped Prometheus config's global `evaluation_interval` (Prometheus' default: 1m)."""
    try:
        document = yaml.safe_load(prometheus_config.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as err:
        raise ValueError(f"could not read Prometheus config {str(prometheus_config)!r}: {err}") from err
    interval = (document.get("global") or {}).get("evaluation_interval", "1m")
    return parse_duration_ms(str(interval)) / 1000.0


def anomaly_alert_rule(
    step_seconds: float,
    rules_file: Path = ANOMALY_RULES,
    evaluation_seconds: float | None = None,
) -> AlertRule:
    """The onset simulation of the shipped rule for scores sampled every `step_seconds`.

    Prometheus evaluates the rule every `evaluation_seconds` (default: the shipped config's) while
    each score holds for a whole step; AlertRule.from_durations turns wall-clock `for` /
    `keep_firing_for` into samples under exactly that model.
    """
    for_seconds, keep_seconds = anomaly_alert_durations(rules_file)
    evaluation = evaluation_seconds if evaluation_seconds is not None else evaluation_interval_seconds()
    return AlertRule.from_durations(for_seconds, keep_seconds, step_seconds, min(evaluation, step_seconds))
