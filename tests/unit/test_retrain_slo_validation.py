"""retrain.judge_and_register / slo_validation with the SLO evidence and registry stubbed out.

Real Prometheus, MLflow and PostgreSQL: tests/integration/test_slo_validation_history.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

from slo_pipeline.adapters.prometheus import SeriesBlock
from slo_pipeline.adapters.registry import ModelRef, RegisteredModel
from slo_pipeline.orchestration import retrain
from slo_pipeline.orchestration.retrain import TrainingData, judge_and_register, slo_validation
from slo_pipeline.settings import DetectorConfig, Settings
from slo_pipeline.slo.evidence import SloEvidence
from slo_pipeline.slo.validation import Interval

STEP = 60
T0 = 1_700_000_040.0
TIMES = T0 + np.arange(2 * 1440) * STEP  # two days
SPLIT = int(len(TIMES) * (1 - retrain.VALIDATION_FRACTION))
HELD_OUT = TIMES[SPLIT:]  # 7.2 h
BREACH_ROWS = slice(200, 245)  # of the held-out rows: 45 minutes, both series
BREACH = Interval(HELD_OUT[200], HELD_OUT[245])
PAGE = HELD_OUT[215]
DETECTOR = DetectorConfig(name="d", query="q", step_seconds=STEP, slo="shop-availability")


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


def training_data() -> TrainingData:
    block = SeriesBlock(
        labels=[{"route": "/a"}, {"route": "/b"}], timestamps=TIMES, values=np.ones((len(TIMES), 2))
    )
    nothing = np.zeros((len(TIMES), 2), dtype=bool)
    return TrainingData(
        block=block,
        excluded=nothing,
        unhealthy=nothing,  # no incident row: the breach is known to Prometheus only
        false_positive=nothing,
        split=SPLIT,
        incident_count=0,
        snapshot_path="snapshot.parquet",
        frame=None,
    )


@dataclass
class Report:
    def as_metrics(self) -> dict[str, float]:
        return {}


@dataclass
class FakeRegistry:
    tags: dict[str, str] = field(default_factory=dict)
    champion: str | None = None

    def log_and_register(self, settings: Settings, name: str, model: Any, **kwargs: Any) -> RegisteredModel:
        return RegisteredModel(ModelRef(name, "1", "run-1"), "models:/d/1")

    def tag_version(self, settings: Settings, name: str, version: str, tags: dict[str, str]) -> None:
        self.tags.update(tags)

    def set_champion(self, settings: Settings, name: str, version: str) -> None:
        self.champion = version


@pytest.fixture
def fake_registry(monkeypatch: pytest.MonkeyPatch) -> FakeRegistry:
    fake = FakeRegistry()
    monkeypatch.setattr(retrain.registry, "champion_ref", lambda settings, name: None)
    monkeypatch.setattr(retrain.registry, "log_and_register", fake.log_and_register)
    monkeypatch.setattr(retrain.registry, "tag_version", fake.tag_version)
    monkeypatch.setattr(retrain.registry, "set_champion", fake.set_champion)
    return fake


def judge(
    monkeypatch: pytest.MonkeyPatch, held_out: np.ndarray, found: SloEvidence
) -> retrain.RetrainOutcome:
    monkeypatch.setattr(retrain, "held_out_scores", lambda model, detector, values, split, keys: held_out)
    monkeypatch.setattr(retrain, "fetch_slo_evidence", lambda settings, **kwargs: found)
    return judge_and_register(Settings(), DETECTOR, training_data(), object(), Report())  # type: ignore[arg-type]


def test_alarms_during_an_slo_breach_are_not_false_alarms_for_the_basic_gate(
    monkeypatch: pytest.MonkeyPatch, fake_registry: FakeRegistry
) -> None:
    outcome = judge(monkeypatch, scores(alarming=True), evidence())
    assert outcome.promoted, outcome.reasons
    assert outcome.metrics["candidate_false_alarms"] == 0.0
    assert outcome.metrics["candidate_firing_fraction"] == 0.0
    assert outcome.metrics["slo_candidate_breaches_caught"] == 1.0
    assert fake_registry.champion == "1"


def test_the_same_alarms_without_slo_evidence_count_against_the_budget(
    monkeypatch: pytest.MonkeyPatch, fake_registry: FakeRegistry
) -> None:
    # What the basic gate did before it took the SLO's episodes into account.
    outcome = judge(monkeypatch, scores(alarming=True), evidence(recorded=False))
    assert not outcome.promoted
    assert outcome.metrics["candidate_false_alarms"] == 2.0


def test_a_candidate_silent_through_the_breach_is_rejected_naming_the_slo(
    monkeypatch: pytest.MonkeyPatch, fake_registry: FakeRegistry
) -> None:
    outcome = judge(monkeypatch, scores(alarming=False), evidence())
    assert not outcome.promoted
    assert (
        "SLO 'shop-availability': caught 0/1 episodes (breaches 0/1"
        in fake_registry.tags["slo_pipeline.reasons"]
    )
    assert fake_registry.tags["slo_pipeline.decision"] == "rejected"
    assert fake_registry.champion is None


def test_no_recorded_slo_history_is_said_but_does_not_block_a_first_model(
    monkeypatch: pytest.MonkeyPatch, fake_registry: FakeRegistry
) -> None:
    outcome = judge(monkeypatch, scores(alarming=False), evidence(recorded=False))
    assert outcome.promoted, outcome.reasons
    assert outcome.metrics["slo_recorded_samples"] == 0.0
    (note,) = [reason for reason in outcome.reasons if "no recording-rule history" in reason]
    assert note.startswith("SLO 'shop-availability': ") and "are its rules loaded?" in note


def test_slo_validation_uses_the_evidence_it_is_given(monkeypatch: pytest.MonkeyPatch) -> None:
    def must_not_fetch(*args: object, **kwargs: object) -> SloEvidence:
        raise AssertionError("evidence was given; nothing to fetch")

    monkeypatch.setattr(retrain, "fetch_slo_evidence", must_not_fetch)
    decision = slo_validation(Settings(), DETECTOR, HELD_OUT, scores(True), None, evidence=evidence())
    assert decision.promote, decision.reasons
    assert all(reason.startswith("SLO 'shop-availability': ") for reason in decision.reasons)
    assert decision.metrics["slo_recorded_samples"] == float(len(HELD_OUT))
    assert decision.metrics["slo_candidate_median_lead_seconds"] > 0
