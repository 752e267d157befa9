"""Pure helpers of the retrain path: incident masking and the data-lake frame."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from slo_pipeline.lake import training_frame, write_snapshot
from slo_pipeline.retrain import incident_mask


def test_incident_mask_covers_incident_and_settle_time_only() -> None:
    timestamps = np.arange(0.0, 1000.0, 60.0)
    mask = incident_mask(timestamps, [(300.0, 420.0)], settle_seconds=120.0)
    assert list(timestamps[mask]) == [300.0, 360.0, 420.0, 480.0, 540.0]


def test_incident_mask_without_incidents_is_all_false() -> None:
    assert not incident_mask(np.arange(10.0), [], settle_seconds=5).any()


def test_training_frame_round_trips_through_parquet(tmp_path: Path) -> None:
    labels = [{"route": "/a"}, {"route": "/b"}]
    timestamps = np.array([0.0, 60.0, 120.0])
    values = np.array([[1.0, 10.0], [2.0, np.nan], [3.0, 30.0]])
    frame = training_frame(labels, timestamps, values)
    path = write_snapshot(str(tmp_path), "demo", frame, now=0)
    assert path == str(tmp_path / "demo" / "19700101T000000Z.parquet")

    back = pd.read_parquet(path)
    assert len(back) == 6
    b_series = back[back["series"] == json.dumps({"route": "/b"})]
    assert list(b_series["value"].isna()) == [False, True, False]
    assert back["timestamp"].iloc[-1] == pd.Timestamp(120, unit="s", tz="UTC")
