"""A detector's model: IsolationForest + robust z + the feature spec + calibrations + threshold.

Scoring, per series and sample:

1. features (features.py) -> the forest's raw score -> calibrated per-sample tail probability;
   optionally combined with a robust z-score's (univariate size: "this feature is further out
   than ever") by the Bonferroni bound `min(1, 2 * min(p_forest, p_z))`, valid whatever their
   dependence;
2. evidence: the mean of -log p over the last `windows.evidence` samples (evidence.py), itself
   calibrated, gives the published `anomaly_tail_probability`;
3. the threshold p* for a budget of false alarms per week uses the onset factor measured at
   training time (alarm_threshold), and `anomaly_score = log p / log p*`.

The forest is a plain scikit-learn estimator (so MLflow's sklearn flavour stores and serves it);
everything else travels as MLflow model metadata (JSON, a few KB), so a registered version is
self-contained: the exporter needs nothing but `models:/<detector>/<version>`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.ensemble import IsolationForest

from slo_pipeline.core.calibration import TailCalibration, anomaly_score
from slo_pipeline.core.evidence import accumulate
from slo_pipeline.core.features import (
    COHERENCE_FEATURE,
    FEATURE_NAMES,
    feature_names,
    history_rows_needed,
    trailing_features,
)
from slo_pipeline.core.robust_z import RobustZ
from slo_pipeline.settings import FeatureWindows

METADATA_VERSION = 2
SECONDS_PER_WEEK = 7 * 24 * 3600
# The highest per-sample threshold a budget may translate to; above it "anomalous" means little.
MAX_THRESHOLD = 0.5


@dataclass(frozen=True)
class DetectorModel:
    forest: IsolationForest
    windows: FeatureWindows
    calibration: TailCalibration  # of the forest's raw score
    feature_names: tuple[str, ...] = FEATURE_NAMES
    # Fitted on the training features; explains anomalies, and joins the score when combine_z.
    robust_z: RobustZ | None = None
    combine_z: bool = False
    # Calibration of the accumulated evidence; None = the per-sample probability is published.
    evidence: TailCalibration | None = None
    # Alert onsets per exceeding sample on the training data (calibration.onset_factor);
    # 1.0 = every exceeding sample counts as an alarm (the conservative v1 reading).
    onset_factor: float = 1.0
    # Operator feedback: series key -> factor by which that series' threshold is tightened
    # (p* / factor) after false positives. Absent keys use the detector's threshold.
    series_threshold_factors: Mapping[str, float] = field(default_factory=dict)
    # SLI names of a multivariate detector (values are [T, N, K], K = len(signals)); () = one
    # query, values [T, N].
    signals: tuple[str, ...] = ()

    def check_values(self, values: np.ndarray) -> np.ndarray:
        """`values` as float64, or a ValueError naming the expected layout (not a forest error)."""
        values = np.asarray(values, dtype=np.float64)
        if self.signals:
            if values.ndim != 3 or values.shape[2] != len(self.signals):
                raise ValueError(
                    f"this model scores {len(self.signals)} signals {self.signals}: values must be "
                    f"[time, series, {len(self.signals)}], got shape {values.shape}"
                )
        elif values.ndim != 2:
            raise ValueError(
                f"this model scores one signal: values must be [time, series], got {values.shape}"
            )
        return values

    def raw_scores(self, rows: np.ndarray) -> np.ndarray:
        """The forest's raw score, higher = more anomalous. `rows[M, F]` must be finite."""
        if len(rows) == 0:
            return np.empty(0)
        scores: np.ndarray = -self.forest.score_samples(rows)
        return scores

    def sample_tail_probability(self, rows: np.ndarray) -> np.ndarray:
        """Per-sample calibrated P(score >= observed) under normal data; NaN rows give NaN.

        This is step 1 only (no evidence over time); the published probability is
        `feature_tail_probability` / `score_latest`.
        """
        rows = np.asarray(rows, dtype=np.float64)
        if rows.ndim != 2:
            raise ValueError(f"rows must be [samples, features], got shape {rows.shape}")
        result = np.full(len(rows), np.nan)
        finite = np.isfinite(rows).all(axis=1)
        if finite.any():
            good = rows[finite]
            result[finite] = self.probability_of_raw_scores(self.raw_scores(good), good)
        return result

    def probability_of_raw_scores(self, raw: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """`sample_tail_probability` of finite `rows[M, F]` whose forest scores `raw[M]` the caller
        already has (training scores its calibration rows once for both uses: ~1 s at 1,000 series)."""
        p = self.calibration.tail_probability(raw)
        if self.combine_z and self.robust_z is not None:
            p = np.minimum(1.0, 2.0 * np.minimum(p, self.robust_z.tail_probability(rows)))
        return p

    def feature_tail_probability(self, features: np.ndarray) -> np.ndarray:
        """Published tail probabilities for a time-ordered `[T, N, F]` block: `[T, N]`.

        The first `windows.evidence - 1` rows accumulate over fewer samples than in production;
        pass a few extra leading rows when that matters.
        """
        t, n, f = features.shape
        p = self.sample_tail_probability(features.reshape(t * n, f)).reshape(t, n)
        return self.evidence_probability(p)

    def evidence_probability(self, sample_probabilities: np.ndarray) -> np.ndarray:
        """Step 2: per-sample `p[T, N]` -> published `[T, N]` (identity without evidence stage)."""
        if self.evidence is None:
            return np.asarray(sample_probabilities, dtype=np.float64)
        return self.evidence.tail_probability(accumulate(sample_probabilities, self.windows.evidence))

    @property
    def scoring_rows(self) -> int:
        """Trailing samples `score_latest` needs for exactly the values training saw."""
        return history_rows_needed(self.windows, self.windows.evidence)

    def score_latest(self, values: np.ndarray) -> np.ndarray:
        """Tail probability of the last sample of every series in `values[T, N]`; NaN = unscorable."""
        rows = self.windows.evidence if self.evidence is not None else 1
        features = trailing_features(self.check_values(values), self.windows, rows)
        latest: np.ndarray = self.feature_tail_probability(features)[-1]
        return latest

    def alarm_threshold(self, false_alarms_per_week: float, step_seconds: float) -> float:
        """Per-sample tail probability p* at which normal data raises `false_alarms_per_week`
        alert onsets under the alert rule the model was trained for."""
        if false_alarms_per_week <= 0 or step_seconds <= 0:
            raise ValueError(
                f"need a positive budget and step, got {false_alarms_per_week} per week at {step_seconds}s"
            )
        samples_per_week = SECONDS_PER_WEEK / step_seconds
        return min(MAX_THRESHOLD, false_alarms_per_week / (samples_per_week * self.onset_factor))

    def anomaly_scores(
        self, tail_probabilities: np.ndarray, threshold: float, series_keys: Sequence[str] | None = None
    ) -> np.ndarray:
        """`anomaly_score` per series, with per-series feedback thresholds when keys are given."""
        p = np.asarray(tail_probabilities, dtype=np.float64)
        if series_keys is None or not self.series_threshold_factors:
            return anomaly_score(p, threshold)
        if len(series_keys) != p.shape[-1]:
            raise ValueError(f"{len(series_keys)} series keys for probabilities of shape {p.shape}")
        factors = np.array([self.series_threshold_factors.get(key, 1.0) for key in series_keys])
        # Tightening p* by a factor f: score = log p / log(p* / f).
        return np.log(np.clip(p, 1e-300, 1.0)) / np.log(threshold / factors)

    def explain(self, rows: np.ndarray) -> list[str | None]:
        """Name of the feature that drove each row: the largest robust |z| (None if unscorable)."""
        rows = np.asarray(rows, dtype=np.float64)
        if self.robust_z is None:
            raise ValueError("this model has no robust-z signal to explain anomalies with")
        z = np.abs(self.robust_z.z(rows))
        names: list[str | None] = []
        for row in z:
            names.append(self._driver_name(row) if np.isfinite(row).all() else None)
        return names

    def _driver_name(self, z: np.ndarray) -> str:
        top = int(np.argmax(z))
        name = self.feature_names[top]
        if not (self.signals and name.endswith(f":{COHERENCE_FEATURE}")):
            return name
        # A correlation break moves every signal's coherence feature (with two signals they are
        # exact opposites), so it is blamed on the signal whose own level moved most.
        levels = [self.feature_names.index(f"{signal}:{FEATURE_NAMES[0]}") for signal in self.signals]
        moved = self.signals[int(np.argmax(z[levels]))]
        return f"{moved}:{COHERENCE_FEATURE}"

    def explain_latest(self, values: np.ndarray) -> list[str | None]:
        """`explain` for the last sample of every series in `values[T, N]` (the exporter's view)."""
        return self.explain(trailing_features(self.check_values(values), self.windows)[-1])

    def metadata(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "slo_pipeline_metadata_version": METADATA_VERSION,
            "feature_names": list(self.feature_names),
            "windows": self.windows.model_dump(),
            "calibration": self.calibration.to_dict(),
            "onset_factor": float(f"{self.onset_factor:.6g}"),
        }
        if self.signals:
            data["signals"] = list(self.signals)
        if self.robust_z is not None:
            data["robust_z"] = self.robust_z.to_dict()
            data["combine_z"] = self.combine_z
        if self.evidence is not None:
            data["evidence"] = self.evidence.to_dict()
        if self.series_threshold_factors:
            data["series_threshold_factors"] = {
                key: float(f"{value:.6g}") for key, value in sorted(self.series_threshold_factors.items())
            }
        return data

    @classmethod
    def from_parts(cls, forest: Any, metadata: dict[str, Any] | None) -> DetectorModel:
        """Rebuild from a loaded sklearn estimator and its MLflow metadata; checks both."""
        if not isinstance(forest, IsolationForest):
            raise ValueError(f"expected an IsolationForest, got {type(forest).__name__}")
        if not metadata or metadata.get("slo_pipeline_metadata_version") != METADATA_VERSION:
            found = None if not metadata else metadata.get("slo_pipeline_metadata_version")
            raise ValueError(
                f"model metadata is missing or from an incompatible version "
                f"(found {found!r}, this code reads {METADATA_VERSION})"
            )
        # Models trained before the distribution-shift features existed have no `shift` in
        # their windows: they keep scoring with the features they were trained on (explicit, so a
        # later change of the default cannot move them).
        windows = FeatureWindows.model_validate({"shift": False, **metadata["windows"]})
        signals = tuple(str(s) for s in metadata.get("signals") or ())
        names = tuple(metadata.get("feature_names", ()))
        if names != feature_names(windows, signals):
            raise ValueError(
                f"model was trained on features {names}, this code builds {feature_names(windows, signals)}"
            )
        if getattr(forest, "n_features_in_", len(names)) != len(names):
            raise ValueError(f"forest expects {forest.n_features_in_} features, metadata names {len(names)}")
        onset = float(metadata.get("onset_factor", 1.0))
        if not (math.isfinite(onset) and 0.0 < onset <= 1.0):
            raise ValueError(f"onset_factor must be in (0, 1], got {onset}")
        robust = metadata.get("robust_z")
        evidence = metadata.get("evidence")
        factors = metadata.get("series_threshold_factors") or {}
        return cls(
            forest=forest,
            windows=windows,
            calibration=TailCalibration.from_dict(metadata["calibration"]),
            feature_names=names,
            robust_z=None if robust is None else RobustZ.from_dict(robust),
            combine_z=bool(metadata.get("combine_z", False)),
            evidence=None if evidence is None else TailCalibration.from_dict(evidence),
            onset_factor=onset,
            series_threshold_factors={str(k): float(v) for k, v in factors.items()},
            signals=signals,
        )
