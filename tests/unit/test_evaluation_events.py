"""Event-level metrics: one labelled window is one incident, one onset is one alarm."""

from __future__ import annotations

import math

import numpy as np
import pytest

from slo_pipeline.offline.evaluation.events import SECONDS_PER_WEEK, event_counts


def test_counts_detections_false_alarms_and_delay() -> None:
    times = np.arange(200) * 300.0  # 5-minute steps; probation = 30 rows
    onsets = np.zeros(200, dtype=bool)
    onsets[[10, 60, 100, 104, 150]] = True  # 10: probation; 60: false; 100, 104: window; 150: false
    counts = event_counts(onsets, [(95, 120), (170, 190)], times)
    assert counts.windows == 2
    assert counts.detected == 1
    assert counts.redundant_alarms == 1
    assert counts.false_alarms == 2
    assert counts.precision == pytest.approx(1 / 3)
    assert counts.recall == pytest.approx(0.5)
    assert counts.f1 == pytest.approx(2 * (1 / 3) * 0.5 / (1 / 3 + 0.5))
    assert counts.mean_delay_seconds == pytest.approx(5 * 300.0)
    # Exposure: scored rows (30..199) outside the windows: 170 - 26 - 21 = 123 rows of 300 s.
    assert counts.false_alarms_per_week == pytest.approx(2 * SECONDS_PER_WEEK / (123 * 300.0))


def test_no_alarms_gives_undefined_precision_and_zero_recall() -> None:
    counts = event_counts(np.zeros(100, dtype=bool), [(50, 60)], np.arange(100) * 60.0)
    assert math.isnan(counts.precision)
    assert counts.recall == 0.0
    assert counts.false_alarms_per_week == 0.0


def test_totals_add_counts() -> None:
    times = np.arange(100) * 60.0
    hit = np.zeros(100, dtype=bool)
    hit[55] = True
    total = event_counts(hit, [(50, 60)], times) + event_counts(np.zeros(100, dtype=bool), [(50, 60)], times)
    assert (total.windows, total.detected) == (2, 1)
    assert total.recall == pytest.approx(0.5)
