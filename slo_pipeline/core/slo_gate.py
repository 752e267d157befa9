"""SLO-based validation of a candidate model before promotion. Pure: arrays in, decision out.

The question is not "is the model accurate" in the abstract but "would it have served this SLO
well over the most recent window", judged on the same timestamps for candidate and champion:

1. False alarms: alarm onsets while the SLO was healthy (outside every breach, confirmed incident
   and 14.4x page, with a margin before and after each) must fit the detector's false-alarm
   budget. The allowance is the 95th percentile of a Poisson count with mean budget x healthy
   weeks, so one alarm in two days of a one-per-week budget is not mistaken for a broken model.
2. Recall: every SLO-breach period and every confirmed incident must be caught, i.e. the model
   alarmed at some point from `lead_window` before it started until it ended.
3. Lead time: for each 14.4x burn-rate page, how long before the page the model first alarmed
   for that episode (negative: after the page). Recorded, and compared with the champion.
4. Champion: the candidate must not be worse: no lower recall, no more healthy alarms than the
   champion beyond what the budget itself expects, no materially later detection.

Inputs come from Prometheus history (breaches: where a paging burn-rate tier's condition held;
pages: the fast tier's onsets; both evaluated on the recording rules, see slo/evidence.py) and
from the incidents table (operator feedback `true_positive`); the worker fetches them, this
module only decides.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from slo_pipeline.core.heldout import ValidationDecision

SECONDS_PER_WEEK = 7 * 86400.0


@dataclass(frozen=True)
class Interval:
    """[start, end] in epoch seconds."""

    start: float
    end: float

    def __post_init__(self) -> None:
        if not self.end >= self.start:
            raise ValueError(f"interval end {self.end} is before its start {self.start}")


@dataclass(frozen=True)
class SloEvidence:
    """What Prometheus and the incident log say about an SLO over a window (slo/evidence.py fetches it)."""

    breaches: list[Interval]
    page_times: list[float]
    confirmed_incidents: list[Interval]
    # Grid points at which the SLO's recording rules had a sample; 0 means Prometheus holds no
    # history of this SLO in the window (rules not loaded, a misspelt `slo:`), so "no breach"
    # means "no evidence", not "healthy".
    recorded_samples: int = 0


@dataclass(frozen=True)
class ValidationPolicy:
    # Allowed healthy alarms: this quantile of Poisson(budget x healthy weeks x tolerance).
    budget_confidence: float = 0.95
    budget_tolerance: float = 1.0
    # An alarm this long before an event started still counts as catching it (that is the lead
    # time we want), and is not a false alarm.
    lead_window_seconds: float = 3600.0
    # After an event ends the service is still recovering; alarms then are not false either.
    recovery_seconds: float = 1800.0
    min_recall: float = 1.0
    min_healthy_hours: float = 24.0
    # The candidate may detect pages this much later (median) than the champion and still pass.
    lead_time_tolerance_seconds: float = 300.0


@dataclass(frozen=True)
class AlarmReport:
    """What one model's alarms did over the window (candidate and champion alike)."""

    healthy_alarms: int
    events_caught: int
    breaches_caught: int
    incidents_caught: int
    lead_times_seconds: list[float]  # one per page that the model caught, page time - first alarm
    pages_missed: int

    @property
    def median_lead_seconds(self) -> float | None:
        return float(np.median(self.lead_times_seconds)) if self.lead_times_seconds else None


def validate_against_slo(
    *,
    timestamps: Sequence[float] | np.ndarray,
    candidate_alarms: Sequence[bool] | np.ndarray,
    champion_alarms: Sequence[bool] | np.ndarray | None,
    breaches: Sequence[Interval],
    incidents: Sequence[Interval],
    false_alarms_per_week: float,
    page_times: Sequence[float],
    policy: ValidationPolicy | None = None,
) -> ValidationDecision:
    """Decide whether the candidate may replace the champion; every reason is kept."""
    policy = policy or ValidationPolicy()
    times = _timestamps(timestamps)
    candidate = _alarms("candidate_alarms", candidate_alarms, len(times))
    champion = None if champion_alarms is None else _alarms("champion_alarms", champion_alarms, len(times))
    if not false_alarms_per_week > 0:
        raise ValueError(f"false_alarms_per_week must be > 0, got {false_alarms_per_week}")
    step = float(np.median(np.diff(times)))
    pages = sorted(float(p) for p in page_times)
    events = episodes(breaches, incidents, pages)
    healthy = ~unhealthy_mask(times, events, policy)
    healthy_hours = float(healthy.sum()) * step / 3600.0
    expected = false_alarms_per_week * healthy_hours * 3600.0 / SECONDS_PER_WEEK * policy.budget_tolerance
    allowed = poisson_quantile(expected, policy.budget_confidence)

    def report(alarms: np.ndarray) -> AlarmReport:
        return _report(times, alarms, healthy, breaches, incidents, events, pages, policy)

    mine = report(candidate)
    metrics: dict[str, float] = {
        "slo_healthy_hours": healthy_hours,
        "slo_expected_healthy_alarms": expected,
        "slo_allowed_healthy_alarms": float(allowed),
        "slo_breaches": float(len(breaches)),
        "slo_incidents": float(len(incidents)),
        "slo_pages": float(len(pages)),
        **_report_metrics("slo_candidate", mine, len(events)),
    }
    reasons: list[str] = []
    promote = True

    if healthy_hours < policy.min_healthy_hours:
        promote = False
        reasons.append(
            f"only {healthy_hours:.1f} h of the window had a healthy SLO "
            f"(need {policy.min_healthy_hours:.0f} h) to judge false alarms; "
            "not promoting on too little evidence"
        )
    elif mine.healthy_alarms > allowed:
        promote = False
        reasons.append(
            f"{mine.healthy_alarms} alarms while the SLO was healthy ({healthy_hours:.1f} h); the budget of "
            f"{false_alarms_per_week:g}/week allows {allowed} (expected {expected:.2f})"
        )
    else:
        reasons.append(
            f"{mine.healthy_alarms} alarms while the SLO was healthy, within the {allowed} the budget allows"
        )

    if not events:
        reasons.append("no SLO breach, confirmed incident or page in the window: recall not assessed")
    else:
        recall = mine.events_caught / len(events)
        caught = (
            f"caught {mine.events_caught}/{len(events)} episodes "
            f"(breaches {mine.breaches_caught}/{len(breaches)}, confirmed incidents "
            f"{mine.incidents_caught}/{len(incidents)})"
        )
        if recall < policy.min_recall:
            promote = False
            reasons.append(f"{caught}; need {policy.min_recall:.0%}")
        else:
            reasons.append(caught)
    if pages:
        median = mine.median_lead_seconds
        lead = "no page caught" if median is None else f"median lead time {median / 60:+.1f} min"
        reasons.append(f"{lead} before the {len(pages)} burn-rate page(s); {mine.pages_missed} missed")

    if champion is not None:
        theirs = report(champion)
        metrics.update(_report_metrics("slo_champion", theirs, len(events)))
        worse = _worse_than_champion(mine, theirs, expected, policy)
        if worse:
            promote = False
            reasons.extend(worse)
        else:
            reasons.append("not worse than the champion on recall, healthy alarms and lead time")
    return ValidationDecision(promote=promote, reasons=reasons, metrics=metrics)


def _worse_than_champion(
    mine: AlarmReport, theirs: AlarmReport, expected: float, policy: ValidationPolicy
) -> list[str]:
    worse = []
    if mine.events_caught < theirs.events_caught:
        worse.append(
            f"catches fewer episodes than the champion ({mine.events_caught} < {theirs.events_caught})"
        )
    # Up to the budget's own expectation, more alarms than an unusually quiet champion is noise.
    if mine.healthy_alarms > max(theirs.healthy_alarms, math.ceil(expected)):
        worse.append(
            f"more alarms while healthy than the champion ({mine.healthy_alarms} > {theirs.healthy_alarms})"
        )
    ours, best = mine.median_lead_seconds, theirs.median_lead_seconds
    if best is not None and (ours is None or ours < best - policy.lead_time_tolerance_seconds):
        shown = "never" if ours is None else f"{ours / 60:+.1f} min"
        worse.append(f"warns later before pages than the champion ({shown} vs {best / 60:+.1f} min)")
    return worse


def _report(
    times: np.ndarray,
    alarms: np.ndarray,
    healthy: np.ndarray,
    breaches: Sequence[Interval],
    incidents: Sequence[Interval],
    events: Sequence[Interval],
    pages: Sequence[float],
    policy: ValidationPolicy,
) -> AlarmReport:
    onsets = alarms & ~np.concatenate(([False], alarms[:-1]))

    def first_alarm(interval: Interval) -> float | None:
        inside = alarms & (times >= interval.start - policy.lead_window_seconds) & (times <= interval.end)
        return float(times[np.argmax(inside)]) if inside.any() else None

    lead_times: list[float] = []
    missed = 0
    for page in pages:
        episode = next(e for e in events if e.start <= page <= e.end)
        detected = first_alarm(episode)
        if detected is None:
            missed += 1
        else:
            lead_times.append(page - detected)
    return AlarmReport(
        healthy_alarms=int((onsets & healthy).sum()),
        events_caught=sum(first_alarm(e) is not None for e in events),
        breaches_caught=sum(first_alarm(b) is not None for b in breaches),
        incidents_caught=sum(first_alarm(i) is not None for i in incidents),
        lead_times_seconds=lead_times,
        pages_missed=missed,
    )


def _report_metrics(prefix: str, report: AlarmReport, n_events: int) -> dict[str, float]:
    metrics = {
        f"{prefix}_healthy_alarms": float(report.healthy_alarms),
        f"{prefix}_episodes_caught": float(report.events_caught),
        f"{prefix}_breaches_caught": float(report.breaches_caught),
        f"{prefix}_incidents_caught": float(report.incidents_caught),
        f"{prefix}_pages_missed": float(report.pages_missed),
    }
    if n_events:
        metrics[f"{prefix}_recall"] = report.events_caught / n_events
    if report.median_lead_seconds is not None:
        metrics[f"{prefix}_median_lead_seconds"] = report.median_lead_seconds
    return metrics


def episodes(
    breaches: Sequence[Interval], incidents: Sequence[Interval], page_times: Sequence[float]
) -> list[Interval]:
    """Breaches, confirmed incidents and pages as merged episodes (a page alone is an instant)."""
    return merge_intervals([*breaches, *incidents, *(Interval(p, p) for p in page_times)])


def unhealthy_mask(
    timestamps: Sequence[float] | np.ndarray,
    events: Sequence[Interval],
    policy: ValidationPolicy | None = None,
) -> np.ndarray:
    """True where an alarm is not false: inside an episode, `lead_window` before it, `recovery` after.

    Shared with the basic gate (retrain.judge_and_register), so an alarm during an SLO breach
    that no incident row records is not counted against the false-alarm budget there either.
    """
    policy = policy or ValidationPolicy()
    times = _timestamps(timestamps)
    return _covered(times, events, before=policy.lead_window_seconds, after=policy.recovery_seconds)


def merge_intervals(intervals: Sequence[Interval]) -> list[Interval]:
    """Overlapping or touching intervals as one: a breach that is also an incident is one episode."""
    merged: list[Interval] = []
    for interval in sorted(intervals, key=lambda i: i.start):
        if merged and interval.start <= merged[-1].end:
            merged[-1] = Interval(merged[-1].start, max(merged[-1].end, interval.end))
        else:
            merged.append(interval)
    return merged


def intervals_where(
    timestamps: Sequence[float] | np.ndarray, mask: Sequence[bool] | np.ndarray
) -> list[Interval]:
    """Runs of True as intervals, each extended by one step (a sample stands for its step).

    E.g. breaches from a burn-rate tier's condition fetched with query_range.
    """
    times = _timestamps(timestamps)
    flags = _alarms("mask", mask, len(times))
    step = float(np.median(np.diff(times)))
    intervals = []
    start: float | None = None
    for t, flag in zip(times, flags, strict=True):
        if flag and start is None:
            start = float(t)
        elif not flag and start is not None:
            intervals.append(Interval(start, float(t)))
            start = None
    if start is not None:
        intervals.append(Interval(start, float(times[-1]) + step))
    return intervals


def onset_times(timestamps: Sequence[float] | np.ndarray, mask: Sequence[bool] | np.ndarray) -> list[float]:
    """Times where `mask` turns True, e.g. page times from the fast burn-rate tier's condition."""
    return [interval.start for interval in intervals_where(timestamps, mask)]


def poisson_quantile(mean: float, confidence: float) -> int:
    """Smallest k with P(X <= k) >= confidence for X ~ Poisson(mean)."""
    if mean < 0 or not 0 < confidence < 1:
        raise ValueError(f"need mean >= 0 and 0 < confidence < 1, got {mean}, {confidence}")
    if mean == 0:
        return 0
    # Iterate the pmf in log space so large means do not underflow exp(-mean).
    k = 0
    log_pmf = -mean
    cumulative = math.exp(log_pmf)
    while cumulative < confidence and k < mean + 50 * math.sqrt(mean) + 50:
        k += 1
        log_pmf += math.log(mean) - math.log(k)
        cumulative += math.exp(log_pmf)
    return k


def _covered(times: np.ndarray, intervals: Sequence[Interval], *, before: float, after: float) -> np.ndarray:
    covered = np.zeros(len(times), dtype=bool)
    for interval in intervals:
        covered |= (times >= interval.start - before) & (times <= interval.end + after)
    return covered


def _timestamps(values: Sequence[float] | np.ndarray) -> np.ndarray:
    times = np.asarray(values, dtype=np.float64)
    if times.ndim != 1 or len(times) < 2:
        raise ValueError(f"timestamps must be a 1-d series of at least 2 samples, got shape {times.shape}")
    if not np.all(np.diff(times) > 0):
        raise ValueError("timestamps must be strictly increasing")
    return times


def _alarms(name: str, values: Sequence[bool] | np.ndarray, length: int) -> np.ndarray:
    alarms = np.asarray(values, dtype=bool)
    if alarms.shape != (length,):
        raise ValueError(f"{name} must have one value per timestamp ({length}), got shape {alarms.shape}")
    return alarms
