"""The detector as an MLflow pyfunc: `mlflow models serve -m models:/NAME@champion` scores rows.

Input: a DataFrame `series, timestamp, value` (recent history per series, unix seconds).
Output: one row per input row, `anomaly_score` and `anomaly_tail_probability`, computed causally
as the exporter would at that timestamp (frame_scoring.py); NaN (null) with too little history.
The forest is loaded with skops and the project's trusted list, never unpickled.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel

INPUT_COLUMNS = ("series", "timestamp", "value")
OUTPUT_COLUMNS = ("anomaly_score", "anomaly_tail_probability")


# MLflow warns at class creation that predict has no type hints; the signature is given
# explicitly when logging, and type-hint validation cannot describe a long-format frame.
warnings.filterwarnings("ignore", message=".*Add type hints to the `predict` method", category=UserWarning)


class DetectorPyfunc(PythonModel):
    def __init__(self) -> None:
        self._loaded: Any = None

    def load_context(self, context: Any) -> None:
        from slo_pipeline.adapters.model_package import (
            DETECTOR_ARTIFACT,
            FOREST_ARTIFACT,
            load_from_artifacts,
        )

        self._loaded = load_from_artifacts(
            Path(context.artifacts[FOREST_ARTIFACT]), Path(context.artifacts[DETECTOR_ARTIFACT])
        )

    # No annotation on model_input: MLflow would try (and fail) to infer a schema from it; the
    # registered signature is explicit.
    def predict(self, context, model_input, params=None):
        from mlflow.exceptions import MlflowException

        from slo_pipeline.core.frame_scoring import score_rows

        if self._loaded is None or self._loaded.serving is None:
            raise RuntimeError("the detector model was not loaded (load_context did not run)")
        frame = pd.DataFrame(model_input)
        try:
            missing = [column for column in INPUT_COLUMNS if column not in frame.columns]
            if missing:
                raise ValueError(f"input lacks columns {missing}; expected {list(INPUT_COLUMNS)}")
            scores = score_rows(
                self._loaded.model,
                self._loaded.serving,
                frame["series"].astype(str).to_numpy(),
                pd.to_numeric(frame["timestamp"], errors="raise").to_numpy(dtype=np.float64),
                pd.to_numeric(frame["value"], errors="coerce").to_numpy(dtype=np.float64),
            )
        except ValueError as err:
            # The scoring server answers this with a 400 and the message, not a stack trace.
            raise MlflowException.invalid_parameter_value(str(err)) from err
        result = pd.DataFrame(
            {
                "anomaly_score": scores.anomaly_score,
                "anomaly_tail_probability": scores.anomaly_tail_probability,
            },
            index=frame.index,
        )
        # NaN (too little history) must reach JSON as null, not as the invalid token NaN.
        return result.astype(object).where(result.notna(), None)


def signature_and_example() -> tuple[Any, pd.DataFrame]:
    """The registered signature, and an input example (too short to score: its answers are null)."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    signature = ModelSignature(
        inputs=Schema(
            [ColSpec("string", "series"), ColSpec("double", "timestamp"), ColSpec("double", "value")]
        ),
        outputs=Schema([ColSpec("double", name) for name in OUTPUT_COLUMNS]),
    )
    example = pd.DataFrame(
        {
            "series": ['{"instance":"api-1"}'] * 3,
            "timestamp": [1_700_000_000.0, 1_700_000_060.0, 1_700_000_120.0],
            "value": [0.21, 0.19, 0.22],
        }
    )
    return signature, example
