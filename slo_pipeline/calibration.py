"""Map raw IsolationForest scores to calibrated tail probabilities.

`p(s) = P(S >= s)` for a score S drawn from held-out *normal* data. The body of the distribution
is an empirical CDF stored as a quantile grid; beyond the top `tail_fraction` of held-out scores
an exponential tail is fitted to the excesses (peaks over threshold), so probabilities far
smaller than 1/n are still ordered and finite instead of collapsing to one value. With this,
"alarm when p < 1 / samples-per-week" means "about one false alarm per week" on normal data.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_GRID_SIZE = 1001
_MIN_TAIL_POINTS = 10
MIN_PROBABILITY = 1e-12


@dataclass(frozen=True)
class TailCalibration:
    quantiles: np.ndarray  # score at each of the _GRID_SIZE evenly spaced CDF levels
    tail_start: float  # score where the exponential tail takes over
    tail_fraction: float  # P(S >= tail_start)
    tail_scale: float  # mean excess over tail_start (exponential scale)
    n_reference: int

    def tail_probability(self, scores: np.ndarray) -> np.ndarray:
        scores = np.asarray(scores, dtype=np.float64)
        levels = np.linspace(0.0, 1.0, len(self.quantiles))
        # Survival from the empirical body (interp needs increasing x; quantiles are sorted).
        body = 1.0 - np.interp(scores, self.quantiles, levels, left=0.0, right=1.0)
        tail = self.tail_fraction * np.exp(-(scores - self.tail_start) / self.tail_scale)
        probability = np.where(scores >= self.tail_start, tail, np.maximum(body, self.tail_fraction))
        probability = np.clip(probability, MIN_PROBABILITY, 1.0)
        return np.where(np.isfinite(scores), probability, np.nan)

    def to_dict(self) -> dict[str, object]:
        return {
            "quantiles": [float(q) for q in self.quantiles],
            "tail_start": self.tail_start,
            "tail_fraction": self.tail_fraction,
            "tail_scale": self.tail_scale,
            "n_reference": self.n_reference,
        }

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> TailCalibration:
        try:
            return cls(
                quantiles=np.asarray(data["quantiles"], dtype=np.float64),
                tail_start=float(data["tail_start"]),  # type: ignore[arg-type]
                tail_fraction=float(data["tail_fraction"]),  # type: ignore[arg-type]
                tail_scale=float(data["tail_scale"]),  # type: ignore[arg-type]
                n_reference=int(data["n_reference"]),  # type: ignore[call-overload]
            )
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"calibration metadata is incomplete or malformed: {err}") from err


def fit_calibration(reference_scores: np.ndarray, tail_fraction: float = 0.02) -> TailCalibration:
    """Fit on raw scores of held-out normal data (higher = more anomalous)."""
    scores = np.sort(np.asarray(reference_scores, dtype=np.float64))
    scores = scores[np.isfinite(scores)]
    n = len(scores)
    if n < 2 * _MIN_TAIL_POINTS:
        raise ValueError(f"need at least {2 * _MIN_TAIL_POINTS} reference scores, got {n}")
    k = max(_MIN_TAIL_POINTS, round(n * tail_fraction))
    tail_start = float(scores[n - k])
    excess = scores[n - k :] - tail_start
    # A degenerate tail (all equal) would divide by zero; any positive scale keeps ordering.
    tail_scale = float(max(excess.mean(), 1e-6))
    quantiles = np.quantile(scores, np.linspace(0.0, 1.0, _GRID_SIZE))
    return TailCalibration(
        quantiles=np.maximum.accumulate(quantiles),
        tail_start=tail_start,
        tail_fraction=k / n,
        tail_scale=tail_scale,
        n_reference=n,
    )


def anomaly_score(tail_probability: np.ndarray, threshold: float) -> np.ndarray:
    """`log p / log p*`: 0 for the most ordinary sample, exactly 1 at the threshold, > 1 beyond.

    A log ratio keeps the score readable on dashboards (2 means "as improbable as the threshold
    squared") where a plain ratio p*/p would explode to 1e9 during an outage.
    """
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must be in (0, 1), got {threshold}")
    p = np.clip(np.asarray(tail_probability, dtype=np.float64), MIN_PROBABILITY, 1.0)
    return np.log(p) / np.log(threshold)
