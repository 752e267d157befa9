"""The anomaly alert rule's timing, as the onset simulation that training and validation use.

Validation, the backtest preview in the UI and the documentation must turn scores into alarms
exactly as Prometheus will. The timing comes from settings, whose defaults equal the shipped
`AnomalyDetected` rule and Prometheus config (tests/config/test_rule_timing.py keeps them equal);
a team that edits `for:` in its rules sets the matching SLO_PIPELINE_ANOMALY_ALERT_* variables.
"""

from __future__ import annotations

from dataclasses import dataclass

from slo_pipeline.core.alert_sim import AlertRule
from slo_pipeline.settings import Settings


@dataclass(frozen=True)
class RuleTiming:
    """Wall-clock timing of the anomaly alert rule and of the rule evaluation, in seconds."""

    for_seconds: float
    keep_firing_for_seconds: float
    evaluation_interval_seconds: float

    @classmethod
    def from_settings(cls, settings: Settings) -> RuleTiming:
        return cls(
            for_seconds=settings.anomaly_alert_for_seconds,
            keep_firing_for_seconds=settings.anomaly_alert_keep_firing_for_seconds,
            evaluation_interval_seconds=settings.rule_evaluation_interval_seconds,
        )


def anomaly_alert_rule(
    step_seconds: float, timing: RuleTiming, evaluation_seconds: float | None = None
) -> AlertRule:
    """The onset simulation of the anomaly rule for scores sampled every `step_seconds`.

    Prometheus evaluates the rule every `evaluation_seconds` (default: the timing's) while each
    score holds for a whole step; AlertRule.from_durations turns wall-clock `for` /
    `keep_firing_for` into samples under exactly that model.
    """
    evaluation = evaluation_seconds if evaluation_seconds is not None else timing.evaluation_interval_seconds
    return AlertRule.from_durations(
        timing.for_seconds, timing.keep_firing_for_seconds, step_seconds, min(evaluation, step_seconds)
    )
