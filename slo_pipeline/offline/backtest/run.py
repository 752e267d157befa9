"""One backtest: replay a history, simulate the alert rule, and score it against labels. Pure."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from slo_pipeline.core.alert_sim import AlertRule, simulate_alerts
from slo_pipeline.offline.backtest.replay import Progress, ReplayPlan, replay
from slo_pipeline.offline.evaluation.events import EventCounts, event_counts
from slo_pipeline.offline.evaluation.nab import STANDARD, CostProfile, NabResult, nab_score
from slo_pipeline.settings import DetectorConfig


@dataclass(frozen=True)
class BacktestOutcome:
    tail_probability: np.ndarray  # [T, N]
    anomaly_score: np.ndarray  # [T, N]
    firing: np.ndarray  # [T, N] bool: the alert is firing
    alarm: np.ndarray  # [T, N] bool: the alert starts firing (one per incident)
    models_trained: int
    driver: np.ndarray | None = None  # [T, N] the feature behind each anomalous row, "" elsewhere
    # [T, N] why a row has no score (slo_pipeline.scorability vocabulary), "" where it has one.
    unscored_reason: np.ndarray | None = None
    first_model_row: int | None = None  # None: no model could be trained on this input
    no_model_reason: str = ""  # why no model could be trained before first_model_row


@dataclass(frozen=True)
class FileMetrics:
    events: EventCounts
    nab: NabResult


def run_backtest(
    values: np.ndarray,
    detector: DetectorConfig,
    plan: ReplayPlan,
    rule: AlertRule,
    *,
    seed: int = 0,
    exclude: np.ndarray | None = None,
    progress: Progress | None = None,
) -> BacktestOutcome:
    result = replay(values, detector, plan, seed=seed, rule=rule, exclude=exclude, progress=progress)
    firing, alarm = simulate_alerts(result.anomaly_score, rule)
    return BacktestOutcome(
        tail_probability=result.tail_probability,
        anomaly_score=result.anomaly_score,
        firing=firing,
        alarm=alarm,
        models_trained=result.models_trained,
        driver=result.driver,
        unscored_reason=result.unscored_reasons(values, detector.windows),
        first_model_row=result.first_model_row,
        no_model_reason=result.no_model_reason,
    )


def score_against_labels(
    alarm: np.ndarray,
    windows: list[tuple[int, int]],
    epoch_seconds: np.ndarray,
    profile: CostProfile = STANDARD,
) -> FileMetrics:
    """Metrics of one series' alarm onsets `[T]` against its labelled windows (row ranges)."""
    return FileMetrics(
        events=event_counts(alarm, windows, epoch_seconds),
        nab=nab_score(alarm, windows, profile),
    )
