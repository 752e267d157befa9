"""The traffic model: baseline shape, and that each incident kind changes its own signal only."""

from __future__ import annotations

import numpy as np
import pytest

from slo_pipeline.devstack.simulator.model import (
    DEFAULT_ROUTES,
    PEAK_HOUR_UTC,
    SERVER_ERROR_CODE_INDEX,
    Incident,
    IncidentError,
    IntervalSample,
    daily_cycle,
    incident_overlap,
    parse_incident,
    sample_intervals,
)

DAY = 86_400.0
STEP = 15.0
# One hour starting at the daily peak, in 15 s steps.
STARTS = np.arange(0, 3600, STEP) + PEAK_HOUR_UTC * 3600
ENDS = STARTS + STEP


def _sample(*incidents: Incident, seed: int = 1) -> IntervalSample:
    return sample_intervals(STARTS, ENDS, incidents=incidents, rng=np.random.default_rng(seed))


def _signals(sample: IntervalSample) -> dict[str, np.ndarray]:
    """Per-route request rate, 5xx ratio and mean latency over the whole sample."""
    total = sample.requests.sum(axis=(1, 2))
    return {
        "rate": total / (ENDS[-1] - STARTS[0]),
        "error_ratio": sample.requests[:, SERVER_ERROR_CODE_INDEX].sum(axis=-1) / total,
        "mean_latency": sample.duration_sum.sum(axis=-1) / sample.bucket_counts.sum(axis=(1, 2)),
    }


def _incident(kind: str, magnitude: float, route: str | None = None) -> Incident:
    return Incident(kind, start=STARTS[0], duration_seconds=3600, magnitude=magnitude, route=route)


def test_baseline_error_ratio_is_small_noisy_and_never_flat_zero() -> None:
    starts = np.arange(0, DAY, STEP)
    sample = sample_intervals(starts, starts + STEP, rng=np.random.default_rng(7))
    errors = sample.requests[:, SERVER_ERROR_CODE_INDEX].sum(axis=0)
    total = sample.requests.sum(axis=(0, 1))

    overall = errors.sum() / total.sum()
    assert 0.003 < overall < 0.007
    # What rate(...[5m]) would see: some 5xx in every window, and a ratio that wiggles.
    five_minutes = errors.reshape(288, -1).sum(axis=1) / total.reshape(288, -1).sum(axis=1)
    assert np.all(five_minutes > 0), "an error-ratio detector needs a baseline that is not flat zero"
    assert five_minutes.std() / five_minutes.mean() > 0.1


def test_daily_cycle_peaks_at_peak_hour_and_bottoms_twelve_hours_later() -> None:
    peak, trough = PEAK_HOUR_UTC * 3600, (PEAK_HOUR_UTC - 12) * 3600
    assert daily_cycle(np.array([peak]))[0] == pytest.approx(1.6)
    assert daily_cycle(np.array([trough]))[0] == pytest.approx(0.4)

    rates = [
        sample_intervals(np.array([t]), np.array([t + 600]), rng=np.random.default_rng(0)).requests.sum()
        for t in (peak, trough)
    ]
    assert rates[0] > 3 * rates[1]


def test_latency_spike_raises_latency_only() -> None:
    baseline, spiked = _signals(_sample()), _signals(_sample(_incident("latency_spike", 5.0)))

    np.testing.assert_allclose(spiked["mean_latency"] / baseline["mean_latency"], 5.0, rtol=0.05)
    np.testing.assert_allclose(spiked["rate"], baseline["rate"], rtol=0.05)
    np.testing.assert_allclose(spiked["error_ratio"], baseline["error_ratio"], atol=0.003)


def test_latency_spike_moves_requests_into_slow_buckets() -> None:
    baseline, spiked = _sample(), _sample(_incident("latency_spike", 5.0))
    # Buckets 0..5 are <= 0.5 s: the share answered within half a second must fall.
    fast_share = [s.bucket_counts[:, :6].sum() / s.bucket_counts.sum() for s in (baseline, spiked)]
    assert fast_share[1] < fast_share[0] - 0.2


def test_error_burst_sets_the_5xx_ratio_only() -> None:
    baseline, burst = _signals(_sample()), _signals(_sample(_incident("error_burst", 0.3)))

    np.testing.assert_allclose(burst["error_ratio"], 0.3, atol=0.02)
    np.testing.assert_allclose(burst["rate"], baseline["rate"], rtol=0.05)
    np.testing.assert_allclose(burst["mean_latency"], baseline["mean_latency"], rtol=0.05)


def test_traffic_drop_removes_that_share_of_requests_only() -> None:
    baseline, dropped = _signals(_sample()), _signals(_sample(_incident("traffic_drop", 0.9)))

    np.testing.assert_allclose(dropped["rate"] / baseline["rate"], 0.1, rtol=0.1)
    np.testing.assert_allclose(dropped["mean_latency"], baseline["mean_latency"], rtol=0.05)


def test_incident_on_one_route_leaves_the_others_alone() -> None:
    checkout = DEFAULT_ROUTES[0].route
    baseline, burst = _signals(_sample()), _signals(_sample(_incident("error_burst", 0.5, checkout)))

    assert burst["error_ratio"][0] == pytest.approx(0.5, abs=0.03)
    np.testing.assert_allclose(burst["error_ratio"][1:], baseline["error_ratio"][1:], atol=0.003)


def test_incident_outside_the_window_changes_nothing() -> None:
    later = Incident("error_burst", start=ENDS[-1] + 1, duration_seconds=60, magnitude=0.9)
    np.testing.assert_array_equal(_sample(later).requests, _sample().requests)


def test_incident_overlap_is_the_covered_share_of_each_interval() -> None:
    incident = Incident("traffic_drop", start=10, duration_seconds=20, magnitude=0.5)
    overlap = incident_overlap(incident, np.array([0.0, 15.0, 30.0]), np.array([15.0, 30.0, 45.0]))
    np.testing.assert_allclose(overlap, [1 / 3, 1.0, 0.0])


def test_counts_are_consistent_across_codes_and_buckets() -> None:
    sample = _sample(_incident("latency_spike", 3.0))
    np.testing.assert_array_equal(sample.requests.sum(axis=1), sample.bucket_counts.sum(axis=1))
    assert (sample.requests >= 0).all() and (sample.duration_sum >= 0).all()


def test_same_seed_same_traffic() -> None:
    np.testing.assert_array_equal(_sample(seed=3).requests, _sample(seed=3).requests)
    assert not np.array_equal(_sample(seed=3).requests, _sample(seed=4).requests)


def test_parse_incident_applies_defaults() -> None:
    incident = parse_incident({"kind": "latency_spike", "duration_seconds": 30}, start=100.0)
    assert incident == Incident("latency_spike", 100.0, 30.0, 5.0, None)
    assert incident.is_active(129.9) and not incident.is_active(130.0)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ([], "must be a JSON object"),
        ({"kind": "meteor", "duration_seconds": 5}, "kind must be one of"),
        ({"kind": "error_burst"}, "duration_seconds must be a number"),
        ({"kind": "error_burst", "duration_seconds": -1}, "duration_seconds must be a number"),
        ({"kind": "error_burst", "duration_seconds": "5"}, "duration_seconds must be a finite number"),
        ({"kind": "error_burst", "duration_seconds": True}, "duration_seconds must be a finite number"),
        ({"kind": "error_burst", "duration_seconds": 5, "magnitude": 2}, "magnitude of error_burst"),
        ({"kind": "latency_spike", "duration_seconds": 5, "magnitude": 0.5}, "magnitude of latency_spike"),
        ({"kind": "traffic_drop", "duration_seconds": 5, "route": "/nope"}, "route must be one of"),
        ({"kind": "traffic_drop", "duration_seconds": 5, "colour": "red"}, "unknown incident fields"),
    ],
)
def test_parse_incident_rejects_bad_input_with_a_clear_message(payload: object, message: str) -> None:
    with pytest.raises(IncidentError, match=message):
        parse_incident(payload, start=0.0)
