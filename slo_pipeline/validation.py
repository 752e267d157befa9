"""Decide whether a freshly trained candidate may serve. Pure: numbers in, decision out.

This is the basic gate of the skeleton. SLO-based validation (alarm rate while the SLO was
healthy, breaches and confirmed incidents caught, lead time) plugs in as further checks that
return the same `ValidationDecision`; `combine` merges them so every reason is recorded.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# A candidate may alarm up to this multiple of its false-alarm budget on held-out recent data
# before it is refused; below ~3x the difference is within sampling noise for a week of data.
ALARM_RATE_TOLERANCE = 3.0
MIN_VALIDATION_SAMPLES = 50


@dataclass(frozen=True)
class ValidationDecision:
    promote: bool
    reasons: list[str]
    metrics: dict[str, float] = field(default_factory=dict)


def alarm_rate(tail_probability: np.ndarray, threshold: float) -> float:
    finite = tail_probability[np.isfinite(tail_probability)]
    if len(finite) == 0:
        return float("nan")
    return float(np.mean(finite < threshold))


def basic_validation(
    *,
    candidate_probabilities: np.ndarray,
    champion_probabilities: np.ndarray | None,
    threshold: float,
) -> ValidationDecision:
    """Both models score the same recent window, which the candidate's forest never trained on.

    The candidate must alarm within tolerance of the budget, and no more than the champion
    does on the same data (when there is a champion).
    """
    reasons: list[str] = []
    candidate_rate = alarm_rate(candidate_probabilities, threshold)
    n_scored = int(np.isfinite(candidate_probabilities).sum())
    metrics = {"validation_samples": float(n_scored), "candidate_alarm_rate": candidate_rate}
    promote = True
    if n_scored < MIN_VALIDATION_SAMPLES:
        promote = False
        reasons.append(f"only {n_scored} scorable recent samples (need {MIN_VALIDATION_SAMPLES})")
    allowed = ALARM_RATE_TOLERANCE * threshold + 1.0 / max(n_scored, 1)
    if not candidate_rate <= allowed:
        promote = False
        reasons.append(
            f"candidate alarms on {candidate_rate:.4%} of recent samples, budget allows {allowed:.4%}"
        )
    if champion_probabilities is not None:
        champion_rate = alarm_rate(champion_probabilities, threshold)
        metrics["champion_alarm_rate"] = champion_rate
        if np.isfinite(champion_rate) and candidate_rate > max(champion_rate, allowed):
            promote = False
            reasons.append(
                f"candidate alarms more than the champion ({candidate_rate:.4%} > {champion_rate:.4%})"
            )
    if promote:
        reasons.append(f"alarm rate {candidate_rate:.4%} within budget {allowed:.4%}")
    return ValidationDecision(promote=promote, reasons=reasons, metrics=metrics)


def combine(*decisions: ValidationDecision) -> ValidationDecision:
    return ValidationDecision(
        promote=all(d.promote for d in decisions),
        reasons=[reason for d in decisions for reason in d.reasons],
        metrics={k: v for d in decisions for k, v in d.metrics.items()},
    )
