"""Pure helpers of the retrain path: incident cells."""

from __future__ import annotations

import numpy as np

from slo_pipeline.adapters.incident_history import KnownIncident, incident_matrix

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
