"""SLO-based validation of a candidate model (pure): budget, recall, lead time, champion."""

from __future__ import annotations

import numpy as np
import pytest

from slo_pipeline.core.heldout import combine
from slo_pipeline.core.slo_gate import (
    Interval,
    ValidationPolicy,
    episodes,
    intervals_where,
    merge_intervals,
    onset_times,
    poisson_quantile,
    unhealthy_mask,
    validate_against_slo,
)

STEP = 60.0
DAY = 86400.0
T0 = 1_700_000_000.0
TIMES = T0 + np.arange(0, 7 * DAY, STEP)  # a week at 1-minute steps
BREACH = Interval(T0 + 3 * DAY, T0 + 3 * DAY + 2 * 3600)  # two hours of burn-rate > 1
PAGE = BREACH.start + 1800  # the 14.4x page came 30 minutes into it
INCIDENT = Interval(T0 + 5 * DAY, T0 + 5 * DAY + 3600)  # confirmed by an operator


def alarms(*spans: tuple[float, float]) -> np.ndarray:
    """Alarm booleans that are True during each (start, end) span."""
    mask = np.zeros(len(TIMES), dtype=bool)
    for start, end in spans:
        mask |= (start <= TIMES) & (end > TIMES)
    return mask


def decide(candidate: np.ndarray, champion: np.ndarray | None = None, **overrides):  # type: ignore[no-untyped-def]
    arguments = {
        "timestamps": TIMES,
        "candidate_alarms": candidate,
        "champion_alarms": champion,
        "breaches": [BREACH],
        "incidents": [INCIDENT],
        "false_alarms_per_week": 1.0,
        "page_times": [PAGE],
    }
    arguments.update(overrides)
    return validate_against_slo(**arguments)


# Catches the breach 20 minutes before it starts (50 before the page) and the incident, plus one
# false alarm on a healthy day.
GOOD = alarms(
    (BREACH.start - 1200, BREACH.end),
    (INCIDENT.start + 300, INCIDENT.end),
    (T0 + DAY, T0 + DAY + 600),
)


def test_a_good_candidate_is_promoted_with_its_reasons_and_metrics() -> None:
    decision = decide(GOOD)
    assert decision.promote, decision.reasons
    assert decision.metrics["slo_candidate_healthy_alarms"] == 1
    assert decision.metrics["slo_candidate_recall"] == 1.0
    assert decision.metrics["slo_candidate_median_lead_seconds"] == 3000  # 50 minutes before the page
    assert decision.metrics["slo_allowed_healthy_alarms"] == 3  # Poisson(~0.97) 95th percentile
    assert "caught 2/2 episodes (breaches 1/1, confirmed incidents 1/1)" in decision.reasons
    assert any(
        r.startswith("median lead time +50.0 min before the 1 burn-rate page") for r in decision.reasons
    )


def test_too_many_alarms_while_healthy_is_rejected() -> None:
    noisy = GOOD | alarms(*[(T0 + d * 3600, T0 + d * 3600 + 120) for d in range(2, 40, 4)])
    decision = decide(noisy)
    assert not decision.promote
    assert decision.metrics["slo_candidate_healthy_alarms"] == 11
    assert any("alarms while the SLO was healthy" in r and "allows 3" in r for r in decision.reasons)


def test_alarms_just_before_and_after_an_episode_are_not_false_alarms() -> None:
    # Onsets 50 minutes before the breach (lead time) and 20 minutes after the incident (recovery).
    edges = GOOD | alarms(
        (BREACH.start - 3000, BREACH.start - 2900), (INCIDENT.end + 1200, INCIDENT.end + 1300)
    )
    assert decide(edges).metrics["slo_candidate_healthy_alarms"] == 1


def test_missing_a_breach_or_incident_is_rejected() -> None:
    decision = decide(alarms((INCIDENT.start, INCIDENT.end)))
    assert not decision.promote
    assert "caught 1/2 episodes (breaches 0/1, confirmed incidents 1/1); need 100%" in decision.reasons
    assert decision.metrics["slo_candidate_pages_missed"] == 1
    relaxed = decide(alarms((INCIDENT.start, INCIDENT.end)), policy=ValidationPolicy(min_recall=0.5))
    assert relaxed.promote


def test_an_alarm_long_before_an_episode_does_not_count_as_catching_it() -> None:
    early = alarms((BREACH.start - 3 * 3600, BREACH.start - 2 * 3600), (INCIDENT.start, INCIDENT.end))
    decision = decide(early)
    assert decision.metrics["slo_candidate_breaches_caught"] == 0
    assert not decision.promote


def test_late_detection_gives_a_negative_lead_time() -> None:
    late = alarms((PAGE + 600, BREACH.end), (INCIDENT.start, INCIDENT.end))
    decision = decide(late)
    assert decision.metrics["slo_candidate_median_lead_seconds"] == -600
    assert decision.promote  # caught, just late; the champion comparison is what punishes lateness


def test_worse_than_the_champion_is_rejected() -> None:
    champion = alarms((BREACH.start - 3000, BREACH.end), (INCIDENT.start, INCIDENT.end))
    later = alarms((BREACH.start, BREACH.end), (INCIDENT.start, INCIDENT.end))  # 50 min less warning
    decision = decide(later, champion)
    assert not decision.promote
    assert any(
        r.startswith("warns later before pages than the champion (+30.0 min vs +80.0 min)")
        for r in decision.reasons
    )
    assert decision.metrics["slo_champion_median_lead_seconds"] == 4800


def test_fewer_episodes_than_the_champion_is_rejected_even_with_relaxed_recall() -> None:
    champion = alarms((BREACH.start, BREACH.end), (INCIDENT.start, INCIDENT.end))
    candidate = alarms((BREACH.start, BREACH.end))
    decision = decide(candidate, champion, policy=ValidationPolicy(min_recall=0.5))
    assert not decision.promote
    assert "catches fewer episodes than the champion (1 < 2)" in decision.reasons


def test_more_healthy_alarms_than_a_quiet_champion_is_fine_within_the_expected_budget() -> None:
    quiet_champion = alarms((BREACH.start - 1200, BREACH.end), (INCIDENT.start + 300, INCIDENT.end))
    assert decide(GOOD, quiet_champion).promote  # 1 vs 0 healthy alarms; budget expects ~1
    noisier = GOOD | alarms((T0 + 2 * DAY, T0 + 2 * DAY + 60), (T0 + 4 * DAY, T0 + 4 * DAY + 60))
    decision = decide(noisier, quiet_champion)
    assert not decision.promote  # 3 (still within the allowance) vs 0: worse than the champion
    assert "more alarms while healthy than the champion (3 > 0)" in decision.reasons


def test_a_better_candidate_beats_the_champion() -> None:
    champion = GOOD | alarms((T0 + 2 * DAY, T0 + 2 * DAY + 60))
    decision = decide(GOOD, champion)
    assert decision.promote
    assert decision.reasons[-1] == "not worse than the champion on recall, healthy alarms and lead time"


def test_too_little_healthy_time_is_not_enough_evidence() -> None:
    whole_window = Interval(float(TIMES[0]), float(TIMES[-1]))
    decision = decide(GOOD, breaches=[whole_window], incidents=[], page_times=[])
    assert not decision.promote
    assert decision.reasons[0].startswith("only 0.0 h of the window had a healthy SLO")


def test_a_quiet_window_is_judged_on_false_alarms_alone() -> None:
    decision = decide(alarms((T0 + DAY, T0 + DAY + 60)), breaches=[], incidents=[], page_times=[])
    assert decision.promote
    assert "no SLO breach, confirmed incident or page in the window: recall not assessed" in decision.reasons
    assert "slo_candidate_recall" not in decision.metrics


def test_a_page_outside_any_breach_is_still_an_episode_to_catch() -> None:
    lone_page = T0 + 6 * DAY
    decision = decide(GOOD, page_times=[PAGE, lone_page])
    assert decision.metrics["slo_candidate_pages_missed"] == 1
    assert not decision.promote


def test_combines_with_the_basic_decision() -> None:
    merged = combine(decide(GOOD), decide(alarms()))
    assert not merged.promote
    assert "slo_candidate_recall" in merged.metrics


def test_input_errors_name_the_argument() -> None:
    with pytest.raises(ValueError, match="candidate_alarms must have one value per timestamp"):
        decide(GOOD[:-1])
    with pytest.raises(ValueError, match="champion_alarms must have one value per timestamp"):
        decide(GOOD, GOOD[:10])
    with pytest.raises(ValueError, match="timestamps must be strictly increasing"):
        decide(GOOD, timestamps=TIMES[::-1])
    with pytest.raises(ValueError, match="false_alarms_per_week must be > 0"):
        decide(GOOD, false_alarms_per_week=0)
    with pytest.raises(ValueError, match="interval end"):
        Interval(2.0, 1.0)


@pytest.mark.parametrize(("mean", "expected"), [(0.0, 0), (1.0, 3), (0.1, 1), (10.0, 15), (100.0, 117)])
def test_poisson_quantile(mean: float, expected: int) -> None:
    assert poisson_quantile(mean, 0.95) == expected


def test_intervals_and_onsets_from_a_mask() -> None:
    times = np.arange(10) * 60.0
    mask = [False, True, True, False, False, True, False, False, True, True]
    assert intervals_where(times, mask) == [Interval(60, 180), Interval(300, 360), Interval(480, 600)]
    assert onset_times(times, mask) == [60, 300, 480]
    assert merge_intervals([Interval(5, 9), Interval(0, 5), Interval(20, 30)]) == [
        Interval(0, 9),
        Interval(20, 30),
    ]


def test_episodes_merge_breaches_incidents_and_pages() -> None:
    lone_page = T0 + 6 * DAY
    merged = episodes([BREACH], [Interval(BREACH.end - 60, BREACH.end + 600), INCIDENT], [PAGE, lone_page])
    assert merged == [Interval(BREACH.start, BREACH.end + 600), INCIDENT, Interval(lone_page, lone_page)]


def test_unhealthy_mask_covers_the_lead_window_and_recovery_around_each_episode() -> None:
    # The same margins validate_against_slo uses, so the basic gate can share them.
    covered = TIMES[unhealthy_mask(TIMES, [BREACH])]
    assert covered[0] == BREACH.start - 3600 and covered[-1] == BREACH.end + 1800
    assert len(covered) == (BREACH.end - BREACH.start + 3600 + 1800) / STEP + 1
    narrow = ValidationPolicy(lead_window_seconds=0, recovery_seconds=0)
    assert TIMES[unhealthy_mask(TIMES, [BREACH], narrow)][0] == BREACH.start
    assert not unhealthy_mask(TIMES, []).any()
