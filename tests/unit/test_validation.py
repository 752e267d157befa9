"""The basic promotion gate: alarm onsets of the shipped rule on healthy held-out data."""

from __future__ import annotations

import numpy as np

from slo_pipeline.core.alert_sim import AlertRule
from slo_pipeline.core.heldout import basic_validation, combine, summarize_alarms

RULE = AlertRule(for_steps=1, keep_firing_steps=2)
STEP = 60.0
WEEK_OF_STEPS = int(7 * 86400 / STEP)


def scores_with_episodes(n_rows: int, n_series: int, episodes: int) -> np.ndarray:
    """Quiet scores with `episodes` separate 3-sample bursts above 1 on series 0."""
    scores = np.full((n_rows, n_series), 0.2)
    for k in range(episodes):
        start = 50 + k * 100
        scores[start : start + 3, 0] = 3.0
    return scores


def decide(candidate: np.ndarray, champion: np.ndarray | None = None, healthy: np.ndarray | None = None):
    healthy = np.ones(candidate.shape, dtype=bool) if healthy is None else healthy
    return basic_validation(
        candidate_scores=candidate,
        champion_scores=champion,
        healthy=healthy,
        rule=RULE,
        step_seconds=STEP,
        false_alarms_per_week=1.0,
    )


def test_one_episode_is_one_onset_and_counts_its_firing_time() -> None:
    scores = scores_with_episodes(400, 2, 1)
    summary = summarize_alarms(scores, np.ones(scores.shape, dtype=bool), RULE)
    assert summary.onsets == 1
    # fires from the 2nd exceeding sample until 2 quiet samples later: 2 + 2 = 4 of 800 cells
    assert summary.firing_fraction == 4 / 800


def test_candidate_within_budget_is_promoted() -> None:
    decision = decide(scores_with_episodes(WEEK_OF_STEPS, 1, 1))
    assert decision.promote, decision.reasons
    assert decision.metrics["candidate_false_alarms"] == 1


def test_candidate_alarming_far_above_budget_is_rejected_with_reason() -> None:
    decision = decide(scores_with_episodes(WEEK_OF_STEPS, 1, 20))
    assert not decision.promote
    assert any("allows" in reason for reason in decision.reasons)


def test_a_model_that_never_stops_firing_is_rejected_despite_one_onset() -> None:
    scores = np.full((2000, 2), 5.0)
    decision = decide(scores)
    assert decision.metrics["candidate_false_alarms"] == 2  # one per series
    assert not decision.promote
    assert any("fires on" in reason for reason in decision.reasons)


def test_alarms_inside_known_incidents_do_not_count() -> None:
    scores = scores_with_episodes(WEEK_OF_STEPS, 1, 20)
    healthy = scores < 1.0  # every burst is a known incident
    decision = decide(scores, healthy=healthy)
    assert decision.metrics["candidate_false_alarms"] == 0
    assert decision.promote


def test_candidate_worse_than_champion_beyond_budget_is_rejected() -> None:
    n = 4 * WEEK_OF_STEPS
    champion = scores_with_episodes(n, 1, 1)
    assert decide(scores_with_episodes(n, 1, 3), champion).promote  # within the Poisson allowance
    decision = decide(scores_with_episodes(n, 1, 12), champion)
    assert not decision.promote
    assert any("more alarms than the champion" in reason for reason in decision.reasons)


def test_too_few_scorable_samples_is_rejected() -> None:
    scores = np.full((100, 1), np.nan)
    scores[:10] = 0.1
    decision = decide(scores)
    assert not decision.promote
    assert any("scorable" in reason for reason in decision.reasons)


def test_combine_needs_every_check_to_pass_and_keeps_every_reason() -> None:
    ok = decide(scores_with_episodes(WEEK_OF_STEPS, 1, 0))
    bad = decide(scores_with_episodes(WEEK_OF_STEPS, 1, 30))
    merged = combine(ok, bad)
    assert not merged.promote
    assert merged.reasons == ok.reasons + bad.reasons
