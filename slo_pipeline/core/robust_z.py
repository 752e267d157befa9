"""The complementary signal next to the IsolationForest: a robust z-score over the features.

Each feature is centred and scaled by its median and inter-quartile range on the training rows;
the statistic of a row is its largest absolute z. Unlike the forest, whose score saturates once
a point is outside everything it saw (every such point is isolated at the same depth), this
statistic keeps growing with the deviation, and its exponential tail keeps ordering such points.
It also names the feature that drove it, which is the explanation attached to an anomaly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from slo_pipeline.core.calibration import TailCalibration, fit_calibration

# A feature that never moves in training (IQR 0) still needs a finite scale; in signed-log
# units 0.05 is a 5 % deviation of the underlying ratio, small but not noise.
_MIN_SCALE = 0.05
_IQR_TO_SIGMA = 1.349


@dataclass(frozen=True)
class RobustZ:
    center: np.ndarray  # [F] per-feature median on the training rows
    scale: np.ndarray  # [F] per-feature IQR / 1.349 (floored)
    calibration: TailCalibration  # of the max-|z| statistic on the training rows

    def z(self, rows: np.ndarray) -> np.ndarray:
        """Per-feature robust z of `rows[M, F]`."""
        z: np.ndarray = (np.asarray(rows, dtype=np.float64) - self.center) / self.scale
        return z

    def statistic(self, rows: np.ndarray) -> np.ndarray:
        return _max_abs_z(rows, self.center, self.scale)

    def tail_probability(self, rows: np.ndarray) -> np.ndarray:
        return self.calibration.tail_probability(self.statistic(rows))

    def to_dict(self) -> dict[str, object]:
        return {
            "center": [float(f"{c:.7g}") for c in self.center],
            "scale": [float(f"{s:.7g}") for s in self.scale],
            "calibration": self.calibration.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> RobustZ:
        try:
            center = np.asarray(data["center"], dtype=np.float64)
            scale = np.asarray(data["scale"], dtype=np.float64)
            calibration = TailCalibration.from_dict(data["calibration"])  # type: ignore[arg-type]
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"robust-z metadata is incomplete or malformed: {err}") from err
        if center.shape != scale.shape or center.ndim != 1:
            raise ValueError(f"robust-z center {center.shape} and scale {scale.shape} must be equal 1-D")
        return cls(center=center, scale=scale, calibration=calibration)


def fit_robust_z(rows: np.ndarray) -> RobustZ:
    """Fit on finite training rows `[M, F]` and calibrate the statistic on the same rows.

    In-sample calibration is sound here: 2 F numbers (medians, IQRs) cannot overfit thousands of
    rows, so in-sample and out-of-sample statistics have the same distribution.
    """
    rows = np.asarray(rows, dtype=np.float64)
    if rows.ndim != 2 or len(rows) == 0:
        raise ValueError(f"need a non-empty [rows, features] matrix, got shape {rows.shape}")
    center = np.median(rows, axis=0)
    q1, q3 = np.quantile(rows, [0.25, 0.75], axis=0)
    scale = np.maximum((q3 - q1) / _IQR_TO_SIGMA, _MIN_SCALE)
    calibration = fit_calibration(_max_abs_z(rows, center, scale))
    return RobustZ(center=center, scale=scale, calibration=calibration)


def _max_abs_z(rows: np.ndarray, center: np.ndarray, scale: np.ndarray) -> np.ndarray:
    rows = np.asarray(rows, dtype=np.float64)
    if len(rows) == 0:
        return np.empty(0)
    largest: np.ndarray = (np.abs(rows - center) / scale).max(axis=1)
    return largest
