"""What happened to an SLO over a window, for validating a candidate model against it.

Breaches and pages come from Prometheus, confirmed incidents from the operators' feedback in
PostgreSQL. For the part of the window Prometheus no longer holds (before its first recorded
sample), the page-severity breach periods the worker stored in `slo_breaches` are used instead
(slo/history.py); pages (onsets of the fast tier) are not stored, so lead times are measured
only where Prometheus still has the data.

- A **breach** is an interval where a *paging* burn-rate tier's condition held: the error ratio
  over both of its windows above `factor x error budget` (30d: 14.4x over 5m and 1h, 6x over 30m
  and 6h). `slo:current_burn_rate:ratio > 1` is not a breach: a 5-minute burn rate flickers
  above 1x many times a day in a healthy service that spends 2/3 of its budget (80 times in two
  days of the demo's simulated traffic), and every flicker would be an "episode" no detector can
  catch. Ticket tiers are steady leaks (the 1x/3d tier holds for hours after any incident), not
  episodes a detector must alarm on.
- A **page** is an onset of the fast tier (14.4x for 30d), the page whose lead time we measure.

Both are derived from the recording rules (`slo:sli_error:ratio_rate<window>`,
`slo:error_budget:ratio`, `slo:time_period:days`), evaluating the alert rules' own condition,
and joined with the `ALERTS` series of the burn-rate alerts. `ALERTS` alone is not enough:
`promtool tsdb create-blocks-from rules` backfills recording rules but skips alerting rules, and
history recorded before the alert rules existed has no `ALERTS` either; where `ALERTS` exists,
it fired on the very same condition (the burn-rate alerts have no `for:`), so the union adds
nothing but what the derivation could miss.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import replace

import numpy as np

from slo_pipeline.adapters import postgres as db
from slo_pipeline.adapters import slo_history as history_store
from slo_pipeline.adapters.prometheus import PrometheusQueryError, fetch_range, step_grid
from slo_pipeline.core.slo_gate import Interval, SloEvidence, intervals_where, onset_times
from slo_pipeline.core.slo_history import history_covered, history_gap, merge_history_breaches
from slo_pipeline.settings import Settings
from slo_pipeline.slo.burnrate import TIERS, WINDOW_SECONDS, BurnTier
from slo_pipeline.slo.rulegen import sli_error_metric

log = logging.getLogger(__name__)

PAGE_TIERS: tuple[BurnTier, ...] = tuple(tier for tier in TIERS if tier.severity == "page")
# The page whose lead time validation measures: the fastest tier (14.4x over 5m/1h for 30d).
LEAD_TIME_TIER: BurnTier = PAGE_TIERS[0]
# Recorded whatever the traffic (`vector(budget)`): present means the SLO's rules were running.
RECORDED_MARKER = "slo:error_budget:ratio"

_CONFIRMED = """
    SELECT extract(epoch FROM starts_at), extract(epoch FROM coalesce(ends_at, now()))
      FROM incidents
     WHERE (detector = %s OR slo = %s)
       AND feedback = 'true_positive'
       AND starts_at <= to_timestamp(%s) AND coalesce(ends_at, now()) >= to_timestamp(%s)
"""


def tier_condition_query(slo: str, tier: BurnTier, *, include_alerts: bool = True) -> str:
    """PromQL, present wherever `tier`'s burn-rate alert condition held for `slo`, from recorded series.

    The same test as the generated alert rule (`slo.rulegen._alert_expr`): the error ratio over
    the short and the long window both above `factor x budget`, with the factor computed from the
    recorded period as `burnrate.BurnTier.factor` does (`share x period / long window`, at least 1).
    With `include_alerts`, also wherever the tier's `ALERTS` series was firing.
    """
    selector = f'{{slo="{_escape(slo)}"}}'
    per_period_day = float(tier.budget_percent) / 100.0 * 86400.0 / WINDOW_SECONDS[tier.long]
    threshold = (
        f"clamp_min(slo:time_period:days{selector} * {per_period_day:g}, 1) * {RECORDED_MARKER}{selector}"
    )

    def above(window: str) -> str:
        return f"({sli_error_metric(window)}{selector} > ignoring (sloth_window) ({threshold}))"

    condition = f"({above(tier.short)} and ignoring (sloth_window) {above(tier.long)})"
    if not include_alerts:
        return f"max{condition}"
    alerts = f'ALERTS{{slo="{_escape(slo)}", burn_tier="{tier.burn_tier}", alertstate="firing"}}'
    return f"max({condition} or {alerts})"


def recorded_query(slo: str) -> str:
    return f'max({RECORDED_MARKER}{{slo="{_escape(slo)}"}})'


def evidence_from_series(
    grid: np.ndarray,
    *,
    tier_firing: Mapping[str, np.ndarray],
    recorded: np.ndarray,
    confirmed_incidents: list[Interval],
) -> SloEvidence:
    """Turn per-tier firing masks on `grid` into breaches (any page tier) and pages (fast tier onsets)."""
    missing = {tier.burn_tier for tier in PAGE_TIERS} - set(tier_firing)
    if missing:
        raise ValueError(f"tier_firing lacks the page tiers {sorted(missing)}")
    breaching = np.zeros(len(grid), dtype=bool)
    for tier in PAGE_TIERS:
        breaching |= np.asarray(tier_firing[tier.burn_tier], dtype=bool)
    return SloEvidence(
        breaches=intervals_where(grid, breaching),
        page_times=onset_times(grid, np.asarray(tier_firing[LEAD_TIME_TIER.burn_tier], dtype=bool)),
        confirmed_incidents=confirmed_incidents,
        recorded_samples=int(np.asarray(recorded, dtype=bool).sum()),
    )


def _present(settings: Settings, query: str, start: float, end: float, step: float) -> np.ndarray:
    """Per grid point of `[start, end]`: did `query` (one series after `max`) have a sample?"""
    block = fetch_range(settings.prometheus, query, start=start, end=end, step_seconds=step)
    if block.n_series == 0:
        return np.zeros(len(block.timestamps), dtype=bool)
    present: np.ndarray = np.isfinite(block.values).any(axis=1)
    return present


def fetch_slo_evidence(
    settings: Settings, *, slo: str, detector: str, timestamps: np.ndarray, step_seconds: float
) -> SloEvidence:
    start, end = float(timestamps[0]), float(timestamps[-1])
    try:
        tier_firing = {
            tier.burn_tier: _present(settings, tier_condition_query(slo, tier), start, end, step_seconds)
            for tier in PAGE_TIERS
        }
        recorded = _present(settings, recorded_query(slo), start, end, step_seconds)
    except PrometheusQueryError as err:
        raise PrometheusQueryError(f"could not read the history of SLO {slo!r}: {err}") from err
    # The grid every fetch_range above was aligned to (multiples of the step in [start, end]).
    grid = step_grid(start, end, step_seconds)
    prometheus_from = history_gap(grid, recorded)
    conn = db.connect(settings.database_url)
    try:
        with conn.cursor() as cur:
            cur.execute(_CONFIRMED, (detector, slo, end, start))
            confirmed = [Interval(float(a), float(b)) for a, b in cur.fetchall()]
        stored: list[Interval] = []
        windows: list[Interval] = []
        if prometheus_from is None or prometheus_from > start:
            gap_end = end if prometheus_from is None else prometheus_from
            stored = [
                Interval(b.start, b.end)
                for b in history_store.load_breaches(conn, slo, start, gap_end, severity="page")
            ]
            windows = [
                Interval(s.taken_at - s.interval_seconds, s.taken_at)
                for s in history_store.load_snapshots(conn, slo, start, gap_end + 86400.0)
                if s.recorded
            ]
    finally:
        conn.close()
    evidence = evidence_from_series(
        grid, tier_firing=tier_firing, recorded=recorded, confirmed_incidents=confirmed
    )
    if not stored and not windows:
        return evidence
    # Where Prometheus no longer holds the range, the breach periods the worker stored take over.
    merged = merge_history_breaches(
        evidence.breaches, stored, start=start, end=end, prometheus_from=prometheus_from
    )
    log.info(
        "SLO %r: %d breach period(s) before %s come from the stored history (Prometheus has none there)",
        slo,
        len(merged) - len(evidence.breaches),
        "the end" if prometheus_from is None else f"{prometheus_from:.0f}",
    )
    return replace(
        evidence,
        breaches=merged,
        recorded_samples=evidence.recorded_samples + history_covered(grid, windows, prometheus_from),
    )


def _escape(value: str) -> str:
    # SLO names are restricted ([A-Za-z0-9][A-Za-z0-9_.-]*), but a label matcher must never be
    # breakable by whatever string reaches it.
    return value.replace("\\", "\\\\").replace('"', '\\"')
