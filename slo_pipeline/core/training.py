"""Fit a detector model on a history matrix. Pure: no Prometheus, no MLflow, no files.

Everything is fitted and calibrated on the same (normal) training rows:

- the forest sees each row in only ~max_samples / rows of its trees, so its scores of training
  rows are practically out-of-sample (a 4-fold cross-fitted calibration gave the same NAB results
  and alarm rates, see docs/detection.md) and a time-ordered hold-out would only throw away the
  data the tail estimate needs most;
- the robust z has 2 numbers per feature and cannot overfit;
- the onset factor (alarms per exceeding sample) is measured on the training rows with the alert
  rule the model will be judged by, so the false-alarm budget means alarms, not samples.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace

import numpy as np
from sklearn.ensemble import IsolationForest

from slo_pipeline.core.alert_sim import AlertRule, simulate_alerts
from slo_pipeline.core.calibration import anomaly_score, fit_calibration, onset_factor
from slo_pipeline.core.evidence import accumulate
from slo_pipeline.core.features import (
    compute_features,
    excluded_from_robust_z,
    feature_names,
    min_robust_z_scale,
)
from slo_pipeline.core.feedback import oversampled_rows, threshold_factors
from slo_pipeline.core.model import DetectorModel
from slo_pipeline.core.robust_z import fit_robust_z
from slo_pipeline.core.seasonality import choose_seasonal_baseline
from slo_pipeline.settings import DetectorConfig, FeatureWindows

# The forest only ever looks at `max_samples` rows per tree; more rows than this buys nothing
# but memory, so larger histories are subsampled uniformly before fitting.
MAX_FIT_ROWS = 200_000
# Rows scored to calibrate (whole series, chosen at random): enough for a 1-in-10^4 tail.
MAX_CALIBRATION_ROWS = 100_000
# The rule the shipped `AnomalyDetected` alert implements at the default 60 s step
# (for: 2m, keep_firing_for: 15m); callers pass slo_pipeline.core.rule_timing's when they have it.
DEFAULT_ALERT_RULE = AlertRule(for_steps=2, keep_firing_steps=15)
# Exceedances counted for the onset factor: enough to count clusters, at a level as close to
# the real threshold as the data allows.
_ONSET_REFERENCE_EXCEEDANCES = 30
_ONSET_REFERENCE_MAX = 0.05


class InsufficientDataError(ValueError):
    """The history is too short or too sparse to train a trustworthy model."""


@dataclass(frozen=True)
class TrainingReport:
    n_series: int
    n_timestamps: int
    n_fit_rows: int
    n_calibration_rows: int
    calibration_alarm_rate: float  # share of training samples above the model's threshold p*
    expected_alarm_rate: float  # the model's per-sample threshold p*
    onset_factor: float  # alert onsets per exceeding sample (1 = no clustering)
    training_alarms_per_week: float  # alert onsets per week per series on the training data

    def as_metrics(self) -> dict[str, float]:
        return {key: float(value) for key, value in asdict(self).items()}


def fit_detector_model(
    values: np.ndarray,
    detector: DetectorConfig,
    seed: int = 0,
    *,
    exclude: np.ndarray | None = None,
    false_positive: np.ndarray | None = None,
    series_keys: Sequence[str] | None = None,
    rule: AlertRule | None = None,
) -> tuple[DetectorModel, TrainingReport]:
    """Train on `values[T, N]` (time-major, NaN = gap), or `values[T, N, K]` for a detector with
    K `signals` (each entity's SLIs scored as one vector).

    `exclude[T, N]` marks samples that must not count as normal (confirmed incidents, SLO
    breaches); their features are dropped from fitting and calibration. `false_positive[T, N]`
    marks samples of incidents operators called noise: they are oversampled as normal data and,
    given `series_keys` (one per column), tighten those series' thresholds (feedback.py).
    `rule` is the alert rule whose onsets the false-alarm budget counts.
    """
    values = _check_layout(values, detector)
    windows = training_windows(values, detector)
    features = compute_features(values, windows)
    exclude = _mask(exclude, values.shape[:2], "exclude")
    flagged = _mask(false_positive, values.shape[:2], "false_positive") & ~exclude
    features = np.where(exclude[..., None], np.nan, features)
    usable = np.isfinite(features).all(axis=-1)
    rows = features[usable]
    if len(rows) < detector.min_training_samples:
        raise InsufficientDataError(
            f"detector {detector.name!r}: {len(rows)} usable samples after feature warm-up, "
            f"need {detector.min_training_samples} (history of {values.shape[0]} steps x "
            f"{values.shape[1]} series; the long window alone is {windows.long} steps"
            + (f", the seasonal baseline {windows.seasonal_baseline}" if windows.seasonal_baseline else "")
            + ")"
        )
    rng = np.random.default_rng(seed)
    fit_rows = oversampled_rows(rows, flagged[usable])
    if len(fit_rows) > MAX_FIT_ROWS:
        fit_rows = fit_rows[rng.choice(len(fit_rows), MAX_FIT_ROWS, replace=False)]
    forest = IsolationForest(
        n_estimators=detector.n_estimators,
        max_samples=min(256, len(fit_rows)),
        random_state=seed,
        n_jobs=1,
    ).fit(fit_rows)
    # Calibration needs whole series (evidence and onsets are about runs in time), but not all
    # of them: a random subset keeps scoring cost bounded for thousands of series.
    n_calibration_series = max(1, min(values.shape[1], MAX_CALIBRATION_ROWS // max(1, values.shape[0])))
    series = np.sort(rng.choice(values.shape[1], n_calibration_series, replace=False))
    usable = usable[:, series]
    calibration_rows = features[:, series][usable]
    raw = -forest.score_samples(calibration_rows)
    names = feature_names(windows, detector.signal_names)
    in_statistic = np.array([not excluded_from_robust_z(name) for name in names])
    min_scale = np.array([min_robust_z_scale(name) for name in names])
    per_sample = DetectorModel(
        forest=forest,
        windows=windows,
        feature_names=names,
        calibration=fit_calibration(raw),
        robust_z=fit_robust_z(fit_rows, in_statistic=in_statistic, min_scale=min_scale),
        combine_z=detector.combine_robust_z,
        signals=detector.signal_names,
    )
    # Per-sample probabilities laid out in time for the evidence stage and the onset count.
    p = np.full(usable.shape, np.nan)
    p[usable] = per_sample.probability_of_raw_scores(raw, calibration_rows)
    evidence = None
    if windows.evidence > 1:
        accumulated = accumulate(p, windows.evidence)
        evidence = fit_calibration(accumulated[usable])
        p = np.where(usable, evidence.tail_probability(accumulated), np.nan)
    alert_rule = rule or DEFAULT_ALERT_RULE
    samples_per_week = 7 * 24 * 3600 / detector.step_seconds
    naive_threshold = detector.false_alarms_per_week / samples_per_week
    factor = onset_factor(p, alert_rule, _onset_reference(len(calibration_rows), naive_threshold))
    model = DetectorModel(
        forest=forest,
        windows=windows,
        feature_names=per_sample.feature_names,
        calibration=per_sample.calibration,
        robust_z=per_sample.robust_z,
        combine_z=detector.combine_robust_z,
        evidence=evidence,
        onset_factor=factor,
        signals=detector.signal_names,
    )
    threshold = model.alarm_threshold(detector.false_alarms_per_week, detector.step_seconds)
    if series_keys is not None and flagged.any():
        model = _with_feedback_thresholds(model, features, flagged, threshold, series_keys)
    _, onsets = _alerts(p, threshold, alert_rule)
    series_weeks = usable.shape[0] * usable.shape[1] / samples_per_week
    report = TrainingReport(
        n_series=values.shape[1],
        n_timestamps=values.shape[0],
        n_fit_rows=len(fit_rows),
        n_calibration_rows=len(calibration_rows),
        calibration_alarm_rate=float(np.mean(p[usable] < threshold)),
        expected_alarm_rate=threshold,
        onset_factor=factor,
        training_alarms_per_week=float(onsets.sum() / series_weeks) if series_weeks else float("nan"),
    )
    return model, report


def training_windows(values: np.ndarray, detector: DetectorConfig) -> FeatureWindows:
    """The detector's windows, plus a seasonal baseline when `seasonality: auto` finds a cycle in
    these training values (seasonality.py); the model keeps them, so scoring uses the same."""
    windows = detector.windows
    if detector.seasonality != "auto" or windows.seasonal_baseline:
        return windows
    lag = choose_seasonal_baseline(values, windows, detector.step_seconds)
    return windows.model_copy(update={"seasonal_baseline": lag}) if lag else windows


def _check_layout(values: np.ndarray, detector: DetectorConfig) -> np.ndarray:
    """`[T, N]` for a one-query detector, `[T, N, K]` with K = its signals for a multivariate one."""
    values = np.asarray(values, dtype=np.float64)
    expected = 3 if detector.signals else 2
    if values.ndim != expected or (detector.signals and values.shape[2] != len(detector.signals)):
        layout = f"[time, series, {len(detector.signals)}]" if detector.signals else "[time, series]"
        raise ValueError(f"detector {detector.name!r}: values must be {layout}, got shape {values.shape}")
    return values


def _mask(mask: np.ndarray | None, shape: tuple[int, ...], name: str) -> np.ndarray:
    if mask is None:
        return np.zeros(shape, dtype=bool)
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != shape:
        raise ValueError(f"{name} mask {mask.shape} does not match values {shape}")
    return mask


def _with_feedback_thresholds(
    model: DetectorModel, features: np.ndarray, flagged: np.ndarray, threshold: float, keys: Sequence[str]
) -> DetectorModel:
    if len(keys) != features.shape[1]:
        raise ValueError(f"{len(keys)} series keys for {features.shape[1]} series")
    series = np.flatnonzero(flagged.any(axis=0))
    p = model.feature_tail_probability(features[:, series])
    factors = threshold_factors(p, flagged[:, series], threshold, [keys[k] for k in series.tolist()])
    return replace(model, series_threshold_factors=factors)


def _onset_reference(n_rows: int, naive_threshold: float) -> float:
    """Level at which onsets per exceedance are counted: near the threshold, but with ~30
    exceedances to count (never above 5 %, where clusters are unlike the tail's)."""
    reference = min(_ONSET_REFERENCE_EXCEEDANCES / max(n_rows, 1), _ONSET_REFERENCE_MAX)
    return max(reference, naive_threshold)


def _alerts(p: np.ndarray, threshold: float, rule: AlertRule) -> tuple[np.ndarray, np.ndarray]:
    return simulate_alerts(anomaly_score(np.nan_to_num(p, nan=1.0), threshold), rule)
