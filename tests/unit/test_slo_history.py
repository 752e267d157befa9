"""The pure parts of the SLO history: due instants, onsets and breach periods, period reports,
and the merge of stored breaches into validation evidence."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import numpy as np
import pytest

from slo_pipeline.core.slo_gate import Interval
from slo_pipeline.core.slo_history import (
    BreachPeriod,
    Snapshot,
    absorb,
    breach_periods,
    due_instants,
    history_covered,
    history_gap,
    interval_ratio,
    merge_history_breaches,
    onsets_between,
    parse_period,
    period_of,
    period_report,
    previous_periods,
    severity_masks,
)

HOUR = 3600.0
NOV = datetime(2026, 11, 1, tzinfo=UTC).timestamp()
DEC = datetime(2026, 12, 1, tzinfo=UTC).timestamp()


def snap(taken_at: float, ratio: float | None, weight: float | None, **kw: object) -> Snapshot:
    fields: dict[str, object] = {
        "slo": "checkout",
        "taken_at": taken_at,
        "interval_seconds": HOUR,
        "objective": 99.5,
        "time_period": "30d",
        "recorded": True,
        "period_error_ratio": 0.001,
        "budget_remaining": 0.8,
        "burn_rates": {"fast": 0.5},
        "interval_error_ratio": ratio,
        "interval_weight": weight,
        "pages": 0,
        "tickets": 0,
    }
    fields.update(kw)
    return Snapshot(**fields)  # type: ignore[arg-type]


def test_due_instants_are_the_multiples_after_the_last_snapshot() -> None:
    assert due_instants(
        last_taken=10 * HOUR, now=13 * HOUR + 5, interval=HOUR, lookback=86400, max_count=99
    ) == [
        11 * HOUR,
        12 * HOUR,
        13 * HOUR,
    ]
    # Re-running at the same moment: nothing is due twice.
    assert (
        due_instants(last_taken=13 * HOUR, now=13 * HOUR + 5, interval=HOUR, lookback=86400, max_count=99)
        == []
    )


def test_first_pass_reaches_back_the_lookback_and_a_long_gap_keeps_the_newest() -> None:
    assert due_instants(
        last_taken=None, now=10 * HOUR + 1, interval=HOUR, lookback=3 * HOUR, max_count=99
    ) == [
        8 * HOUR,
        9 * HOUR,
        10 * HOUR,
    ]
    assert due_instants(last_taken=0.0, now=100 * HOUR, interval=HOUR, lookback=0, max_count=2) == [
        99 * HOUR,
        100 * HOUR,
    ]
    with pytest.raises(ValueError, match="positive"):
        due_instants(last_taken=None, now=1.0, interval=0.0, lookback=1.0, max_count=1)


def test_interval_ratio_needs_traffic() -> None:
    assert interval_ratio(2.0, 400.0) == 0.005
    assert interval_ratio(0.0, 0.0) is None
    assert interval_ratio(math.nan, 10.0) is None


def test_onsets_count_only_starts_inside_the_interval() -> None:
    times = np.arange(0.0, 10.0) * 60
    # Already holding at the first grid point (before the interval): not an onset; then one at 6.
    mask = np.array([1, 1, 0, 0, 0, 0, 1, 1, 0, 0], dtype=bool)
    assert onsets_between(times, mask, start=0.0, end=540.0) == 1
    assert onsets_between(times, mask, start=0.0, end=300.0) == 0
    assert onsets_between(times, mask, start=300.0, end=360.0) == 1


def test_severity_masks_and_breach_periods() -> None:
    times = np.arange(0.0, 8.0) * 60
    firing = {
        "fast": np.array([0, 1, 1, 0, 0, 0, 0, 0], dtype=bool),
        "medium": np.array([0, 0, 1, 1, 0, 0, 0, 0], dtype=bool),
        "slow": np.array([0, 0, 0, 0, 0, 1, 1, 1], dtype=bool),
    }
    masks = severity_masks(firing, {"fast": "page", "medium": "page", "slow": "ticket"})
    assert masks["page"].tolist() == [False, True, True, True, False, False, False, False]
    periods = breach_periods(times, masks)
    # Overlapping page tiers are one page period; a run up to the end covers its last step.
    assert periods == [BreachPeriod("page", 60.0, 240.0), BreachPeriod("ticket", 300.0, 480.0)]


def test_absorb_joins_overlapping_and_touching_periods_only() -> None:
    stored = [Interval(0, 100), Interval(160, 200), Interval(500, 600)]
    assert absorb(stored, Interval(90, 170), gap=0) == Interval(0, 200)
    assert absorb(stored, Interval(260, 300), gap=60) == Interval(160, 300)
    assert absorb(stored, Interval(300, 400), gap=60) == Interval(300, 400)
    # Absorbing what is already stored changes nothing (a re-run is idempotent).
    assert absorb(stored, Interval(0, 100), gap=30) == Interval(0, 100)


def test_periods_parse_strictly() -> None:
    assert parse_period("2026-11") == (NOV, DEC)
    assert parse_period("2024-02")[1] - parse_period("2024-02")[0] == 29 * 86400
    for bad in ("2026-13", "2026-00", "2026-1", "november", "2026-11-01", ""):
        with pytest.raises(ValueError, match="not a month"):
            parse_period(bad)
    assert period_of(NOV) == "2026-11" and period_of(DEC - 1) == "2026-11"
    assert previous_periods("2026-02", 3) == ["2026-02", "2026-01", "2025-12"]


def test_period_report_weights_intervals_by_events() -> None:
    snapshots = [
        snap(NOV + HOUR, 0.0, 1000.0),
        snap(NOV + 2 * HOUR, 0.5, 10.0, pages=1, burn_rates={"fast": 20.0}),
        snap(NOV + 3 * HOUR, 0.001, 990.0, tickets=2, budget_remaining=0.4),
        snap(NOV + 4 * HOUR, None, None, recorded=False, budget_remaining=None, burn_rates={}),  # no data
        snap(NOV, 0.9, 1e9),  # 00:00 on the 1st closes October: not in November
        snap(DEC + HOUR, 0.9, 1e9),
    ]
    breaches = [
        BreachPeriod("page", NOV + 1.5 * HOUR, NOV + 2 * HOUR, (7,)),
        BreachPeriod("page", DEC + 10, DEC + 20),
    ]
    report = period_report("checkout", "2026-11", snapshots, breaches, as_of=NOV + 4 * HOUR + 30)

    assert (report.snapshots, report.recorded_snapshots, report.expected_snapshots) == (4, 3, 4)
    assert report.coverage == 0.75
    assert report.sli_error_ratio == pytest.approx((5 + 0.99) / 2000)
    assert report.compliance == pytest.approx(1 - 5.99 / 2000)
    # 0.3% errors against a 0.5% budget: compliant, 40% of the month's budget left.
    assert report.meets_objective is True
    assert report.budget_remaining == pytest.approx(1 - (5.99 / 2000) / 0.005)
    assert report.rolling_budget_remaining == 0.4
    assert report.worst_burn == {"fast": 20.0}
    # The interval's peak (a burst between two instants) wins over the instant's value.
    peaked = [*snapshots[:3], snap(NOV + 5 * HOUR, 0.0, 1.0, peak_burn_rates={"fast": 31.0, "slow": 2.0})]
    assert period_report("checkout", "2026-11", peaked, [], as_of=DEC).worst_burn == {
        "fast": 31.0,
        "slow": 2.0,
    }
    assert (report.pages, report.tickets) == (1, 2)
    assert report.breaches == [breaches[0]]
    assert report.objectives == [99.5]


def test_period_report_without_history_says_so_and_notes_objective_changes() -> None:
    empty = period_report("checkout", "2026-11", [], [], as_of=DEC + 5)
    assert (empty.snapshots, empty.sli_error_ratio, empty.meets_objective, empty.coverage) == (
        0,
        None,
        None,
        0.0,
    )
    changed = period_report(
        "checkout",
        "2026-11",
        [snap(NOV + HOUR, 0.02, 100.0), snap(NOV + 2 * HOUR, 0.02, 100.0, objective=99.9)],
        [],
        as_of=DEC + 5,
    )
    assert changed.objectives == [99.5, 99.9] and changed.objective == 99.9
    assert changed.meets_objective is False and changed.budget_remaining == pytest.approx(1 - 0.02 / 0.001)
    assert changed.expected_snapshots == 30 * 24 and changed.coverage == pytest.approx(2 / 720)
    assert changed.recorded_snapshots == 2


def test_history_fills_only_the_part_prometheus_no_longer_holds() -> None:
    grid = np.arange(0.0, 10.0) * 100
    recorded = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1, 1], dtype=bool)
    assert history_gap(grid, recorded) == 400.0
    assert history_gap(grid, np.zeros(10, dtype=bool)) is None
    live = [Interval(500, 600)]
    stored = [Interval(50, 150), Interval(350, 450), Interval(500, 600), Interval(800, 850)]
    merged = merge_history_breaches(live, stored, start=0.0, end=900.0, prometheus_from=400.0)
    # Stored periods are clipped to [start, 400); where Prometheus has data it alone decides.
    assert merged == [Interval(50, 150), Interval(350, 400), Interval(500, 600)]
    everything = merge_history_breaches([], stored, start=100.0, end=900.0, prometheus_from=None)
    assert everything == [Interval(100, 150), Interval(350, 450), Interval(500, 600), Interval(800, 850)]
    assert history_covered(grid, [Interval(0, 300)], prometheus_from=400.0) == 3  # 100, 200, 300
    assert history_covered(grid, [Interval(0, 900)], prometheus_from=400.0) == 3
