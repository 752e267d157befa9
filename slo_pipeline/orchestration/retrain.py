"""Train, validate and (maybe) promote one detector's model: the I/O around the pure pieces.

history (Prometheus merged into the data lake, read back as one lake slice) -> fit on the older
part -> score the most recent part with candidate and champion -> validate -> MLflow run +
registered version -> move `@champion` only when validation passes. Used by `slo-pipeline
train` and by the worker.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from slo_pipeline.adapters import lake
from slo_pipeline.adapters import registry as mlflow_registry
from slo_pipeline.adapters.budgets import BudgetOverrides
from slo_pipeline.adapters.incident_history import KnownIncident, incident_history, incident_matrix
from slo_pipeline.adapters.lake import LakeSlice
from slo_pipeline.adapters.lake_rows import rows_block
from slo_pipeline.adapters.postgres import DatabaseError
from slo_pipeline.adapters.prometheus import SeriesBlock, series_keys
from slo_pipeline.adapters.prometheus_connection import redact_url
from slo_pipeline.adapters.registry import ModelRef, RegisteredModel
from slo_pipeline.core.frame_scoring import ServingParams
from slo_pipeline.core.heldout import ValidationDecision
from slo_pipeline.core.model import DetectorModel
from slo_pipeline.core.promotion import (
    HeldOut,
    decide_promotion,
    decision_tags,
    held_out_scores,
    lease_lost,
    validation_split,
)
from slo_pipeline.core.rule_timing import RuleTiming, anomaly_alert_rule
from slo_pipeline.core.slo_gate import SloEvidence
from slo_pipeline.core.training import TrainingReport, fit_detector_model
from slo_pipeline.orchestration.lake_sync import sync_range
from slo_pipeline.settings import DetectorConfig, Settings
from slo_pipeline.slo.evidence import fetch_slo_evidence

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetrainOutcome:
    run_id: str
    model_version: str
    promoted: bool
    reasons: list[str]
    metrics: dict[str, float] = field(default_factory=dict)


def known_incidents(
    settings: Settings, detector: DetectorConfig, start: float, end: float
) -> list[KnownIncident]:
    try:
        return incident_history(settings.database_url, detector.name, start=start, end=end, slo=detector.slo)
    except DatabaseError as err:
        # Training without the incident log is still useful (first models, `slo-pipeline train`
        # on a laptop); it only loses the exclusion, so say so loudly rather than fail.
        log.warning("detector %s: training without incident exclusion: %s", detector.name, err)
        return []


@dataclass(frozen=True)
class TrainingData:
    """A detector's history (a lake slice), with incident cells and the validation split."""

    block: SeriesBlock
    excluded: np.ndarray  # [T, N] confirmed incidents and SLO breaches: never trained on
    unhealthy: np.ndarray  # [T, N] any known incident but false positives: alarms there are not false
    false_positive: np.ndarray  # [T, N] incidents operators marked noise
    split: int  # rows >= split are held out for validation
    incident_count: int
    lake_slice: LakeSlice

    @property
    def keys(self) -> list[str]:
        return series_keys(self.block.labels)


def training_history(
    settings: Settings, detector: DetectorConfig, *, end: float
) -> tuple[SeriesBlock, LakeSlice]:
    """The training window as the lake holds it once Prometheus' part of it has been merged in.

    So the model sees Prometheus' data where Prometheus still has it and the lake's for older
    ranges, and the run can name exactly what it trained on: one slice of one table version.
    """
    start = end - detector.effective_training_window_seconds
    sync_range(settings, detector, start=start, end=end)
    lake_slice = lake.read_slice(settings.data_lake, detector.name, start=start, end=end)
    block = rows_block(
        lake_slice.rows,
        start=start,
        end=end,
        step_seconds=detector.step_seconds,
        signals=detector.signal_names,
    )
    return block, lake_slice


def prepare_training_data(settings: Settings, detector: DetectorConfig, *, end: float) -> TrainingData:
    block, lake_slice = training_history(settings, detector, end=end)
    if block.n_series == 0:
        raise ValueError(
            f"detector {detector.name!r}: neither Prometheus at {redact_url(settings.prometheus_url)!r} nor "
            f"the lake {settings.data_lake!r} holds data over the last "
            f"{detector.effective_training_window_seconds}s: "
            f"{detector.query_text}"
        )
    return training_data(settings, detector, block, lake_slice, end=end)


def training_data(
    settings: Settings, detector: DetectorConfig, block: SeriesBlock, lake_slice: LakeSlice, *, end: float
) -> TrainingData:
    """The lake slice's block with its known incidents marked and the validation split."""
    incidents = known_incidents(settings, detector, float(block.timestamps[0]), end)
    settle = detector.windows.short * detector.step_seconds

    def cells(selected: list[KnownIncident]) -> np.ndarray:
        return incident_matrix(block.timestamps, block.labels, selected, settle_seconds=settle)

    return TrainingData(
        block=block,
        excluded=cells([i for i in incidents if i.confirmed or i.slo_wide]),
        unhealthy=cells([i for i in incidents if not i.false_positive]),
        false_positive=cells([i for i in incidents if i.false_positive]),
        split=validation_split(len(block.timestamps)),
        incident_count=len(incidents),
        lake_slice=lake_slice,
    )


def retrain_detector(
    settings: Settings,
    detector_name: str,
    *,
    now: float | None = None,
    may_promote: Callable[[], bool] | None = None,
    run_tags: dict[str, str] | None = None,
) -> RetrainOutcome:
    """`may_promote` (the worker's lease check) is asked right before @champion would move;
    `run_tags` are added to the MLflow run (the worker's job id)."""
    # The budget in force: an override applied in the UI wins over the YAML's.
    detector = BudgetOverrides(settings.database_url).apply(settings.pipeline.detector(detector_name))
    data = prepare_training_data(settings, detector, end=float(now if now is not None else time.time()))
    return fit_and_judge(settings, detector, data, may_promote=may_promote, run_tags=run_tags)


def fit_and_judge(
    settings: Settings,
    detector: DetectorConfig,
    data: TrainingData,
    *,
    may_promote: Callable[[], bool] | None = None,
    run_tags: dict[str, str] | None = None,
) -> RetrainOutcome:
    """Fit a candidate on the older part of `data`, then `judge_and_register` it (MLflow, SLO
    evidence from Prometheus)."""
    split = data.split
    candidate, report = fit_detector_model(
        data.block.values[:split],
        detector,
        exclude=data.excluded[:split],
        false_positive=data.false_positive[:split],
        series_keys=data.keys,
        rule=anomaly_alert_rule(detector.step_seconds, RuleTiming.from_settings(settings)),
    )
    return judge_and_register(
        settings,
        detector,
        data,
        candidate,
        report,
        registry=MlflowRegistry(settings),
        evidence=PrometheusSloEvidence(settings),
        may_promote=may_promote,
        run_tags=run_tags,
    )


class ModelRegistry(Protocol):
    """The registry calls the retrain shell makes (MlflowRegistry; in-memory ones in unit tests)."""

    def champion_ref(self, detector: str) -> ModelRef | None: ...

    def load_model(self, ref: ModelRef) -> DetectorModel: ...

    def log_and_register(
        self,
        detector: str,
        model: DetectorModel,
        *,
        params: dict[str, Any],
        metrics: dict[str, float],
        tags: dict[str, str],
        lake_slice: LakeSlice,
        serving: ServingParams,
    ) -> RegisteredModel: ...

    def tag_version(self, detector: str, version: str, tags: dict[str, str]) -> None: ...

    def promote(
        self,
        detector: str,
        version: str,
        *,
        expected_champion: str | None,
        tags: dict[str, str],
        may_promote: Callable[[], bool] | None,
    ) -> None:
        """Compare-and-set @champion from `expected_champion`; tags after the move; raises
        `ChampionMoved` (adapters/registry.py) when the champion moved or `may_promote` says no."""
        ...


class SloEvidenceSource(Protocol):
    def slo_evidence(
        self, slo: str, detector: str, timestamps: np.ndarray, step_seconds: float
    ) -> SloEvidence:
        """Breaches, pages and confirmed incidents of `slo` over `timestamps`."""
        ...


class MlflowRegistry:
    """The MLflow registry named by the settings."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    def champion_ref(self, detector: str) -> ModelRef | None:
        return mlflow_registry.champion_ref(self._settings, detector)

    def load_model(self, ref: ModelRef) -> DetectorModel:
        return mlflow_registry.load_model(self._settings, ref)

    def log_and_register(
        self,
        detector: str,
        model: DetectorModel,
        *,
        params: dict[str, Any],
        metrics: dict[str, float],
        tags: dict[str, str],
        lake_slice: LakeSlice,
        serving: ServingParams,
    ) -> RegisteredModel:
        return mlflow_registry.log_and_register(
            self._settings,
            detector,
            model,
            params=params,
            metrics=metrics,
            tags=tags,
            lake_slice=lake_slice,
            serving=serving,
        )

    def tag_version(self, detector: str, version: str, tags: dict[str, str]) -> None:
        mlflow_registry.tag_version(self._settings, detector, version, tags)

    def promote(
        self,
        detector: str,
        version: str,
        *,
        expected_champion: str | None,
        tags: dict[str, str],
        may_promote: Callable[[], bool] | None,
    ) -> None:
        mlflow_registry.promote(
            self._settings,
            detector,
            version,
            expected_champion=expected_champion,
            tags=tags,
            may_promote=may_promote,
        )


class PrometheusSloEvidence:
    """Recording-rule history from Prometheus and confirmed incidents from PostgreSQL."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    def slo_evidence(
        self, slo: str, detector: str, timestamps: np.ndarray, step_seconds: float
    ) -> SloEvidence:
        return fetch_slo_evidence(
            self._settings, slo=slo, detector=detector, timestamps=timestamps, step_seconds=step_seconds
        )


def judge_and_register(
    settings: Settings,
    detector: DetectorConfig,
    data: TrainingData,
    candidate: DetectorModel,
    report: TrainingReport,
    *,
    registry: ModelRegistry,
    evidence: SloEvidenceSource,
    may_promote: Callable[[], bool] | None = None,
    run_tags: dict[str, str] | None = None,
) -> RetrainOutcome:
    """Validate `candidate` against the champion on held-out data; register it; maybe promote.

    A rejected candidate is still registered (so it can be inspected), tagged with the reasons,
    and never becomes the champion.
    """
    block, split = data.block, data.split
    champion_ref = registry.champion_ref(detector.name)
    champion, champion_refused = _load_champion(registry, champion_ref)
    held_out_times = block.timestamps[split:]
    slo_evidence = (
        evidence.slo_evidence(detector.slo, detector.name, held_out_times, detector.step_seconds)
        if detector.slo is not None
        else None
    )
    held_out = HeldOut(
        timestamps=held_out_times,
        candidate_scores=held_out_scores(candidate, detector, block.values, split, data.keys),
        champion_scores=(
            held_out_scores(champion, detector, block.values, split, data.keys)
            if champion is not None
            else None
        ),
        healthy=~data.unhealthy[split:],
    )
    decision = decide_promotion(
        detector,
        held_out,
        anomaly_alert_rule(detector.step_seconds, RuleTiming.from_settings(settings)),
        slo_evidence,
        excluded_incident_samples=float(data.excluded.sum()),
    )
    if champion_refused is not None:
        decision = ValidationDecision(
            promote=decision.promote, reasons=[*decision.reasons, champion_refused], metrics=decision.metrics
        )
    compared_with = champion_ref.version if champion_ref else None
    registered = registry.log_and_register(
        detector.name,
        candidate,
        params={
            "query": detector.query_text,
            "step_seconds": detector.step_seconds,
            "training_window_seconds": detector.training_window_seconds,
            "false_alarms_per_week": detector.false_alarms_per_week,
            "n_estimators": detector.n_estimators,
            "windows": detector.windows.model_dump_json(),
            "lake_table": data.lake_slice.table_uri,
            "lake_version": data.lake_slice.version,
            "excluded_incidents": data.incident_count,
        },
        metrics={**report.as_metrics(), **_finite(decision.metrics)},
        tags={**(run_tags or {}), **decision_tags(decision, compared_with)},
        lake_slice=data.lake_slice,
        serving=ServingParams(
            step_seconds=detector.step_seconds, false_alarms_per_week=detector.false_alarms_per_week
        ),
    )
    version = registered.ref.version
    if decision.promote and may_promote is not None and not may_promote():
        decision = lease_lost(decision)
    if decision.promote:
        try:
            # Compare-and-set under the detector's promotion lock; "promoted" is tagged after the
            # alias moved. The lease is asked again under the lock.
            registry.promote(
                detector.name,
                version,
                expected_champion=compared_with,
                tags=decision_tags(decision, compared_with),
                may_promote=may_promote,
            )
        except mlflow_registry.ChampionMoved as err:
            decision = ValidationDecision(
                promote=False,
                reasons=[*decision.reasons, f"passed validation, but {err}"],
                metrics=decision.metrics,
            )
    if not decision.promote:
        registry.tag_version(detector.name, version, decision_tags(decision, compared_with))
    log.info(
        "detector %s: version %s %s (%s)",
        detector.name,
        version,
        "promoted" if decision.promote else "rejected",
        "; ".join(decision.reasons),
    )
    return RetrainOutcome(
        run_id=registered.ref.run_id,
        model_version=version,
        promoted=decision.promote,
        reasons=decision.reasons,
        metrics=decision.metrics,
    )


def _load_champion(registry: ModelRegistry, ref: ModelRef | None) -> tuple[DetectorModel | None, str | None]:
    """The champion to compare with, and why it was refused (a reason for the decision), if so."""
    if ref is None:
        return None, None
    try:
        return registry.load_model(ref), None
    except mlflow_registry.ModelRefused as err:
        # Not written by this project: never loaded, so nothing of it ran. The candidate is judged
        # on its own merits and may replace it; the operator must learn who moved @champion.
        log.error("champion %s/%s refused, not compared with: %s", ref.model_name, ref.version, err)
        return None, f"champion version {ref.version} was refused ({err.reason}) and not compared with"
    except mlflow_registry.ModelLoadError as err:
        # A champion that cannot be loaded cannot be compared with; the candidate is judged on
        # its own merits, and the failure is recorded in the log for the operator.
        log.warning("champion %s/%s could not be loaded for comparison: %s", ref.model_name, ref.version, err)
        return None, None


def _finite(metrics: dict[str, float]) -> dict[str, float]:
    return {k: v for k, v in metrics.items() if np.isfinite(v)}
