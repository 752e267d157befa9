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
    # Features that enter the max-|z| statistic (None = all); every feature still has a z for
    # explanations. A bounded count feature that is 0 on almost every training row (the spike
    # density) has only the floored scale: its first nonzero values would set the statistic's
    # tail, and a 400-sigma outage then got p 0.004 instead of 1e-5 (tests/unit/test_exporter_cycle).
    in_statistic: np.ndarray | None = None

    def z(self, rows: np.ndarray) -> np.ndarray:
        """Per-feature robust z of `rows[M, F]`."""
        z: np.ndarray = (np.asarray(rows, dtype=np.float64) - self.center) / self.scale
        return z

    def statistic(self, rows: np.ndarray) -> np.ndarray:
        return _max_abs_z(rows, self.center, self.scale, self.in_statistic)

    def tail_probability(self, rows: np.ndarray) -> np.ndarray:
        return self.calibration.tail_probability(self.statistic(rows))

    def to_dict(self) -> dict[str, object]:
        data: dict[str, object] = {
            "center": [float(f"{c:.7g}") for c in self.center],
            "scale": [float(f"{s:.7g}") for s in self.scale],
            "calibration": self.calibration.to_dict(),
        }
        if self.in_statistic is not None:
            data["in_statistic"] = [bool(b) for b in self.in_statistic]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> RobustZ:
        try:
            center = np.asarray(data["center"], dtype=np.float64)
            scale = np.asarray(data["scale"], dtype=np.float64)
            calibration = TailCalibration.from_dict(data["calibration"])  # type: ignore[arg-type]
            mask = data.get("in_statistic")
            in_statistic = None if mask is None else np.asarray(mask, dtype=bool)
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"robust-z metadata is incomplete or malformed: {err}") from err
        if center.shape != scale.shape or center.ndim != 1:
            raise ValueError(f"robust-z center {center.shape} and scale {scale.shape} must be equal 1-D")
        if in_statistic is not None and (in_statistic.shape != center.shape or not in_statistic.any()):
            raise ValueError(f"robust-z in_statistic {in_statistic.shape} must match {center.shape}, 1+ true")
        return cls(center=center, scale=scale, calibration=calibration, in_statistic=in_statistic)


def fit_robust_z(
    rows: np.ndarray, in_statistic: np.ndarray | None = None, min_scale: np.ndarray | None = None
) -> RobustZ:
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
    if min_scale is not None:  # per-feature floors (features.min_robust_z_scale)
        scale = np.maximum(scale, min_scale)
    mask = None if in_statistic is None or np.all(in_statistic) else np.asarray(in_statistic, dtype=bool)
    calibration = fit_calibration(_max_abs_z(rows, center, scale, mask))
    return RobustZ(center=center, scale=scale, calibration=calibration, in_statistic=mask)


def _max_abs_z(
    rows: np.ndarray, center: np.ndarray, scale: np.ndarray, in_statistic: np.ndarray | None = None
) -> np.ndarray:
    rows = np.asarray(rows, dtype=np.float64)
    if len(rows) == 0:
        return np.empty(0)
    z = np.abs(rows - center) / scale
    largest: np.ndarray = (z if in_statistic is None else z[:, in_statistic]).max(axis=1)
    return largest
