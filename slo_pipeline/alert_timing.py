"""The shipped anomaly alert rule's timing, read from rules/, as an onset simulation.

Validation, the backtest preview in the UI and the documentation must turn scores into alarms
exactly as Prometheus will. Reading `for:` / `keep_firing_for:` of the shipped `AnomalyDetected`
rule (instead of repeating the numbers in code) keeps the two from drifting apart.
"""

from __future__ import annotations

import math
from pathlib import Path

import yaml

from slo_pipeline.backtest.onset import AlertRule
from slo_pipeline.launch import parse_duration_ms
from slo_pipeline.settings import REPO_ROOT

ANOMALY_RULES = REPO_ROOT / "rules" / "anomaly.rules.yml"
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


def anomaly_alert_rule(step_seconds: float, rules_file: Path = ANOMALY_RULES) -> AlertRule:
    """The onset simulation of the shipped rule for scores sampled every `step_seconds`.

    Prometheus fires once the condition has held for `for`, i.e. on the sample at or after that
    duration, hence the ceiling; likewise for keep_firing_for.
    """
    for_seconds, keep_seconds = anomaly_alert_durations(rules_file)
    return AlertRule(
        for_steps=math.ceil(for_seconds / step_seconds),
        keep_firing_steps=math.ceil(keep_seconds / step_seconds),
    )
