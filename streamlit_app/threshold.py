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
    rows = []
    for budget in budgets:
        threshold = threshold_for(detector, budget)
        # A missing score stays NaN, which the rule treats as "not anomalous", like Prometheus does.
        scores = np.where(scored, anomaly_score(np.where(scored, matrix, 1.0), threshold), np.nan)
        firing, onset = simulate_alerts(scores, rule)
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
    )
