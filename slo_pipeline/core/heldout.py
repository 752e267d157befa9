"""Decide whether a freshly trained candidate may serve. Pure: scores in, decision out.

The basic gate judges what operators will experience: alarm *onsets* of the shipped alert rule
(`for:` / `keep_firing_for:`, simulated by backtest.onset) while the service was healthy, on
held-out data both candidate and champion see for the first time. SLO-based validation
(core/slo_gate.py) adds breaches, confirmed incidents and lead time; `combine` merges the
decisions so every reason is recorded.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.stats import poisson

from slo_pipeline.core.alert_sim import AlertRule, simulate_alerts

SECONDS_PER_WEEK = 7 * 86400.0
MIN_VALIDATION_SAMPLES = 50
# Allowed onsets: this quantile of Poisson(budget x series-weeks), so one alarm in a short
# window of a one-per-week budget is not mistaken for a broken model.
BUDGET_CONFIDENCE = 0.99
# A model that fires on more than this share of healthy samples is broken whatever its onset
# count (a detector that never stops firing has few onsets).
MAX_FIRING_FRACTION = 0.05


@dataclass(frozen=True)
class ValidationDecision:
    promote: bool
    reasons: list[str]
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class AlarmSummary:
    onsets: int
    firing_fraction: float


def summarize_alarms(scores: np.ndarray, healthy: np.ndarray, rule: AlertRule) -> AlarmSummary:
    """Onsets and firing share of the shipped rule over healthy cells of `scores[T, N]`.

    Cells inside known incidents are treated as not anomalous: an alarm there is not false.
    """
    masked = np.where(healthy, np.asarray(scores, dtype=np.float64), 0.0)
    firing, onset = simulate_alerts(masked, rule)
    counted = healthy & np.isfinite(scores)
    fraction = float(firing[counted].mean()) if counted.any() else 0.0
    return AlarmSummary(onsets=int(onset[counted].sum()), firing_fraction=fraction)


def basic_validation(
    *,
    candidate_scores: np.ndarray,
    champion_scores: np.ndarray | None,
    healthy: np.ndarray,
    rule: AlertRule,
    step_seconds: float,
    false_alarms_per_week: float,
) -> ValidationDecision:
    """`*_scores[T, N]` are anomaly scores (> 1 anomalous) on the same held-out rows."""
    candidate_scores = np.asarray(candidate_scores, dtype=np.float64)
    scored = healthy & np.isfinite(candidate_scores)
    n_scored = int(scored.sum())
    expected = false_alarms_per_week * n_scored * step_seconds / SECONDS_PER_WEEK
    allowed = int(poisson.ppf(BUDGET_CONFIDENCE, expected)) if expected > 0 else 0
    mine = summarize_alarms(candidate_scores, healthy, rule)
    metrics = {
        "validation_samples": float(n_scored),
        "validation_expected_false_alarms": expected,
        "validation_allowed_false_alarms": float(allowed),
        "candidate_false_alarms": float(mine.onsets),
        "candidate_firing_fraction": mine.firing_fraction,
    }
    reasons: list[str] = []
    promote = True
    if n_scored < MIN_VALIDATION_SAMPLES:
        promote = False
        reasons.append(f"only {n_scored} scorable healthy samples held out (need {MIN_VALIDATION_SAMPLES})")
    if mine.onsets > allowed:
        promote = False
        reasons.append(
            f"{mine.onsets} alarms on healthy held-out data; the budget of {false_alarms_per_week:g}/week "
            f"allows {allowed} (expected {expected:.2f})"
        )
    if mine.firing_fraction > MAX_FIRING_FRACTION:
        promote = False
        reasons.append(
            f"fires on {mine.firing_fraction:.1%} of healthy held-out samples "
            f"(at most {MAX_FIRING_FRACTION:.0%})"
        )
    if champion_scores is not None:
        theirs = summarize_alarms(champion_scores, healthy, rule)
        metrics["champion_false_alarms"] = float(theirs.onsets)
        metrics["champion_firing_fraction"] = theirs.firing_fraction
        if mine.onsets > max(theirs.onsets, allowed):
            promote = False
            reasons.append(f"more alarms than the champion ({mine.onsets} > {theirs.onsets})")
    if promote:
        reasons.append(f"{mine.onsets} alarms on healthy held-out data, within the {allowed} allowed")
    return ValidationDecision(promote=promote, reasons=reasons, metrics=metrics)


def combine(*decisions: ValidationDecision) -> ValidationDecision:
    return ValidationDecision(
        promote=all(d.promote for d in decisions),
        reasons=[reason for d in decisions for reason in d.reasons],
        metrics={k: v for d in decisions for k, v in d.metrics.items()},
    )
