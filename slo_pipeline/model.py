"""A detector's model: IsolationForest + the feature spec it was trained on + its calibration.

The forest is a plain scikit-learn estimator (so MLflow's sklearn flavour stores and serves it);
the feature windows and the calibration travel with it as MLflow model metadata, so a registered
version is self-contained: the exporter needs nothing but `models:/<detector>/<version>`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.ensemble import IsolationForest

from slo_pipeline.calibration import TailCalibration
from slo_pipeline.features import FEATURE_NAMES, latest_features
from slo_pipeline.settings import FeatureWindows

METADATA_VERSION = 1


@dataclass(frozen=True)
class DetectorModel:
    forest: IsolationForest
    windows: FeatureWindows
    calibration: TailCalibration
    feature_names: tuple[str, ...] = FEATURE_NAMES

    def raw_scores(self, rows: np.ndarray) -> np.ndarray:
        """Higher = more anomalous. `rows[M, F]` must be finite."""
        if len(rows) == 0:
            return np.empty(0)
        return -self.forest.score_samples(rows)

    def tail_probability(self, rows: np.ndarray) -> np.ndarray:
        """Calibrated P(score >= observed) under normal data, per row; NaN rows give NaN."""
        rows = np.asarray(rows, dtype=np.float64)
        result = np.full(len(rows), np.nan)
        finite = np.isfinite(rows).all(axis=1)
        if finite.any():
            result[finite] = self.calibration.tail_probability(self.raw_scores(rows[finite]))
        return result

    def score_latest(self, values: np.ndarray) -> np.ndarray:
        """Tail probability of the last sample of every series in `values[T, N]`; NaN = unscorable."""
        return self.tail_probability(latest_features(values, self.windows))

    def metadata(self) -> dict[str, Any]:
        return {
            "slo_pipeline_metadata_version": METADATA_VERSION,
            "feature_names": list(self.feature_names),
            "windows": self.windows.model_dump(),
            "calibration": self.calibration.to_dict(),
        }

    @classmethod
    def from_parts(cls, forest: Any, metadata: dict[str, Any] | None) -> DetectorModel:
        """Rebuild from a loaded sklearn estimator and its MLflow metadata; checks both."""
        if not isinstance(forest, IsolationForest):
            raise ValueError(f"expected an IsolationForest, got {type(forest).__name__}")
        if not metadata or metadata.get("slo_pipeline_metadata_version") != METADATA_VERSION:
            raise ValueError("model metadata is missing or from an incompatible version")
        names = tuple(metadata.get("feature_names", ()))
        if names != FEATURE_NAMES:
            raise ValueError(f"model was trained on features {names}, this code builds {FEATURE_NAMES}")
        return cls(
            forest=forest,
            windows=FeatureWindows.model_validate(metadata["windows"]),
            calibration=TailCalibration.from_dict(metadata["calibration"]),
            feature_names=names,
        )
