"""Should a freshly trained candidate replace the champion? The pure decision, with its reasons.

Arrays in, decision out: held-out anomaly scores of candidate and champion, where things were
healthy (the incident log), the SLO's evidence (breaches, pages) and the alert rule to simulate.
The retrain shell (orchestration/retrain.py) fetches those and acts on the answer.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from slo_pipeline.core.alert_sim import AlertRule, simulate_alerts
from slo_pipeline.core.features import compute_features
from slo_pipeline.core.heldout import ValidationDecision, basic_validation, combine
from slo_pipeline.core.model import DetectorModel
from slo_pipeline.core.slo_gate import (
    SloEvidence,
    ValidationPolicy,
    episodes,
    unhealthy_mask,
    validate_against_slo,
)
from slo_pipeline.settings import DetectorConfig

# The newest share of the history is held out: neither fitted nor calibrated on, so candidate
# and champion are compared on data both see for the first time.
VALIDATION_FRACTION = 0.15

NO_SLO_HISTORY_NOTE = (
    "Prometheus holds no recording-rule history of it in the held-out window "
    "(are its rules loaded?): breaches and pages not assessed"
)
LEASE_LOST_REASON = "passed validation, but the job was taken over by another worker"


def validation_split(n_steps: int) -> int:
    """Rows at or after this index are held out."""
    return int(n_steps * (1.0 - VALIDATION_FRACTION))


def held_out_probabilities(model: DetectorModel, values: np.ndarray, split: int) -> np.ndarray:
    """Published tail probabilities `[T - split, N]` of the held-out rows, as the exporter computes them.

    Features and the evidence window are warmed on the rows before the split, so the first
    held-out rows are scored with full windows.
    """
    context = min(split, model.windows.evidence - 1)
    features = compute_features(values, model.windows)[split - context :]
    return model.feature_tail_probability(features)[context:]


def held_out_scores(
    model: DetectorModel, detector: DetectorConfig, values: np.ndarray, split: int, keys: list[str]
) -> np.ndarray:
    """`anomaly_score[T - split, N]` at the model's own threshold for the detector's budget."""
    threshold = model.alarm_threshold(detector.false_alarms_per_week, detector.step_seconds)
    return model.anomaly_scores(held_out_probabilities(model, values, split), threshold, keys)


@dataclass(frozen=True)
class HeldOut:
    """The held-out window both models are judged on."""

    timestamps: np.ndarray  # [T]
    candidate_scores: np.ndarray  # [T, N]
    champion_scores: np.ndarray | None  # [T, N]; None: no champion to compare with
    healthy: np.ndarray  # [T, N] outside every known incident but false positives


def decide_promotion(
    detector: DetectorConfig,
    held_out: HeldOut,
    rule: AlertRule,
    evidence: SloEvidence | None,
    *,
    excluded_incident_samples: float = 0.0,
) -> ValidationDecision:
    """The basic gate (alarms on healthy data, never worse than the champion) and, for a detector
    that protects an SLO, the SLO gate (breaches caught, lead time before the page).

    `evidence` is required for a detector with `slo:` and ignored otherwise.
    """
    if detector.slo is not None and evidence is None:
        raise ValueError(
            f"detector {detector.name!r} protects SLO {detector.slo!r}: its evidence is required"
        )
    healthy = held_out.healthy
    if detector.slo is not None and evidence is not None:
        # Alarms while the SLO breached (and in its lead/recovery margins) are not false alarms for
        # the basic gate either; the incident log may lack the breach (pages recorded before the
        # webhook ran, backfilled history), and then a detector that caught it was rejected for it.
        slo_episodes = episodes(evidence.breaches, evidence.confirmed_incidents, evidence.page_times)
        healthy = healthy & ~unhealthy_mask(held_out.timestamps, slo_episodes)[:, None]
    decision = basic_validation(
        candidate_scores=held_out.candidate_scores,
        champion_scores=held_out.champion_scores,
        healthy=healthy,
        rule=rule,
        step_seconds=detector.step_seconds,
        false_alarms_per_week=detector.false_alarms_per_week,
    )
    if detector.slo is not None and evidence is not None:
        decision = combine(
            decision,
            slo_decision(
                detector,
                held_out.timestamps,
                held_out.candidate_scores,
                held_out.champion_scores,
                rule,
                evidence,
            ),
        )
    decision.metrics["excluded_incident_samples"] = float(excluded_incident_samples)
    return decision


def slo_decision(
    detector: DetectorConfig,
    timestamps: np.ndarray,
    candidate_scores: np.ndarray,
    champion_scores: np.ndarray | None,
    rule: AlertRule,
    evidence: SloEvidence,
) -> ValidationDecision:
    """Judge both models by the alarms the alert rule would have raised for the detector's SLO."""
    if detector.slo is None:
        raise ValueError(f"detector {detector.name!r} protects no SLO; there is nothing to validate against")

    def alarms(scores: np.ndarray) -> np.ndarray:
        firing, _ = simulate_alerts(scores, rule)
        return np.asarray(firing.any(axis=1))

    scored_series = int(np.isfinite(candidate_scores).any(axis=0).sum())
    window_hours = float(timestamps[-1] - timestamps[0]) / 3600.0
    # The policy wants a day of healthy data; shorter histories (the demo keeps three days, so
    # the held-out slice is ~11 h) are judged on at least half of their held-out window instead.
    policy = ValidationPolicy(min_healthy_hours=min(24.0, 0.5 * window_hours))
    # Not a rejection: first models are trained before any rule has run (the demo, a fresh
    # install). But "no breach" then means "no evidence", and the decision must say so.
    notes = [NO_SLO_HISTORY_NOTE] if evidence.recorded_samples == 0 else []
    decision = validate_against_slo(
        timestamps=timestamps,
        candidate_alarms=alarms(candidate_scores),
        champion_alarms=alarms(champion_scores) if champion_scores is not None else None,
        breaches=evidence.breaches,
        incidents=evidence.confirmed_incidents,
        # Alarms are counted over the whole detector (any series), so the budget is per series
        # times the series that were scored.
        false_alarms_per_week=detector.false_alarms_per_week * max(1, scored_series),
        page_times=evidence.page_times,
        policy=policy,
    )
    # The basic gate's reasons sit next to these on the job and the MLflow version: name the SLO.
    return ValidationDecision(
        promote=decision.promote,
        reasons=[f"SLO {detector.slo!r}: {reason}" for reason in [*notes, *decision.reasons]],
        metrics={**decision.metrics, "slo_recorded_samples": float(evidence.recorded_samples)},
    )


def lease_lost(decision: ValidationDecision) -> ValidationDecision:
    """A passing decision that must not be acted on: another worker owns the job now."""
    return ValidationDecision(
        promote=False, reasons=[*decision.reasons, LEASE_LOST_REASON], metrics=decision.metrics
    )


def decision_tags(decision: ValidationDecision, compared_with: str | None) -> dict[str, str]:
    """The decision as MLflow version tags (what the UI and `model list` show)."""
    return {
        "slo_pipeline.decision": "promoted" if decision.promote else "rejected",
        "slo_pipeline.reasons": "; ".join(decision.reasons)[:5000],
        "slo_pipeline.compared_with": compared_with or "none",
    }
