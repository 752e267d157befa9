"""SLO history kept in PostgreSQL: snapshot instants, breach periods, period reports. Pure.

Prometheus keeps 15 days by default while SLO periods are 28 or 30 days. The worker therefore
copies, at every scheduled instant (a multiple of the snapshot interval), what the SLO recording
rules say into `slo_snapshots`, and the periods in which a burn-rate alert condition held into
`slo_breaches`. This module decides which instants are due, turns fetched series into snapshot
rows and breach periods, sums a calendar period up into a report, and merges stored breach
periods into the evidence validation reads where Prometheus no longer has them.
"""

from __future__ import annotations

import calendar
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np

from slo_pipeline.core.slo_gate import Interval, intervals_where, merge_intervals

SEVERITIES = ("page", "ticket")
PERIOD_PATTERN = re.compile(r"^(\d{4})-(\d{2})$")


@dataclass(frozen=True)
class Snapshot:
    """One SLO at one scheduled instant `taken_at` (epoch seconds)."""

    slo: str
    taken_at: float
    interval_seconds: float
    objective: float  # percent, as in the spec
    time_period: str
    recorded: bool
    period_error_ratio: float | None  # rolling over the SLO's period, at taken_at
    budget_remaining: float | None  # rolling, 1 = untouched, < 0 = overspent
    burn_rates: dict[str, float]  # burn tier -> burn rate (the smaller of its two windows)
    interval_error_ratio: float | None  # (taken_at - interval, taken_at] alone
    interval_weight: float | None  # events (events SLI) or covered seconds (raw SLI) in it
    pages: int
    tickets: int
    # burn tier -> highest burn rate within the interval (one-minute resolution)
    peak_burn_rates: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class BreachPeriod:
    severity: str
    start: float
    end: float
    incident_ids: tuple[int, ...] = ()


def due_instants(
    *, last_taken: float | None, now: float, interval: float, lookback: float, max_count: int
) -> list[float]:
    """Scheduled instants (multiples of `interval`) after `last_taken` and at most `now`.

    With no snapshot yet, start `lookback` seconds back (what Prometheus still holds). Only the
    newest `max_count` are returned: after a long outage the oldest are lost to retention anyway.
    """
    if not interval > 0 or not math.isfinite(interval):
        raise ValueError(f"snapshot interval must be a positive number of seconds, got {interval}")
    newest = math.floor(now / interval) * interval
    oldest = now - lookback if last_taken is None else last_taken + interval
    first = max(math.ceil(oldest / interval) * interval, newest - (max_count - 1) * interval)
    if first > newest:
        return []
    return [float(t) for t in np.arange(first, newest + interval / 2, interval)]


def interval_ratio(numerator: float, denominator: float) -> float | None:
    """Error ratio of one interval from sums of the 5m helper series; None without traffic."""
    if not (math.isfinite(numerator) and math.isfinite(denominator)) or denominator <= 0:
        return None
    return float(numerator) / float(denominator)


def severity_masks(
    tier_firing: Mapping[str, np.ndarray], tier_severity: Mapping[str, str]
) -> dict[str, np.ndarray]:
    """Per severity: where any of its tiers' condition held (Alertmanager inhibits the slower
    tiers of one severity, so overlapping tiers are one page or one ticket)."""
    masks: dict[str, np.ndarray] = {}
    for tier, firing in tier_firing.items():
        severity = tier_severity[tier]
        flags = np.asarray(firing, dtype=bool)
        masks[severity] = masks[severity] | flags if severity in masks else flags.copy()
    return masks


def onsets_between(times: np.ndarray, mask: np.ndarray, start: float, end: float) -> int:
    """Onsets (False -> True) in `(start, end]`. The first grid point has no predecessor, so a
    condition already holding there is not an onset: the caller's grid begins before `start`."""
    flags = np.asarray(mask, dtype=bool)
    onset = flags & ~np.concatenate(([True], flags[:-1]))
    return int((onset & (times > start) & (times <= end)).sum())


def breach_periods(times: np.ndarray, masks: Mapping[str, np.ndarray]) -> list[BreachPeriod]:
    """Runs of each severity's mask as periods (a sample stands for its step)."""
    if len(times) < 2:
        return []
    periods: list[BreachPeriod] = []
    for severity in SEVERITIES:
        if severity in masks:
            periods.extend(
                BreachPeriod(severity, i.start, i.end) for i in intervals_where(times, masks[severity])
            )
    return periods


def absorb(existing: Sequence[Interval], new: Interval, gap: float) -> Interval:
    """`new` joined with every stored period it overlaps or touches (within `gap`): one period,
    so a breach seen by two passes (or re-fetched by the same one) is stored once."""
    start, end = new.start, new.end
    for period in existing:
        if period.start <= end + gap and period.end >= start - gap:
            start, end = min(start, period.start), max(end, period.end)
    return Interval(start, end)


def parse_period(text: str) -> tuple[float, float]:
    """`YYYY-MM` -> [first instant of that UTC month, first instant of the next)."""
    match = PERIOD_PATTERN.match(text.strip())
    if match is None:
        raise ValueError(f"period {text!r} is not a month: expected YYYY-MM, e.g. 2026-11")
    year, month = int(match.group(1)), int(match.group(2))
    if not 1 <= month <= 12 or year < 1970:
        raise ValueError(f"period {text!r} is not a month: the month must be 01 to 12 (year 1970 or later)")
    start = datetime(year, month, 1, tzinfo=UTC)
    days = calendar.monthrange(year, month)[1]
    return start.timestamp(), start.timestamp() + days * 86400.0


def period_of(epoch: float) -> str:
    """The `YYYY-MM` period holding `epoch` (UTC)."""
    return datetime.fromtimestamp(epoch, tz=UTC).strftime("%Y-%m")


def previous_periods(period: str, count: int) -> list[str]:
    """`period` and the `count - 1` months before it, newest first."""
    start, _ = parse_period(period)
    moment = datetime.fromtimestamp(start, tz=UTC)
    year, month = moment.year, moment.month
    out = []
    for _ in range(count):
        out.append(f"{year:04d}-{month:02d}")
        year, month = (year, month - 1) if month > 1 else (year - 1, 12)
    return out


@dataclass(frozen=True)
class PeriodReport:
    """A calendar period's compliance, summed up from its snapshots and breach periods."""

    slo: str
    period: str
    start: float
    end: float
    snapshots: int
    recorded_snapshots: int  # of those, taken while Prometheus held the SLO's rules
    expected_snapshots: int  # scheduled instants in the period up to `as_of`
    objectives: list[float]  # every objective in force during the period, in order
    sli_error_ratio: float | None  # errors / events (or mean ratio) over the period's intervals
    budget_remaining: float | None  # 1 - sli / budget for the calendar period; None without data
    meets_objective: bool | None
    rolling_budget_remaining: float | None  # the last snapshot's rolling value
    worst_burn: dict[str, float]  # burn tier -> highest burn rate within the period's intervals
    pages: int
    tickets: int
    breaches: list[BreachPeriod] = field(default_factory=list)

    @property
    def objective(self) -> float | None:
        return self.objectives[-1] if self.objectives else None

    @property
    def coverage(self) -> float:
        """Share of the scheduled instants with a snapshot that had data: a worker that was down,
        or Prometheus holding nothing of the SLO, lowers it; it never reads as a healthy month."""
        return self.recorded_snapshots / self.expected_snapshots if self.expected_snapshots else 0.0

    @property
    def compliance(self) -> float | None:
        return None if self.sli_error_ratio is None else 1.0 - self.sli_error_ratio


def period_report(
    slo: str,
    period: str,
    snapshots: Sequence[Snapshot],
    breaches: Sequence[BreachPeriod],
    *,
    as_of: float,
) -> PeriodReport:
    """Sum `period` up from the snapshots taken in it (others are ignored)."""
    start, end = parse_period(period)
    inside = sorted((s for s in snapshots if start < s.taken_at <= end), key=lambda s: s.taken_at)
    weighted = [
        s
        for s in inside
        if s.recorded
        and s.interval_error_ratio is not None
        and s.interval_weight is not None
        and s.interval_weight > 0
    ]
    weight = sum(float(s.interval_weight or 0.0) for s in weighted)
    sli = (
        sum(float(s.interval_error_ratio or 0.0) * float(s.interval_weight or 0.0) for s in weighted) / weight
        if weight > 0
        else None
    )
    objectives: list[float] = []
    for s in inside:
        if not objectives or objectives[-1] != s.objective:
            objectives.append(s.objective)
    budget_ratio = 1.0 - objectives[-1] / 100.0 if objectives else None
    remaining = None
    meets = None
    if sli is not None and budget_ratio is not None:
        meets = sli <= budget_ratio + 1e-15
        remaining = 1.0 - sli / budget_ratio if budget_ratio > 0 else (1.0 if sli == 0 else -math.inf)
    worst: dict[str, float] = {}
    for s in inside:
        # The interval's peak; the instant's value for rows stored before peaks were kept.
        for tier, value in {**s.burn_rates, **s.peak_burn_rates}.items():
            if math.isfinite(value):
                worst[tier] = max(worst.get(tier, value), value)
    rolling = next((s.budget_remaining for s in reversed(inside) if s.budget_remaining is not None), None)
    interval = inside[-1].interval_seconds if inside else None
    expected = 0
    if interval:
        last = min(end, as_of)
        expected = max(0, math.floor(last / interval) - math.floor(start / interval))
    return PeriodReport(
        slo=slo,
        period=period,
        start=start,
        end=end,
        snapshots=len(inside),
        recorded_snapshots=sum(1 for s in inside if s.recorded),
        expected_snapshots=max(expected, len(inside)),
        objectives=objectives,
        sli_error_ratio=sli,
        budget_remaining=remaining,
        meets_objective=meets,
        rolling_budget_remaining=rolling,
        worst_burn=worst,
        pages=sum(s.pages for s in inside),
        tickets=sum(s.tickets for s in inside),
        breaches=sorted((b for b in breaches if b.start < end and b.end > start), key=lambda b: b.start),
    )


def history_gap(grid: np.ndarray, recorded: np.ndarray) -> float | None:
    """End of the part of `grid` Prometheus no longer holds: the first grid point with a recorded
    sample (None: it holds nothing of the range, so all of it comes from the history)."""
    present = np.flatnonzero(np.asarray(recorded, dtype=bool))
    return float(grid[present[0]]) if len(present) else None


def merge_history_breaches(
    prometheus_breaches: Sequence[Interval],
    history_breaches: Sequence[Interval],
    *,
    start: float,
    end: float,
    prometheus_from: float | None,
) -> list[Interval]:
    """Prometheus' breaches, plus the stored ones clipped to `[start, prometheus_from)`: the
    part of the range Prometheus no longer holds (all of it when `prometheus_from` is None).
    Where Prometheus has data it is the source, so a stored period never doubles a live one."""
    gap_end = end if prometheus_from is None else min(end, prometheus_from)
    added = [
        Interval(max(b.start, start), min(b.end, gap_end))
        for b in history_breaches
        if b.start < gap_end and b.end > start
    ]
    return merge_intervals([*prometheus_breaches, *added])


def history_covered(grid: np.ndarray, windows: Sequence[Interval], prometheus_from: float | None) -> int:
    """Grid points before `prometheus_from` that a recorded snapshot's interval covers: evidence
    the history adds where Prometheus has none."""
    times = np.asarray(grid, dtype=np.float64)
    covered = np.zeros(len(times), dtype=bool)
    for window in windows:
        covered |= (times > window.start) & (times <= window.end)
    if prometheus_from is not None:
        covered &= times < prometheus_from
    return int(covered.sum())
