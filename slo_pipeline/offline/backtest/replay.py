"""Walk-forward replay: score a history the way production would have, never looking ahead.

The first model is trained on the first `initial_rows` only (NAB's probationary period); after
that the worker's schedule is replayed: every `retrain_every_rows` a new model is fitted on the
past `history_rows` rows (the detector's training window) and scores the rows that follow until
the next retrain. Features are computed once over the whole history, which is equivalent to
computing them row by row because every feature is causal (tested).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from slo_pipeline.core.alert_sim import AlertRule
from slo_pipeline.core.features import compute_features
from slo_pipeline.core.model import DetectorModel
from slo_pipeline.core.scorability import GAP_IN_WINDOW, NO_LATEST_SAMPLE, TOO_LITTLE_HISTORY
from slo_pipeline.core.training import InsufficientDataError, fit_detector_model
from slo_pipeline.core.window_stats import long_min_periods
from slo_pipeline.settings import DetectorConfig, FeatureWindows

LOG = logging.getLogger(__name__)

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class ReplayPlan:
    initial_rows: int
    retrain_every_rows: int
    history_rows: int
    # While no model could be trained yet (too little data), try again this often.
    retry_rows: int

    def __post_init__(self) -> None:
        if min(self.initial_rows, self.retrain_every_rows, self.history_rows, self.retry_rows) < 1:
            raise ValueError(f"every replay interval must be >= 1 row, got {self}")


@dataclass(frozen=True)
class ReplayResult:
    tail_probability: np.ndarray  # [T, N], NaN where no model or features were available
    anomaly_score: np.ndarray  # [T, N], each row at the threshold of the model that scored it
    models_trained: int
    last_model: DetectorModel | None
    # [T, N] the feature that drove each anomalous row (anomaly_score >= 1), as the exporter's
    # anomaly_driver_info names it; "" elsewhere.
    driver: np.ndarray | None = None
    # First row a model scored (None: no model could ever be trained), and why none could be
    # trained before it (the last InsufficientDataError's message; "" if the first try worked).
    first_model_row: int | None = None
    no_model_reason: str = ""

    def unscored_reasons(self, values: np.ndarray, windows: FeatureWindows) -> np.ndarray:
        """`[T, N]` why each row has no score (scorability vocabulary), "" where it has one."""
        values = np.asarray(values, dtype=np.float64)
        reasons = np.full(self.tail_probability.shape, "", dtype=object)
        unscored = np.isnan(self.tail_probability)
        missing = ~np.isfinite(values) if values.ndim == 2 else ~np.isfinite(values).all(axis=2)
        reasons[unscored] = GAP_IN_WINDOW
        reasons[unscored & missing] = NO_LATEST_SAMPLE
        before_model = len(values) if self.first_model_row is None else self.first_model_row
        reasons[:before_model] = TOO_LITTLE_HISTORY
        # Rows whose long window is still filling are warm-up, whatever the model.
        reasons[unscored & _warming_up(missing, windows)] = TOO_LITTLE_HISTORY
        return reasons


def plan_for(detector: DetectorConfig, n_rows: int, initial_rows: int) -> ReplayPlan:
    """The worker's schedule for this detector: daily retrains on its training window."""
    day = max(1, round(24 * 3600 / detector.step_seconds))
    return ReplayPlan(
        initial_rows=max(1, min(initial_rows, n_rows)),
        retrain_every_rows=day,
        history_rows=max(1, detector.effective_training_window_seconds // detector.step_seconds),
        retry_rows=max(1, round(3600 / detector.step_seconds)),
    )


def replay(
    values: np.ndarray,
    detector: DetectorConfig,
    plan: ReplayPlan,
    *,
    seed: int = 0,
    rule: AlertRule | None = None,
    exclude: np.ndarray | None = None,
    progress: Progress | None = None,
) -> ReplayResult:
    """Tail probabilities for every row of `values[T, N]` (or `[T, N, K]` for a detector with K
    signals), each from a model trained on its past.

    `exclude[T, N]` marks rows the worker must not train on (e.g. incidents confirmed by
    operators); it never hides rows from scoring.
    """
    values = np.asarray(values, dtype=np.float64)
    expected = 3 if detector.signals else 2
    if values.ndim != expected:
        layout = "[time, series, signal]" if detector.signals else "[time, series]"
        raise ValueError(f"values must be {layout}, got shape {values.shape}")
    n_rows = values.shape[0]
    # Features once per distinct window set (a model may add a seasonal baseline), not per model.
    features_by_windows = {detector.windows: compute_features(values, detector.windows)}
    probability = np.full(values.shape[:2], np.nan)
    score = np.full(values.shape[:2], np.nan)
    driver = np.full(values.shape[:2], "", dtype=object)
    model: DetectorModel | None = None
    trained = 0
    first_model_row: int | None = None
    no_model_reason = ""
    cut = plan.initial_rows
    while cut < n_rows:
        start = max(0, cut - plan.history_rows)
        try:
            model, _ = fit_detector_model(
                values[start:cut],
                detector,
                seed=seed,
                exclude=None if exclude is None else exclude[start:cut],
                rule=rule,
            )
            trained += 1
            if first_model_row is None:
                first_model_row = cut
        except InsufficientDataError as err:
            LOG.debug("no new model at row %d: %s", cut, err)
            if model is None:
                no_model_reason = str(err)
        following = cut + (plan.retrain_every_rows if model is not None else plan.retry_rows)
        end = min(n_rows, following)
        if model is not None:
            if model.windows not in features_by_windows:
                features_by_windows[model.windows] = compute_features(values, model.windows)
            features = features_by_windows[model.windows]
            # The evidence window reaches back before `cut`, as it would in production.
            context = min(cut, model.windows.evidence - 1)
            block = model.feature_tail_probability(features[cut - context : end])
            probability[cut:end] = block[context:]
            threshold = model.alarm_threshold(detector.false_alarms_per_week, detector.step_seconds)
            score[cut:end] = model.anomaly_scores(block[context:], threshold)
            _explain_anomalies(model, features[cut:end], score[cut:end], driver[cut:end])
        if progress is not None:
            progress(end, n_rows)
        cut = end
    return ReplayResult(
        tail_probability=probability,
        anomaly_score=score,
        models_trained=trained,
        last_model=model,
        driver=driver,
        first_model_row=first_model_row,
        no_model_reason=no_model_reason,
    )


def _warming_up(missing: np.ndarray, windows: FeatureWindows) -> np.ndarray:
    """`[T, N]` rows whose long window holds fewer finite samples than its warm-up needs."""
    present = np.cumsum(~missing, axis=0)
    in_window = present - np.vstack([np.zeros((windows.long, missing.shape[1])), present])[: len(present)]
    return in_window < long_min_periods(windows)


def _explain_anomalies(
    model: DetectorModel, features: np.ndarray, score: np.ndarray, out: np.ndarray
) -> None:
    """Fill `out[T, N]` with the driver of every anomalous cell (the exporter's rule: score >= 1)."""
    if model.robust_z is None:
        return
    rows, columns = np.nonzero(np.nan_to_num(score, nan=0.0) >= 1.0)
    if len(rows):
        out[rows, columns] = [name or "" for name in model.explain(features[rows, columns])]
