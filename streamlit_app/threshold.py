"""Threshold preview: how many alarms a false-alarm budget would have raised on recent history.

The exporter publishes each series' calibrated tail probability, so any other budget can be
replayed without re-scoring: budget -> per-sample threshold -> `anomaly_score` -> the shipped
alert rule's pending/firing logic (`slo_pipeline.core.alert_sim`) -> alarm onsets.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from slo_pipeline.adapters.prometheus import SeriesBlock, fetch_range
from slo_pipeline.core.alert_sim import AlertRule, simulate_alerts
from slo_pipeline.core.calibration import anomaly_score
from slo_pipeline.settings import DetectorConfig, Settings
from streamlit_app.slo_series import PROMETHEUS_TIMEOUT_SECONDS

TAIL_PROBABILITY_METRIC = "anomaly_tail_probability"
SECONDS_PER_WEEK = 7 * 24 * 3600
# Budgets shown next to the configured and the proposed one, so the trade-off is visible at once.
LADDER = (0.1, 0.5, 1.0, 2.0, 5.0, 10.0)


@dataclass(frozen=True)
class PreviewRow:
    false_alarms_per_week: float
    tail_probability_threshold: float
    alarms: int  # alert onsets (one notification each) over the whole history, all series
    alarms_per_series_week: float  # comparable with the budget itself
    series_with_alarms: int
    firing_share: float  # share of series-samples spent firing


def threshold_for(detector: DetectorConfig, false_alarms_per_week: float) -> float:
    """The detector's own budget -> threshold rule, so the preview matches what training uses."""
    changed = detector.model_copy(update={"false_alarms_per_week": false_alarms_per_week})
    return changed.tail_probability_threshold


def budgets_to_show(configured: float, proposed: float) -> list[float]:
    return sorted({*LADDER, float(configured), float(proposed)})


def preview(
    tail_probability: np.ndarray,
    detector: DetectorConfig,
    budgets: Sequence[float],
    rule: AlertRule,
) -> list[PreviewRow]:
    """One row per budget for a `[time, series]` matrix of tail probabilities (NaN = no score).

    `rule` is the deployed alert rule's timing at the detector's step (`anomaly_alert_rule`), so
    the preview counts the alarms Prometheus would raise.
    """
    matrix = np.asarray(tail_probability, dtype=np.float64)
    if matrix.ndim != 2:
        raise ValueError(f"tail probabilities must be [time, series], got shape {matrix.shape}")
    n_steps, n_series = matrix.shape
    series_weeks = n_steps * detector.step_seconds / SECONDS_PER_WEEK * n_series
    scored = np.isfinite(matrix)
    thresholds = [threshold_for(detector, budget) for budget in budgets]
    # A missing score stays NaN, which the rule treats as "not anomalous", like Prometheus does.
    filled = np.where(scored, matrix, 1.0)
    per_budget = [np.where(scored, anomaly_score(filled, t), np.nan) for t in thresholds]
    # One replay for all budgets side by side: simulate_alerts loops over time in Python and is
    # vectorised over series, so one call with every budget's columns costs about what one
    # budget did (the preview took seconds with a call per budget).
    all_firing, all_onset = simulate_alerts(
        np.concatenate(per_budget, axis=1) if per_budget else matrix[:, :0], rule
    )
    rows = []
    for index, (budget, threshold) in enumerate(zip(budgets, thresholds, strict=True)):
        columns = slice(index * n_series, (index + 1) * n_series)
        firing, onset = all_firing[:, columns], all_onset[:, columns]
        alarms = int(onset.sum())
        rows.append(
            PreviewRow(
                false_alarms_per_week=float(budget),
                tail_probability_threshold=threshold,
                alarms=alarms,
                alarms_per_series_week=alarms / series_weeks if series_weeks else 0.0,
                series_with_alarms=int(onset.any(axis=0).sum()) if n_series else 0,
                firing_share=float(firing.mean()) if firing.size else 0.0,
            )
        )
    return rows


def fetch_tail_probabilities(
    settings: Settings, detector: DetectorConfig, days: float, now: float | None = None
) -> SeriesBlock:
    """The exporter's published tail probabilities of `detector` over the last `days`."""
    end = time.time() if now is None else now
    return fetch_range(
        settings.prometheus,
        f'{TAIL_PROBABILITY_METRIC}{{detector="{detector.name}"}}',
        start=end - days * 24 * 3600,
        end=end,
        step_seconds=detector.step_seconds,
        timeout=PROMETHEUS_TIMEOUT_SECONDS,
    )


def firing_any(
    tail_probability: np.ndarray, detector: DetectorConfig, budget: float, rule: AlertRule
) -> np.ndarray:
    """[T] bool: whether any series' replayed alert fires at each step under `budget`."""
    matrix = np.asarray(tail_probability, dtype=np.float64)
    scored = np.isfinite(matrix)
    threshold = threshold_for(detector, budget)
    scores = np.where(scored, anomaly_score(np.where(scored, matrix, 1.0), threshold), np.nan)
    firing, _ = simulate_alerts(scores, rule)
    if not firing.size:
        return np.zeros(len(matrix), dtype=bool)
    return np.asarray(firing.any(axis=1), dtype=bool)


def proposed_score_line(detector: DetectorConfig, current: float, proposed: float) -> float:
    """Where the proposed threshold sits on the current score scale (the current one is 1).

    score = log p / log p*, so the proposed p*' is reached at log p*' / log p* on today's scale.
    """
    return float(np.log(threshold_for(detector, proposed)) / np.log(threshold_for(detector, current)))


def max_score(tail_probability: np.ndarray, detector: DetectorConfig, budget: float) -> np.ndarray:
    """[T] highest anomaly score across series at `budget` (NaN where no series was scored)."""
    matrix = np.asarray(tail_probability, dtype=np.float64)
    scored = np.isfinite(matrix)
    scores = np.where(
        scored, anomaly_score(np.where(scored, matrix, 1.0), threshold_for(detector, budget)), -np.inf
    )
    best = scores.max(axis=1) if scores.size else np.full(len(matrix), -np.inf)
    return np.where(np.isfinite(best), best, np.nan)


@dataclass(frozen=True)
class Catch:
    caught: bool
    first_alarm: float | None  # unix seconds of the first replayed alarm in the incident's window
    lead_seconds: float | None  # SLO page time - first alarm (positive: the alarm came first)


def catch(
    timestamps: np.ndarray,
    firing: np.ndarray,
    start: float,
    end: float,
    page_time: float | None,
    lead_window_seconds: float = 3600.0,
) -> Catch:
    """Did an alarm fire from `lead_window` before the incident until its end, and how early
    was it compared with the SLO's page (if one was sent)?"""
    in_window = (timestamps >= start - lead_window_seconds) & (timestamps <= end) & firing
    if not in_window.any():
        return Catch(caught=False, first_alarm=None, lead_seconds=None)
    first = float(timestamps[np.argmax(in_window)])
    return Catch(
        caught=True, first_alarm=first, lead_seconds=None if page_time is None else page_time - first
    )


def budget_curve(
    tail_probability: np.ndarray, detector: DetectorConfig, rule: AlertRule, points: int = 13
) -> list[dict[str, float]]:
    """Replayed alarms per week (all series) for budgets spaced evenly on a log scale, 0.05-50,
    per week of the history actually returned (a young Prometheus holds less than was asked)."""
    budgets = np.geomspace(0.05, 50.0, points)
    rows = preview(tail_probability, detector, [float(b) for b in budgets], rule)
    weeks = max(1, len(tail_probability)) * detector.step_seconds / SECONDS_PER_WEEK
    return [{"budget": r.false_alarms_per_week, "alarms_per_week": r.alarms / weeks} for r in rows]
