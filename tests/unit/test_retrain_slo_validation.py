"""The promotion decision (pure) with SLO evidence, and the retrain shell with an in-memory registry.

Real Prometheus, MLflow and PostgreSQL: tests/integration/test_slo_validation_history.py.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from slo_pipeline.adapters.lake import LakeSlice
from slo_pipeline.adapters.lake_rows import SCHEMA
from slo_pipeline.adapters.prometheus import SeriesBlock
from slo_pipeline.adapters.registry import ChampionMoved, ModelRef, RegisteredModel
from slo_pipeline.core.alert_sim import AlertRule
from slo_pipeline.core.heldout import ValidationDecision
from slo_pipeline.core.model import DetectorModel
from slo_pipeline.core.promotion import HeldOut, decide_promotion, slo_decision, validation_split
from slo_pipeline.core.rule_timing import RuleTiming, anomaly_alert_rule
from slo_pipeline.core.slo_gate import Interval, SloEvidence
from slo_pipeline.core.training import fit_detector_model
from slo_pipeline.orchestration.retrain import TrainingData, judge_and_register
from slo_pipeline.settings import DetectorConfig, FeatureWindows, Settings

STEP = 60
T0 = 1_700_000_040.0
TIMES = T0 + np.arange(2 * 1440) * STEP  # two days
SPLIT = validation_split(len(TIMES))
HELD_OUT = TIMES[SPLIT:]  # 7.2 h
BREACH_ROWS = slice(200, 245)  # of the held-out rows: 45 minutes, both series
BREACH = Interval(HELD_OUT[200], HELD_OUT[245])
PAGE = HELD_OUT[215]
DETECTOR = DetectorConfig(name="d", query="q", step_seconds=STEP, slo="shop-availability")
RULE = anomaly_alert_rule(STEP, RuleTiming.from_settings(Settings()))


def scores(alarming: bool) -> np.ndarray:
    """Held-out anomaly scores of two series; > 1 during the breach when `alarming`."""
    values = np.full((len(HELD_OUT), 2), 0.2)
    if alarming:
        values[BREACH_ROWS] = 5.0
    return values


def evidence(recorded: bool = True) -> SloEvidence:
    if not recorded:
        return SloEvidence(breaches=[], page_times=[], confirmed_incidents=[], recorded_samples=0)
    return SloEvidence(
        breaches=[BREACH], page_times=[PAGE], confirmed_incidents=[], recorded_samples=len(HELD_OUT)
    )


def decide(candidate: np.ndarray, found: SloEvidence | None, rule: AlertRule = RULE) -> ValidationDecision:
    held_out = HeldOut(
        timestamps=HELD_OUT,
        candidate_scores=candidate,
        champion_scores=None,
        # No incident row: the breach is known to Prometheus only.
        healthy=np.ones(candidate.shape, dtype=bool),
    )
    return decide_promotion(DETECTOR, held_out, rule, found)


def test_alarms_during_an_slo_breach_are_not_false_alarms_for_the_basic_gate() -> None:
    decision = decide(scores(alarming=True), evidence())
    assert decision.promote, decision.reasons
    assert decision.metrics["candidate_false_alarms"] == 0.0
    assert decision.metrics["candidate_firing_fraction"] == 0.0
    assert decision.metrics["slo_candidate_breaches_caught"] == 1.0


def test_the_same_alarms_without_slo_evidence_count_against_the_budget() -> None:
    # What the basic gate did before it took the SLO's episodes into account.
    decision = decide(scores(alarming=True), evidence(recorded=False))
    assert not decision.promote
    assert decision.metrics["candidate_false_alarms"] == 2.0


def test_a_candidate_silent_through_the_breach_is_rejected_naming_the_slo() -> None:
    decision = decide(scores(alarming=False), evidence())
    assert not decision.promote
    assert any(
        "SLO 'shop-availability': caught 0/1 episodes (breaches 0/1" in reason for reason in decision.reasons
    ), decision.reasons


def test_no_recorded_slo_history_is_said_but_does_not_block_a_first_model() -> None:
    decision = decide(scores(alarming=False), evidence(recorded=False))
    assert decision.promote, decision.reasons
    assert decision.metrics["slo_recorded_samples"] == 0.0
    (note,) = [reason for reason in decision.reasons if "no recording-rule history" in reason]
    assert note.startswith("SLO 'shop-availability': ") and "are its rules loaded?" in note


def test_a_detector_with_an_slo_needs_its_evidence() -> None:
    try:
        decide(scores(alarming=False), None)
    except ValueError as err:
        assert "shop-availability" in str(err)
    else:
        raise AssertionError("a missing SLO evidence must be an error, not a pass")


def test_the_slo_gate_reports_lead_time_before_the_page() -> None:
    decision = slo_decision(DETECTOR, HELD_OUT, scores(True), None, RULE, evidence())
    assert decision.promote, decision.reasons
    assert all(reason.startswith("SLO 'shop-availability': ") for reason in decision.reasons)
    assert decision.metrics["slo_recorded_samples"] == float(len(HELD_OUT))
    assert decision.metrics["slo_candidate_median_lead_seconds"] > 0


# --- the shell: what it does with a decision, with the registry and evidence injected ---------


@dataclass
class InMemoryRegistry:
    """Dependency injection of the registry's calls (the real one: MlflowRegistry)."""

    champion: str | None = None
    versions: list[str] = field(default_factory=list)
    tags: dict[str, dict[str, str]] = field(default_factory=dict)

    def champion_ref(self, detector: str) -> ModelRef | None:
        return ModelRef(detector, self.champion, f"run-{self.champion}") if self.champion else None

    def load_model(self, ref: ModelRef) -> DetectorModel:
        raise AssertionError("no champion in these tests")

    def log_and_register(self, detector: str, model: DetectorModel, **kwargs: Any) -> RegisteredModel:
        version = str(len(self.versions) + 1)
        self.versions.append(version)
        self.tags[version] = dict(kwargs["tags"])
        return RegisteredModel(ModelRef(detector, version, f"run-{version}"), f"models:/{detector}/{version}")

    def tag_version(self, detector: str, version: str, tags: dict[str, str]) -> None:
        self.tags[version].update(tags)

    def promote(
        self,
        detector: str,
        version: str,
        *,
        expected_champion: str | None,
        tags: dict[str, str],
        may_promote: Callable[[], bool] | None,
    ) -> None:
        if self.champion != expected_champion:  # the compare-and-set the real registry does
            raise ChampionMoved(f"champion is {self.champion}, not {expected_champion}")
        self.champion = version
        self.tags[version].update(tags)


@dataclass
class FixedEvidence:
    found: SloEvidence
    asked: list[str] = field(default_factory=list)

    def slo_evidence(
        self, slo: str, detector: str, timestamps: np.ndarray, step_seconds: float
    ) -> SloEvidence:
        self.asked.append(slo)
        return self.found


def quiet_history() -> tuple[TrainingData, DetectorModel]:
    rng = np.random.default_rng(0)
    values = 100.0 + rng.normal(0.0, 1.0, size=(len(TIMES), 2))
    block = SeriesBlock(labels=[{"route": "/a"}, {"route": "/b"}], timestamps=TIMES, values=values)
    nothing = np.zeros(values.shape, dtype=bool)
    data = TrainingData(
        block=block,
        excluded=nothing,
        unhealthy=nothing,
        false_positive=nothing,
        split=SPLIT,
        incident_count=0,
        lake_slice=LakeSlice(
            table_uri="/lake/samples",
            version=0,
            detector="d",
            start=float(TIMES[0]),
            end=float(TIMES[-1]),
            rows=SCHEMA.empty_table(),
        ),
    )
    detector = DETECTOR.model_copy(update={"windows": FeatureWindows(short=5, medium=30, long=120)})
    model, _ = fit_detector_model(values[:SPLIT], detector, series_keys=data.keys, rule=RULE)
    return data, model


@dataclass
class Report:
    def as_metrics(self) -> dict[str, float]:
        return {}


def test_the_shell_registers_every_candidate_and_moves_champion_only_when_the_decision_says_so() -> None:
    data, model = quiet_history()
    registry = InMemoryRegistry()
    evidence_source = FixedEvidence(evidence())

    # Quiet held-out data and a breach it does not see: the SLO gate rejects it.
    outcome = judge_and_register(
        Settings(),
        DETECTOR,
        data,
        model,
        Report(),
        registry=registry,
        evidence=evidence_source,  # type: ignore[arg-type]
    )

    assert evidence_source.asked == ["shop-availability"]
    assert not outcome.promoted
    assert registry.versions == ["1"] and registry.champion is None
    assert registry.tags["1"]["slo_pipeline.decision"] == "rejected"


def test_a_worker_that_lost_its_lease_does_not_promote() -> None:
    data, model = quiet_history()
    registry = InMemoryRegistry()
    no_slo = DETECTOR.model_copy(update={"slo": None})

    outcome = judge_and_register(
        Settings(),
        no_slo,
        data,
        model,
        Report(),  # type: ignore[arg-type]
        registry=registry,
        evidence=FixedEvidence(evidence()),
        may_promote=lambda: False,
    )

    assert not outcome.promoted
    assert registry.champion is None
    assert "taken over by another worker" in registry.tags["1"]["slo_pipeline.reasons"]


@dataclass
class ChampionMovesDuringValidation(InMemoryRegistry):
    """No champion when the candidate is judged; a rival promoted version 7 before it could move."""

    def champion_ref(self, detector: str) -> ModelRef | None:
        return None


def test_a_champion_promoted_meanwhile_is_not_overwritten() -> None:
    data, model = quiet_history()
    registry = ChampionMovesDuringValidation(champion="7")
    no_slo = DETECTOR.model_copy(update={"slo": None})

    outcome = judge_and_register(
        Settings(),
        no_slo,
        data,
        model,
        Report(),  # type: ignore[arg-type]
        registry=registry,
        evidence=FixedEvidence(evidence()),
    )

    assert not outcome.promoted
    assert registry.champion == "7"
    assert registry.tags["1"]["slo_pipeline.decision"] == "rejected"
    assert "passed validation, but champion is 7, not None" in registry.tags["1"]["slo_pipeline.reasons"]
