"""Fit a detector model on a history matrix. Pure: no Prometheus, no MLflow, no files.

Time-ordered split: the forest is fitted on the older part and calibrated on the most recent
part it has never seen, so the calibrated tail probabilities are out-of-sample, as they will be
in production.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.ensemble import IsolationForest

from slo_pipeline.calibration import fit_calibration
from slo_pipeline.features import compute_features, training_rows
from slo_pipeline.model import DetectorModel
from slo_pipeline.settings import DetectorConfig

CALIBRATION_FRACTION = 0.25
# The forest only ever looks at `max_samples` rows per tree; more rows than this buys nothing
# but memory, so larger histories are subsampled uniformly before fitting.
MAX_FIT_ROWS = 200_000


class InsufficientDataError(ValueError):
    """The history is too short or too sparse to train a trustworthy model."""


@dataclass(frozen=True)
class TrainingReport:
    n_series: int
    n_timestamps: int
    n_fit_rows: int
    n_calibration_rows: int
    calibration_alarm_rate: float  # share of held-out rows whose p < the detector's threshold
    expected_alarm_rate: float  # the detector's per-sample false-alarm budget

    def as_metrics(self) -> dict[str, float]:
        return {key: float(value) for key, value in self.__dict__.items()}


def fit_detector_model(
    values: np.ndarray, detector: DetectorConfig, seed: int = 0
) -> tuple[DetectorModel, TrainingReport]:
    """Train on `values[T, N]` (time-major, NaN = gap)."""
    features = compute_features(values, detector.windows)
    rows, time_index = training_rows(features)
    if len(rows) < detector.min_training_samples:
        raise InsufficientDataError(
            f"detector {detector.name!r}: {len(rows)} usable samples after feature warm-up, "
            f"need {detector.min_training_samples} (history of {values.shape[0]} steps x "
            f"{values.shape[1]} series; the long window alone is {detector.windows.long} steps)"
        )
    split_time = np.quantile(time_index, 1.0 - CALIBRATION_FRACTION)
    fit_rows = rows[time_index < split_time]
    calibration_rows = rows[time_index >= split_time]
    rng = np.random.default_rng(seed)
    if len(fit_rows) > MAX_FIT_ROWS:
        fit_rows = fit_rows[rng.choice(len(fit_rows), MAX_FIT_ROWS, replace=False)]

    forest = IsolationForest(
        n_estimators=detector.n_estimators,
        max_samples=min(256, len(fit_rows)),
        random_state=seed,
        n_jobs=1,
    ).fit(fit_rows)
    calibration = fit_calibration(-forest.score_samples(calibration_rows))
    model = DetectorModel(forest=forest, windows=detector.windows, calibration=calibration)

    threshold = detector.tail_probability_threshold
    alarm_rate = float(np.mean(model.tail_probability(calibration_rows) < threshold))
    report = TrainingReport(
        n_series=values.shape[1],
        n_timestamps=values.shape[0],
        n_fit_rows=len(fit_rows),
        n_calibration_rows=len(calibration_rows),
        calibration_alarm_rate=alarm_rate,
        expected_alarm_rate=threshold,
    )
    return model, report
