"""Map raw anomaly scores to calibrated tail probabilities.

`p(s) = P(S >= s)` for a score S drawn from reference *normal* data. The body of the distribution
is an empirical survival function stored on a compact grid that is dense in the upper tail (the
only part alarms care about); beyond the top `tail_fraction` of reference scores an exponential
tail is fitted to the excesses (peaks over threshold), so probabilities far smaller than 1/n are
still ordered and finite instead of collapsing to one value. With this, "alarm when
p < 1 / samples-per-week" means "about one exceedance per week" on normal data.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from slo_pipeline.core.alert_sim import AlertRule, simulate_alerts

# Survival levels stored per calibration: geometric between 1 and the tail start, so the grid
# resolves p = 0.5 and p = 0.03 equally well in relative terms and stays a few hundred bytes.
_GRID_SIZE = 48
_MIN_TAIL_POINTS = 10
MIN_PROBABILITY = 1e-12
# Stored scores are rounded to this many significant digits: metadata stays small, and
# differences below it are far inside the forest's own randomness.
_SIGNIFICANT_DIGITS = 7
# Lower bound of the onset factor: one alarm per 100 exceeding samples at most, so p* never
# moves more than 100x away from the naive per-sample budget on the strength of one fit.
MIN_ONSET_FACTOR = 0.01


@dataclass(frozen=True)
class TailCalibration:
    quantiles: np.ndarray  # score at each level of `levels` (non-decreasing)
    tail_start: float  # score where the exponential tail takes over
    tail_fraction: float  # P(S >= tail_start)
    tail_scale: float  # mean excess over tail_start (exponential scale)
    n_reference: int
    levels: np.ndarray | None = None  # CDF levels of `quantiles`; None = evenly spaced (v1 layout)

    def tail_probability(self, scores: np.ndarray) -> np.ndarray:
        scores = np.asarray(scores, dtype=np.float64)
        levels = self.levels if self.levels is not None else np.linspace(0.0, 1.0, len(self.quantiles))
        # Survival from the empirical body (interp needs increasing x; quantiles are sorted).
        body = 1.0 - np.interp(scores, self.quantiles, levels, left=0.0, right=1.0)
        with np.errstate(over="ignore", invalid="ignore"):
            excess = np.maximum(scores - self.tail_start, 0.0)
            tail = self.tail_fraction * np.exp(-excess / self.tail_scale)
        probability = np.where(scores >= self.tail_start, tail, np.maximum(body, self.tail_fraction))
        probability = np.clip(probability, MIN_PROBABILITY, 1.0)
        return np.where(np.isfinite(scores), probability, np.nan)

    def to_dict(self) -> dict[str, object]:
        data: dict[str, object] = {
            "quantiles": [_round(q) for q in self.quantiles],
            "tail_start": _round(self.tail_start),
            "tail_fraction": _round(self.tail_fraction),
            "tail_scale": _round(self.tail_scale),
            "n_reference": self.n_reference,
        }
        if self.levels is not None:
            data["levels"] = [_round(level) for level in self.levels]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> TailCalibration:
        try:
            levels = data.get("levels")
            quantiles = np.asarray(data["quantiles"], dtype=np.float64)
            calibration = cls(
                quantiles=quantiles,
                tail_start=float(data["tail_start"]),  # type: ignore[arg-type]
                tail_fraction=float(data["tail_fraction"]),  # type: ignore[arg-type]
                tail_scale=float(data["tail_scale"]),  # type: ignore[arg-type]
                n_reference=int(data["n_reference"]),  # type: ignore[call-overload]
                levels=None if levels is None else np.asarray(levels, dtype=np.float64),
            )
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"calibration metadata is incomplete or malformed: {err}") from err
        if calibration.levels is not None and len(calibration.levels) != len(quantiles):
            raise ValueError(
                f"calibration metadata has {len(quantiles)} quantiles but {len(calibration.levels)} levels"
            )
        return calibration


def fit_calibration(reference_scores: np.ndarray, tail_fraction: float = 0.02) -> TailCalibration:
    """Fit on raw scores of reference normal data (higher = more anomalous)."""
    scores = np.sort(np.asarray(reference_scores, dtype=np.float64).ravel())
    scores = scores[np.isfinite(scores)]
    n = len(scores)
    if n < 2 * _MIN_TAIL_POINTS:
        raise ValueError(f"need at least {2 * _MIN_TAIL_POINTS} reference scores, got {n}")
    k = max(_MIN_TAIL_POINTS, round(n * tail_fraction))
    tail_start = float(scores[n - k])
    excess = scores[n - k :] - tail_start
    # A degenerate tail (all equal) would divide by zero; any positive scale keeps ordering.
    tail_scale = float(max(excess.mean(), 1e-6))
    survival = np.geomspace(1.0, k / n, _GRID_SIZE)
    levels = np.concatenate([[0.0], 1.0 - survival[1:]])
    quantiles = np.quantile(scores, levels)
    return TailCalibration(
        quantiles=np.maximum.accumulate(quantiles),
        tail_start=tail_start,
        tail_fraction=k / n,
        tail_scale=tail_scale,
        n_reference=n,
        levels=levels,
    )


def anomaly_score(tail_probability: np.ndarray, threshold: float) -> np.ndarray:
    """`log p / log p*`: 0 for the most ordinary sample, exactly 1 at the threshold, > 1 beyond.

    A log ratio keeps the score readable on dashboards (2 means "as improbable as the threshold
    squared") where a plain ratio p*/p would explode to 1e9 during an outage.
    """
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must be in (0, 1), got {threshold}")
    p = np.clip(np.asarray(tail_probability, dtype=np.float64), MIN_PROBABILITY, 1.0)
    scores: np.ndarray = np.log(p) / np.log(threshold)
    return scores


def _round(value: float) -> float:
    return float(f"{float(value):.{_SIGNIFICANT_DIGITS}g}")


def onset_factor(tail_probabilities: np.ndarray, rule: AlertRule, reference_probability: float) -> float:
    """Alert onsets per exceeding sample at `reference_probability` (the extremal index).

    Anomaly scores are autocorrelated (features share trailing windows), so exceedances come in
    clusters and the alert rule (`for`, `keep_firing_for`) turns each cluster into at most one
    alarm. Measuring that ratio on training data converts a budget in *alarms* per week into a
    per-sample threshold: p* = budget / (samples per week * factor). Measured at a level with
    enough exceedances to count; clusters only get shorter further out, so the factor is, if
    anything, underestimated there, making p* err towards more alarms rather than silence.

    The estimate is (onsets + 1) / exceedances, not onsets / exceedances. At the reference level
    ~30 exceedances hold only ~3 onsets, and p* is proportional to 1 / factor, so the plain
    ratio's noise alone raised the expected alarm rate by E[1/onsets] * mean(onsets) ~ 1.4x (one
    long cluster among the 30 exceedances made the factor 1/30 and p* 4x too loose). For a
    Poisson count X with mean m, E[1 / (X + 1)] = (1 - exp(-m)) / m ~ 1 / m; measured on the
    simulated service the realised rate went from 1.38 to 0.88 alarms per series-week at a
    budget of 1 (docs/detection.md). With many series the reference holds hundreds of onsets and
    the +1 vanishes.
    """
    p = np.asarray(tail_probabilities, dtype=np.float64)
    if p.ndim == 1:
        p = p[:, None]
    exceeding = int(np.sum(np.nan_to_num(p, nan=1.0) < reference_probability))
    if exceeding == 0:
        return 1.0
    # NaN (unscorable) is a false evaluation, as an absent series is for Prometheus.
    scores = anomaly_score(np.nan_to_num(p, nan=1.0), reference_probability)
    _, onsets = simulate_alerts(scores, rule)
    return float(np.clip((int(onsets.sum()) + 1) / exceeding, MIN_ONSET_FACTOR, 1.0))
