"""Evidence accumulation: trailing mean of -log p, causal, gaps skipped."""

from __future__ import annotations

import numpy as np
import pytest

from slo_pipeline.core.evidence import accumulate


def test_trailing_mean_of_minus_log_p() -> None:
    p = np.array([[0.1], [0.01], [1.0], [0.001]])
    e = accumulate(p, 2)[:, 0]
    assert e[0] == pytest.approx(-np.log(0.1))  # fewer samples at the start: mean of what exists
    assert e[1] == pytest.approx(-(np.log(0.1) + np.log(0.01)) / 2)
    assert e[3] == pytest.approx(-np.log(0.001) / 2)


def test_gap_inside_window_is_skipped_and_unscorable_sample_stays_nan() -> None:
    p = np.array([[0.01], [np.nan], [0.01], [np.nan]])
    e = accumulate(p, 3)[:, 0]
    assert e[2] == pytest.approx(-np.log(0.01))
    assert np.isnan(e[1]) and np.isnan(e[3])


def test_sustained_moderate_anomaly_outweighs_one_noisy_sample() -> None:
    one_spike = np.array([[0.5], [0.5], [0.001]])
    sustained = np.array([[0.02], [0.02], [0.02]])
    assert accumulate(sustained, 3)[-1, 0] > accumulate(one_spike, 3)[-1, 0]


def test_window_one_is_plain_evidence_and_window_zero_is_refused() -> None:
    p = np.array([[0.5, 0.25]])
    np.testing.assert_allclose(accumulate(p, 1), -np.log(p))
    with pytest.raises(ValueError, match=">= 1"):
        accumulate(p, 0)
