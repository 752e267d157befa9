"""NAB scoring against hand-computed cases (NAB's sweeper semantics, standard profile)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from slo_pipeline.offline.evaluation.nab import STANDARD, nab_score, probationary_length, scaled_sigmoid


def _sigmoid_score(x: float) -> float:
    """S(x) = 2 / (1 + e^(5x)) - 1, written out independently of the implementation."""
    return 2.0 / (1.0 + math.exp(5.0 * x)) - 1.0


def test_probationary_period_is_15_percent_capped_at_750_rows() -> None:
    assert probationary_length(100) == 15
    assert probationary_length(4032) == 604
    assert probationary_length(10_000) == 750


def test_scaled_sigmoid_landmarks() -> None:
    assert scaled_sigmoid(0.0) == pytest.approx(0.0)
    assert scaled_sigmoid(-1.0) == pytest.approx(0.98661, abs=1e-5)
    assert scaled_sigmoid(-0.5) == pytest.approx(0.84828, abs=1e-5)
    assert scaled_sigmoid(3.5) == -1.0


def test_hand_computed_file() -> None:
    # 100 rows, probation = 15 rows, one window rows 40..59 (width 20).
    # Detections: row 10 (probation, ignored), 30 (before any window: FP worth -0.11),
    # 45 and 50 (inside: only the earlier one counts), 80 (FP 21 rows after a 20-row window).
    detections = np.zeros(100, dtype=bool)
    detections[[10, 30, 45, 50, 80]] = True
    result = nab_score(detections, [(40, 59)], STANDARD)

    tp = _sigmoid_score(-(59 - 45 + 1) / 20) / _sigmoid_score(-1.0)  # 0.96699
    fp_after = 0.11 * _sigmoid_score((80 - 59) / (20 - 1))  # -0.10913
    fp_before = -0.11
    expected_raw = tp + fp_after + fp_before
    assert result.raw == pytest.approx(expected_raw)
    assert result.null == -1.0 and result.perfect == 1.0
    assert result.normalised == pytest.approx(100 * (expected_raw + 1) / 2)
    assert result.normalised == pytest.approx(87.39, abs=0.01)


def test_null_detector_scores_zero_and_earliest_detection_scores_100() -> None:
    windows = [(40, 59), (70, 89)]
    assert nab_score(np.zeros(100, dtype=bool), windows).normalised == pytest.approx(0.0)
    perfect = np.zeros(100, dtype=bool)
    perfect[[40, 70]] = True
    assert nab_score(perfect, windows).normalised == pytest.approx(100.0)


def test_later_detection_in_window_scores_less() -> None:
    early, late = np.zeros(100, dtype=bool), np.zeros(100, dtype=bool)
    early[42], late[58] = True, True
    assert nab_score(early, [(40, 59)]).raw > nab_score(late, [(40, 59)]).raw > -1.0


def test_window_inside_probation_counts_for_nothing_but_perfect() -> None:
    result = nab_score(np.zeros(100, dtype=bool), [(2, 8)])
    assert result.null == 0.0
    assert result.perfect == 1.0  # NAB's runner counts every labelled window


def test_corpus_total_normalises_the_sums() -> None:
    a = nab_score(np.zeros(100, dtype=bool), [(40, 59)])
    hit = np.zeros(100, dtype=bool)
    hit[40] = True
    b = nab_score(hit, [(40, 59)])
    total = a + b
    assert total.normalised == pytest.approx(50.0)


def test_rejects_overlapping_windows() -> None:
    with pytest.raises(ValueError, match="sorted and disjoint"):
        nab_score(np.zeros(100, dtype=bool), [(40, 60), (50, 70)])
