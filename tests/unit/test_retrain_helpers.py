"""Pure helpers of the retrain path: incident cells and the data-lake frame."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from slo_pipeline.adapters.incident_history import KnownIncident, incident_matrix
from slo_pipeline.adapters.lake import training_frame, write_snapshot

SERIES = [{"route": "/a"}, {"route": "/b"}]


def incident(start: float, end: float, *, route: str | None = None, slo_wide: bool = False) -> KnownIncident:
    labels = {"alertname": "AnomalyDetected", "detector": "d", **({"route": route} if route else {})}
    return KnownIncident(start=start, end=end, labels=labels, confirmed=True, slo_wide=slo_wide)


def test_a_series_incident_masks_only_its_own_series_plus_settle_time() -> None:
    timestamps = np.arange(0.0, 1000.0, 60.0)
    mask = incident_matrix(timestamps, SERIES, [incident(300, 420, route="/b")], settle_seconds=120)
    assert not mask[:, 0].any()
    assert list(timestamps[mask[:, 1]]) == [300.0, 360.0, 420.0, 480.0, 540.0]


def test_an_slo_breach_masks_every_series() -> None:
    timestamps = np.arange(0.0, 600.0, 60.0)
    mask = incident_matrix(timestamps, SERIES, [incident(120, 180, slo_wide=True)], settle_seconds=0)
    assert mask[:, 0].tolist() == mask[:, 1].tolist()
    assert list(timestamps[mask[:, 0]]) == [120.0, 180.0]


def test_an_incident_without_the_series_labels_masks_nothing() -> None:
    mask = incident_matrix(np.arange(0.0, 600.0, 60.0), SERIES, [incident(0, 600)], settle_seconds=0)
    assert not mask.any()


def test_no_incidents_mask_nothing() -> None:
    assert not incident_matrix(np.arange(10.0), SERIES, [], settle_seconds=5).any()


def test_training_frame_round_trips_through_parquet(tmp_path: Path) -> None:
    labels = [{"route": "/a"}, {"route": "/b"}]
    timestamps = np.array([0.0, 60.0, 120.0])
    values = np.array([[1.0, 10.0], [2.0, np.nan], [3.0, 30.0]])
    frame = training_frame(labels, timestamps, values)
    path = write_snapshot(str(tmp_path), "demo", frame, now=0)
    assert Path(path).parent == tmp_path / "demo"
    assert Path(path).name.startswith("19700101T000000")

    back = pd.read_parquet(path)
    assert len(back) == 6
    b_series = back[back["series"] == json.dumps({"route": "/b"})]
    assert list(b_series["value"].isna()) == [False, True, False]
    assert back["timestamp"].iloc[-1] == pd.Timestamp(120, unit="s", tz="UTC")
