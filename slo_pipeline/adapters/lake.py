"""Data lake: snapshot every training frame as Parquet so a model can be traced to its data.

Long format (one row per series and timestamp) so any tool can read it back; the path is
`<lake>/<detector>/<UTC timestamp>.parquet`. The lake is a local folder by default; pandas
hands `s3://`-style URIs to fsspec when that is installed.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import numpy as np
import pandas as pd

from slo_pipeline.adapters.prometheus import series_keys


def training_frame(
    labels: list[dict[str, str]], timestamps: np.ndarray, values: np.ndarray, signals: tuple[str, ...] = ()
) -> pd.DataFrame:
    """`values[T, N]` -> long frame with columns timestamp (UTC), series (labels as JSON), value.

    A multivariate block (`values[T, N, K]`, K = len(signals)) gets one row per signal too, with
    the signal's name in a `signal` column.
    """
    keys = np.asarray(series_keys(labels), dtype=object)
    t, n = values.shape[:2]
    k = len(signals) if signals else 1
    frame = {
        "timestamp": pd.to_datetime(np.repeat(timestamps, n * k), unit="s", utc=True),
        "series": np.tile(np.repeat(keys, k), t),
    }
    if signals:
        frame["signal"] = np.tile(np.asarray(signals, dtype=object), t * n)
    frame["value"] = values.reshape(t * n * k)
    return pd.DataFrame(frame)


def write_snapshot(lake: str, detector_name: str, frame: pd.DataFrame, now: float | None = None) -> str:
    # A random suffix: two trainings of one detector in the same second must not overwrite
    # each other's snapshot (each MLflow run points at its own file).
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now if now is not None else time.time()))
    stamp = f"{stamp}Z-{uuid.uuid4().hex[:8]}"
    if "://" in lake:
        path = f"{lake.rstrip('/')}/{detector_name}/{stamp}.parquet"
    else:
        folder = Path(lake) / detector_name
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise OSError(f"could not create data-lake folder {str(folder)!r}: {err}") from err
        path = str(folder / f"{stamp}.parquet")
    try:
        frame.to_parquet(path, index=False)
    except Exception as err:
        raise OSError(f"could not write training snapshot {path!r}: {err}") from err
    return path
