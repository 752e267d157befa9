"""The basic promotion gate: budget on held-out healthy data, never worse than the champion."""

from __future__ import annotations

import numpy as np

from slo_pipeline.validation import ALARM_RATE_TOLERANCE, alarm_rate, basic_validation, combine

THRESHOLD = 1e-3


def probabilities(n: int, alarms: int) -> np.ndarray:
    p = np.full(n, 0.5)
    p[:alarms] = THRESHOLD / 10
    return p


def test_candidate_within_budget_is_promoted() -> None:
    decision = basic_validation(
        candidate_probabilities=probabilities(10_000, 10), champion_probabilities=None, threshold=THRESHOLD
    )
    assert decision.promote
    assert decision.metrics["candidate_alarm_rate"] == 10 / 10_000


def test_candidate_alarming_far_above_budget_is_rejected_with_reason() -> None:
    n = 10_000
    alarms = int(ALARM_RATE_TOLERANCE * THRESHOLD * n) + 50
    decision = basic_validation(
        candidate_probabilities=probabilities(n, alarms), champion_probabilities=None, threshold=THRESHOLD
    )
    assert not decision.promote
    assert any("budget allows" in reason for reason in decision.reasons)


def test_candidate_worse_than_champion_is_rejected_even_within_budget() -> None:
    decision = basic_validation(
        candidate_probabilities=probabilities(10_000, 25),
        champion_probabilities=probabilities(10_000, 5),
        threshold=THRESHOLD,
    )
    assert decision.promote  # 25 alarms is inside the 3x budget (30), so "not worse" uses the budget
    decision = basic_validation(
        candidate_probabilities=probabilities(10_000, 60),
        champion_probabilities=probabilities(10_000, 5),
        threshold=THRESHOLD,
    )
    assert not decision.promote
    assert any("more than the champion" in reason for reason in decision.reasons)


def test_too_few_scorable_samples_is_rejected() -> None:
    p = np.full(1000, np.nan)
    p[:10] = 0.5
    decision = basic_validation(candidate_probabilities=p, champion_probabilities=None, threshold=THRESHOLD)
    assert not decision.promote
    assert any("scorable" in reason for reason in decision.reasons)


def test_nan_is_not_an_alarm() -> None:
    assert alarm_rate(np.array([np.nan, 0.5, THRESHOLD / 2]), THRESHOLD) == 0.5


def test_combine_needs_every_check_to_pass_and_keeps_every_reason() -> None:
    ok = basic_validation(
        candidate_probabilities=probabilities(1000, 0), champion_probabilities=None, threshold=THRESHOLD
    )
    bad = basic_validation(
        candidate_probabilities=probabilities(1000, 500), champion_probabilities=None, threshold=THRESHOLD
    )
    merged = combine(ok, bad)
    assert not merged.promote
    assert merged.reasons == ok.reasons + bad.reasons
