"""Snapshot every stored SLO's compliance from Prometheus into PostgreSQL (`slo_snapshots`,
`slo_breaches`), and read it back as period reports.

A pass (run by the worker every SLO_PIPELINE_SLO_HISTORY_INTERVAL seconds) takes, per SLO, every
scheduled instant since its last snapshot (the first pass reaches back `LOOKBACK_SECONDS`, what
Prometheus' default retention still holds), all in a few range queries whose step is the
interval, so each answer's points are exactly the instants:

- rolling values at the instant: the period error ratio (`slo:sli_error:ratio_rate<period>`),
  the remaining budget, each burn tier's burn rate (the smaller of its two windows), and that
  burn rate's peak within the interval (a one-minute subquery, so a burst between two instants
  still shows);
- the interval alone: the mean error and event rates of the 5m helper series
  (`slo:sli_error_events:rate5m`, `slo:sli_total_events:rate5m`; the mean 5m ratio for a raw
  SLI) and the events they stand for, so any calendar month is the sum of its intervals;
- pages and tickets: onsets of the burn-rate alert conditions (evaluated from the recording rules
  and joined with `ALERTS`, as slo/evidence.py does), on a one-minute grid; their runs are the
  breach periods.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from slo_pipeline.adapters import postgres as db
from slo_pipeline.adapters import slo_history as history_store
from slo_pipeline.adapters.prometheus import PrometheusQueryError, SeriesBlock, fetch_range
from slo_pipeline.adapters.prometheus_connection import PrometheusAuthError, PrometheusSecretError
from slo_pipeline.core.slo_history import (
    BreachPeriod,
    Snapshot,
    breach_periods,
    due_instants,
    interval_ratio,
    onsets_between,
    severity_masks,
)
from slo_pipeline.settings import Settings
from slo_pipeline.slo.burnrate import TIERS
from slo_pipeline.slo.evidence import RECORDED_MARKER, tier_condition_query
from slo_pipeline.slo.rulegen import (
    ERROR_EVENTS_RECORD,
    SHORTEST_WINDOW,
    TOTAL_EVENTS_RECORD,
    sli_error_metric,
)
from slo_pipeline.slo.spec import SLO
from slo_pipeline.slo.store import load_slos

log = logging.getLogger(__name__)

# Prometheus keeps 15 days by default: a first pass copies what is left of them.
LOOKBACK_SECONDS = 14 * 86400.0
# An instant is taken only this long after it passed, so the rule evaluations up to it have landed
# (Prometheus evaluates every 15 s by default) and the snapshot is complete when stored.
SETTLE_SECONDS = 30.0
# Burn-rate conditions are read on this grid: finer than any window pair's short window (5m).
CONDITION_STEP_SECONDS = 60.0
ID_LABELS = "sloth_id, sloth_service, sloth_slo"


@dataclass(frozen=True)
class PassResult:
    slos: int
    snapshots_inserted: int
    breaches_written: int
    failed: list[str]


def _selector(slo: SLO) -> str:
    # SLO names are spec-validated ([A-Za-z0-9][A-Za-z0-9_.-]*): nothing to escape.
    return f'{{slo="{slo.name}"}}'


def tier_burn_query(slo: SLO, short: str, long: str) -> str:
    """A tier's burn rate: the smaller of its two windows' error ratio / error budget."""

    def window(w: str) -> str:
        return (
            f"({sli_error_metric(w)}{_selector(slo)} / on ({ID_LABELS}) group_left () "
            f"slo:error_budget:ratio{_selector(slo)})"
        )

    return f"min({window(short)} or {window(long)})"


def interval_queries(slo: SLO, interval: float) -> tuple[str, str]:
    """(numerator, denominator) over the interval ending at each instant: mean error and event
    rates for an events SLI, the summed mean 5m ratio and the number of series for a raw one.

    Means (`avg_over_time`), not sums of samples: backfilled rules are evaluated at another
    interval than live ones, and a sum would weigh their hours differently; mean rate x seconds
    is the events whatever the evaluation interval.
    """
    rng = f"[{int(interval)}s]"
    sel = _selector(slo)
    if slo.block.sli.events is not None:
        return (
            f"sum(avg_over_time({ERROR_EVENTS_RECORD}{sel}{rng}))",
            f"sum(avg_over_time({TOTAL_EVENTS_RECORD}{sel}{rng}))",
        )
    short = sli_error_metric(SHORTEST_WINDOW)
    return f"sum(avg_over_time({short}{sel}{rng}))", f"count(avg_over_time({short}{sel}{rng}))"


def _values(settings: Settings, query: str, start: float, end: float, step: float) -> np.ndarray:
    """The query's first series on the grid (NaN where absent); all NaN when it has none."""
    block: SeriesBlock = fetch_range(settings.prometheus, query, start=start, end=end, step_seconds=step)
    if block.n_series == 0:
        return np.full(len(block.timestamps), np.nan)
    return np.asarray(block.values[:, 0], dtype=np.float64)


def _present(
    settings: Settings, query: str, start: float, end: float, step: float
) -> tuple[np.ndarray, np.ndarray]:
    block = fetch_range(settings.prometheus, query, start=start, end=end, step_seconds=step)
    present = (
        np.isfinite(block.values).any(axis=1)
        if block.n_series
        else np.zeros(len(block.timestamps), dtype=bool)
    )
    return block.timestamps, present


def _finite(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def collect(
    settings: Settings, slo: SLO, instants: Sequence[float]
) -> tuple[list[Snapshot], list[BreachPeriod]]:
    """Snapshots at `instants` (consecutive multiples of the interval) and the breach periods seen
    from one interval before the first to the last."""
    interval = settings.slo_history_interval_seconds
    first, last = float(instants[0]), float(instants[-1])
    sel = _selector(slo)

    def at_instants(query: str) -> np.ndarray:
        return _values(settings, query, first, last, interval)

    recorded = np.isfinite(at_instants(f"max({RECORDED_MARKER}{sel})"))
    period_ratio = at_instants(f"max({sli_error_metric(slo.block.time_period)}{sel})")
    budget = at_instants(f"max(slo:period_error_budget_remaining:ratio{sel})")
    burns = {tier.burn_tier: at_instants(tier_burn_query(slo, tier.short, tier.long)) for tier in TIERS}
    window = f"[{int(interval)}s:{int(CONDITION_STEP_SECONDS)}s]"
    peaks = {
        tier.burn_tier: at_instants(f"max_over_time(({tier_burn_query(slo, tier.short, tier.long)}){window})")
        for tier in TIERS
    }
    numerator_query, denominator_query = interval_queries(slo, interval)
    numerator, denominator = at_instants(numerator_query), at_instants(denominator_query)

    # One grid step before the first interval, so a condition already holding then is no onset.
    grid_start = first - interval - CONDITION_STEP_SECONDS
    firing: dict[str, np.ndarray] = {}
    times = np.empty(0)
    for tier in TIERS:
        times, firing[tier.burn_tier] = _present(
            settings, tier_condition_query(slo.name, tier), grid_start, last, CONDITION_STEP_SECONDS
        )
    masks = severity_masks(firing, {tier.burn_tier: tier.severity for tier in TIERS})

    snapshots = []
    for i, taken_at in enumerate(instants):
        # Events SLI: mean events per second x seconds = events. Raw SLI: series x seconds covered.
        weight = denominator[i] * interval if np.isfinite(denominator[i]) else np.nan
        snapshots.append(
            Snapshot(
                slo=slo.name,
                taken_at=float(taken_at),
                interval_seconds=interval,
                objective=float(slo.block.objective),
                time_period=slo.block.time_period,
                recorded=bool(recorded[i]),
                period_error_ratio=_finite(period_ratio[i]),
                budget_remaining=_finite(budget[i]),
                burn_rates={t: float(v[i]) for t, v in burns.items() if np.isfinite(v[i])},
                interval_error_ratio=interval_ratio(numerator[i], denominator[i]),
                interval_weight=_finite(weight),
                pages=onsets_between(times, masks["page"], taken_at - interval, taken_at),
                tickets=onsets_between(times, masks["ticket"], taken_at - interval, taken_at),
                peak_burn_rates={t: float(v[i]) for t, v in peaks.items() if np.isfinite(v[i])},
            )
        )
    return snapshots, breach_periods(times, masks)


def snapshot_pass(
    settings: Settings, *, now: float | None = None, max_instants: int | None = None
) -> PassResult:
    """One pass over every stored SLO; an SLO whose Prometheus reads fail is skipped (named in
    `failed`) and retried at the next pass, the others are stored."""
    moment = time.time() if now is None else now
    interval = settings.slo_history_interval_seconds
    limit = max_instants or int(LOOKBACK_SECONDS // interval) + 1
    conn = db.connect(settings.database_url, application_name="slo-pipeline-slo-history")
    try:
        slos = load_slos(conn)
        last = history_store.last_snapshot_times(conn)
        inserted = written = 0
        failed: list[str] = []
        unreachable = False
        for slo in slos:
            if unreachable:  # one wait on a dead Prometheus per pass, not one per SLO
                failed.append(slo.name)
                continue
            instants = due_instants(
                last_taken=last.get(slo.name),
                now=moment - SETTLE_SECONDS,
                interval=interval,
                lookback=LOOKBACK_SECONDS,
                max_count=limit,
            )
            if not instants:
                continue
            try:
                snapshots, breaches = collect(settings, slo, instants)
            except (PrometheusAuthError, PrometheusSecretError):
                raise  # wrong credentials are not fixed by waiting: the caller says so
            except PrometheusQueryError as err:
                log.warning(
                    "SLO history: could not read %r from Prometheus, retrying next pass: %s", slo.name, err
                )
                failed.append(slo.name)
                # Unreachable or too slow: the other SLOs would each wait out the same timeout
                # while the worker claims no retrain job.
                unreachable = err.reason in ("unreachable", "timeout")
                continue
            outcome = history_store.write_pass(
                conn,
                slo.name,
                detectors=slo.block.detectors,
                snapshots=snapshots,
                breaches=breaches,
                gap_seconds=CONDITION_STEP_SECONDS,
                relink_since=instants[0] - 86400.0,
            )
            inserted += outcome.snapshots_inserted
            written += outcome.breaches_written
    finally:
        conn.close()
    return PassResult(slos=len(slos), snapshots_inserted=inserted, breaches_written=written, failed=failed)
