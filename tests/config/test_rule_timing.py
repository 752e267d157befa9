"""The rule timing that training simulates (settings defaults) equals the shipped rule files."""

from __future__ import annotations

import yaml

from slo_pipeline.core.durations import parse_duration_ms
from slo_pipeline.core.rule_timing import RuleTiming
from slo_pipeline.settings import Settings
from tests.config.promtools import REPO_ROOT


def _shipped_anomaly_alert() -> dict[str, str]:
    document = yaml.safe_load((REPO_ROOT / "rules" / "anomaly.rules.yml").read_text(encoding="utf-8"))
    found = [
        rule
        for group in document["groups"]
        for rule in group["rules"]
        if rule.get("alert") == "AnomalyDetected"
    ]
    assert len(found) == 1, "the shipped rules must define AnomalyDetected exactly once"
    return found[0]


def test_default_timing_equals_the_shipped_rule_and_prometheus_config() -> None:
    alert = _shipped_anomaly_alert()
    prometheus = yaml.safe_load((REPO_ROOT / "prometheus" / "prometheus.yml").read_text(encoding="utf-8"))
    shipped = RuleTiming(
        for_seconds=parse_duration_ms(str(alert["for"])) / 1000.0,
        keep_firing_for_seconds=parse_duration_ms(str(alert["keep_firing_for"])) / 1000.0,
        evaluation_interval_seconds=parse_duration_ms(str(prometheus["global"]["evaluation_interval"]))
        / 1000.0,
    )
    assert RuleTiming.from_settings(Settings()) == shipped
