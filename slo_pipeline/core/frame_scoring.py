"""Score a long-format history (series, timestamp, value) causally, one answer per input row.

The MLflow pyfunc (`mlflow models serve`) and any batch caller get exactly what the exporter
would have published at each row's timestamp: every row is scored with the history up to and
including it, on the model's step grid, with absent samples as gaps (NaN), as Prometheus'
`query_range` hands them to the exporter. Rows with too little history get NaN (null in JSON).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from slo_pipeline.core.features import compute_features
from slo_pipeline.core.model import DetectorModel

# A request spanning more grid steps than this per series is refused: one row with a timestamp
# far in the future would otherwise allocate a grid of billions of cells.
MAX_GRID_ROWS_PER_SERIES = 200_000


@dataclass(frozen=True)
class ServingParams:
    """What the exporter takes from the detector's configuration, frozen at training time."""

    step_seconds: int
    false_alarms_per_week: float

    def __post_init__(self) -> None:
        if self.step_seconds < 1 or not (self.false_alarms_per_week > 0):
            raise ValueError(
                f"need step_seconds >= 1 and false_alarms_per_week > 0, got {self.step_seconds}, "
                f"{self.false_alarms_per_week}"
            )


@dataclass(frozen=True)
class RowScores:
    anomaly_score: np.ndarray  # [rows], input order, NaN = not scorable
    anomaly_tail_probability: np.ndarray  # [rows]


def score_rows(
    model: DetectorModel,
    params: ServingParams,
    series: np.ndarray,
    timestamps: np.ndarray,
    values: np.ndarray,
) -> RowScores:
    """Per input row: the exporter's `anomaly_tail_probability` and `anomaly_score` at that time."""
    if model.signals:
        raise ValueError(
            f"this model scores {len(model.signals)} signals {model.signals}; rows carry one value each"
        )
    series = np.asarray(series, dtype=object)
    timestamps = np.asarray(timestamps, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    if not (len(series) == len(timestamps) == len(values)):
        raise ValueError(f"columns differ in length: {len(series)}, {len(timestamps)}, {len(values)}")
    if not np.isfinite(timestamps).all():
        raise ValueError("every timestamp must be a finite number of unix seconds")
    probability = np.full(len(values), np.nan)
    score = np.full(len(values), np.nan)
    threshold = model.alarm_threshold(params.false_alarms_per_week, params.step_seconds)
    for key in dict.fromkeys(series.tolist()):
        rows = np.flatnonzero(series == key)
        grid, cells = _on_grid(timestamps[rows], values[rows], params.step_seconds, str(key))
        p = _causal_probabilities(model, grid)
        probability[rows] = p[cells]
        score[rows] = model.anomaly_scores(p[:, None], threshold, [str(key)])[cells, 0]
    return RowScores(anomaly_score=score, anomaly_tail_probability=probability)


def _on_grid(
    timestamps: np.ndarray, values: np.ndarray, step: int, key: str
) -> tuple[np.ndarray, np.ndarray]:
    """`values` placed on a grid of `step` from the series' first timestamp; gaps are NaN.
    Returns the grid and each row's cell."""
    origin = timestamps.min()
    cells = np.rint((timestamps - origin) / step).astype(np.int64)
    size = int(cells.max()) + 1
    if size > MAX_GRID_ROWS_PER_SERIES:
        raise ValueError(
            f"series {key!r} spans {size} steps of {step}s (limit {MAX_GRID_ROWS_PER_SERIES}): "
            "send recent history only"
        )
    if len(np.unique(cells)) != len(cells):
        raise ValueError(f"series {key!r} has two rows within one step of {step}s of each other")
    grid = np.full(size, np.nan)
    grid[cells] = values
    return grid, cells


def _causal_probabilities(model: DetectorModel, grid: np.ndarray) -> np.ndarray:
    """Published tail probability at every grid row from the rows up to it.

    Features are causal (features.py), so one pass over the grid equals the exporter's
    `score_latest` at each row; the leading gap padding stands for the samples before the first
    row, which a `query_range` would return as gaps too.
    """
    pad = model.scoring_rows
    padded = np.concatenate([np.full(pad, np.nan), grid])[:, None]
    features = compute_features(model.check_values(padded), model.windows)
    return model.feature_tail_probability(features)[pad:, 0]
