"""The onset simulation must do what Prometheus does with `for:` and `keep_firing_for:`."""

from __future__ import annotations

import numpy as np

from slo_pipeline.core.alert_sim import AlertRule, simulate_alerts


def _scores(pattern: str) -> np.ndarray:
    """'x' = above threshold, '.' = below, 'n' = unscorable (NaN)."""
    return np.array([{"x": 2.0, ".": 0.5, "n": np.nan}[c] for c in pattern])


def _run(pattern: str, rule: AlertRule) -> tuple[str, str]:
    firing, onset = simulate_alerts(_scores(pattern), rule)
    return "".join("F" if f else "." for f in firing), "".join("^" if o else "." for o in onset)


def test_for_fires_on_the_sample_after_for_steps_of_truth() -> None:
    firing, onset = _run("..xxxx..", AlertRule(for_steps=2, keep_firing_steps=0))
    assert onset == "....^..."
    assert firing == "....FF.."


def test_for_zero_fires_immediately() -> None:
    _, onset = _run(".x.", AlertRule(for_steps=0, keep_firing_steps=0))
    assert onset == ".^."


def test_pending_alert_is_reset_by_one_false_sample() -> None:
    _, onset = _run("xx.xx.xxx", AlertRule(for_steps=2, keep_firing_steps=0))
    assert onset == "........^"


def test_keep_firing_bridges_short_gaps_without_new_onset() -> None:
    firing, onset = _run("xxx..xx....x", AlertRule(for_steps=0, keep_firing_steps=2))
    assert onset == "^..........^"
    # Resolves on the 3rd consecutive false sample (K + 1), not before.
    assert firing == "FFFFFFFFF..F"


def test_nan_is_a_false_evaluation() -> None:
    _, onset = _run("xxnxx", AlertRule(for_steps=1, keep_firing_steps=0))
    assert onset == ".^..^"


def test_one_long_incident_is_one_alarm() -> None:
    pattern = "x" * 50 + "." + "x" * 50
    _, onset = _run(pattern, AlertRule(for_steps=2, keep_firing_steps=15))
    assert onset.count("^") == 1


def test_series_are_independent() -> None:
    scores = np.stack([_scores("xxx...."), _scores("...xxxx")], axis=1)
    _, onset = simulate_alerts(scores, AlertRule(for_steps=1, keep_firing_steps=0))
    assert onset[:, 0].tolist() == [False, True, False, False, False, False, False]
    assert onset[:, 1].tolist() == [False, False, False, False, True, False, False]


def test_prometheus_durations_scale_with_step() -> None:
    assert AlertRule(2, 15).prometheus_durations(60) == {"for": "120s", "keep_firing_for": "900s"}


def test_rule_from_durations_when_evaluation_matches_the_step() -> None:
    assert AlertRule.from_durations(120, 900, step_seconds=60) == AlertRule(2, 15)


def test_rule_from_durations_when_a_slow_detector_is_evaluated_every_minute() -> None:
    # A 5-minute score is held for five 60 s evaluations: one exceeding sample already stays
    # true for 2m + one evaluation, and 15m of keep_firing_for outlasts 3 quiet samples.
    assert AlertRule.from_durations(120, 900, step_seconds=300, evaluation_seconds=60) == AlertRule(0, 3)


def test_simulation_of_a_held_score_matches_the_per_evaluation_simulation() -> None:
    rng = np.random.default_rng(0)
    samples = np.where(rng.random(400) < 0.2, 2.0, 0.5)
    held = np.repeat(samples, 5)  # what Prometheus sees when it evaluates 5x per sample
    _, per_evaluation = simulate_alerts(held, AlertRule(for_steps=2, keep_firing_steps=15))
    _, per_sample = simulate_alerts(samples, AlertRule.from_durations(120, 900, 300, 60))
    assert per_evaluation.reshape(-1, 5).any(axis=1).tolist() == per_sample.tolist()
