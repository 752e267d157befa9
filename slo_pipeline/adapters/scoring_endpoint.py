"""Score the latest sample of every series through `mlflow models serve` instead of in-process.

The exporter sends each series' recent history as `series, timestamp, value` rows (gaps are
left out, which the served pyfunc reads as gaps; the newest time is always sent, null when it
has no sample) and keeps the answer for each series' newest grid time: the same number
`DetectorModel.score_latest` would give for that block.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import requests


class ScoringEndpointError(RuntimeError):
    """The scoring endpoint could not be reached or answered something unusable."""


def score_latest_via_endpoint(
    url: str, keys: Sequence[str], timestamps: np.ndarray, values: np.ndarray, *, timeout: float
) -> tuple[np.ndarray, np.ndarray]:
    """`(anomaly_tail_probability[N], anomaly_score[N])` at `timestamps[-1]`; NaN = unscorable."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 2 or values.shape != (len(timestamps), len(keys)):
        raise ValueError(
            f"values must be [time, series] = {(len(timestamps), len(keys))}, got {values.shape}"
        )
    rows: list[list[object]] = []
    latest_row = np.full(len(keys), -1)
    last = len(timestamps) - 1
    for column, key in enumerate(keys):
        finite = np.isfinite(values[:, column])
        for index in np.flatnonzero(finite[:last]):
            rows.append([key, float(timestamps[index]), float(values[index, column])])
        if finite[: last + 1].any():
            # Always a row at the newest time, null when it has no sample: the model bridges short
            # gaps (features.clean), so the exporter may still publish a score for it.
            rows.append([key, float(timestamps[last]), float(values[last, column]) if finite[last] else None])
            latest_row[column] = len(rows) - 1
    probability = np.full(len(keys), np.nan)
    score = np.full(len(keys), np.nan)
    if not rows:
        return probability, score
    body: dict[str, Any] = {"dataframe_split": {"columns": ["series", "timestamp", "value"], "data": rows}}
    endpoint = url.rstrip("/") + "/invocations"
    try:
        response = requests.post(endpoint, json=body, timeout=timeout)
    except requests.RequestException as err:
        raise ScoringEndpointError(f"scoring endpoint {endpoint} unreachable: {err}") from err
    if response.status_code != 200:
        raise ScoringEndpointError(
            f"scoring endpoint {endpoint} answered {response.status_code}: {response.text[:300]}"
        )
    try:
        predictions = response.json()["predictions"]
    except (ValueError, KeyError, TypeError) as err:
        raise ScoringEndpointError(f"scoring endpoint {endpoint} answered no predictions: {err}") from err
    if not isinstance(predictions, list) or len(predictions) != len(rows):
        raise ScoringEndpointError(
            f"scoring endpoint {endpoint}: {len(rows)} rows sent, answers do not match"
        )
    for column, row in enumerate(latest_row):
        if row >= 0:
            probability[column] = _number(predictions[row], "anomaly_tail_probability")
            score[column] = _number(predictions[row], "anomaly_score")
    return probability, score


def _number(prediction: object, name: str) -> float:
    value = prediction.get(name) if isinstance(prediction, dict) else None
    if value is None:
        return math.nan
    if not isinstance(value, int | float):
        raise ScoringEndpointError(f"{name} is {value!r}, not a number")
    return float(value)
