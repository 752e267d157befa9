"""An SLO's compliance per calendar month, from the history the worker stores in PostgreSQL
(`slo_snapshots`, `slo_breaches`): the same reports as `slo-pipeline slo report`.

Read through `pg.connection`, so a database that is down or not migrated becomes the page's
usual "PostgreSQL ... is unavailable" box instead of a traceback.
"""

from __future__ import annotations

import altair as alt
import pandas as pd

from slo_pipeline.adapters import slo_history as history_store
from slo_pipeline.core.slo_history import (
    PeriodReport,
    parse_period,
    period_of,
    period_report,
    previous_periods,
)
from streamlit_app import pg

# The page shows the current month and this many before it.
EARLIER_PERIODS = 5


def load_period_reports(
    database_url: str, slo: str, now: float, count: int = EARLIER_PERIODS + 1
) -> list[PeriodReport]:
    """Reports of the current month and the `count - 1` before it, newest first (two queries)."""
    periods = previous_periods(period_of(now), count)
    first, _ = parse_period(periods[-1])
    _, last = parse_period(periods[0])
    with pg.connection(database_url) as conn:
        snapshots = history_store.load_snapshots(conn, slo, first, last)
        breaches = history_store.load_breaches(conn, slo, first, last)
    return [period_report(slo, period, snapshots, breaches, as_of=now) for period in periods]


def months_with_history(database_url: str, slo: str) -> list[str]:
    """Every `YYYY-MM` holding snapshots of `slo`, newest first (older than the table's six too)."""
    with pg.connection(database_url) as conn:
        return history_store.history_periods(conn, slo)


def load_period_report(database_url: str, slo: str, period: str, now: float) -> PeriodReport:
    start, end = parse_period(period)
    with pg.connection(database_url) as conn:
        snapshots = history_store.load_snapshots(conn, slo, start, end)
        breaches = history_store.load_breaches(conn, slo, start, end)
    return period_report(slo, period, snapshots, breaches, as_of=now)


def period_rows(reports: list[PeriodReport]) -> pd.DataFrame:
    """One row per period with history, oldest first (for the table and the bars)."""
    rows = [
        {
            "period": r.period,
            "compliance %": None if r.compliance is None else round(100 * r.compliance, 4),
            "objective %": r.objective,
            "met": None if r.meets_objective is None else ("yes" if r.meets_objective else "no"),
            "budget left %": None if r.budget_remaining is None else round(100 * r.budget_remaining, 1),
            "pages": r.pages,
            "tickets": r.tickets,
            "breaches": len(r.breaches),
            "data %": round(100 * r.coverage),
        }
        for r in reversed(reports)
        if r.recorded_snapshots
    ]
    columns = [
        "period",
        "compliance %",
        "objective %",
        "met",
        "budget left %",
        "pages",
        "tickets",
        "breaches",
        "data %",
    ]
    return pd.DataFrame(rows, columns=columns)


def breach_rows(report: PeriodReport) -> pd.DataFrame:
    rows = [
        {
            "severity": b.severity,
            "start": pd.Timestamp(b.start, unit="s", tz="UTC"),
            "end": pd.Timestamp(b.end, unit="s", tz="UTC"),
            "minutes": round((b.end - b.start) / 60),
            "incidents": ", ".join(str(i) for i in b.incident_ids),
        }
        for b in report.breaches
    ]
    return pd.DataFrame(rows, columns=["severity", "start", "end", "minutes", "incidents"])


def budget_bars(rows: pd.DataFrame) -> alt.LayerChart | alt.FacetChart:
    """Budget left per period as bars (red below 0: the objective was missed), a rule at 0."""
    data = rows.dropna(subset=["budget left %"])
    bars = (
        alt.Chart(data)
        .mark_bar(size=28)
        .encode(
            x=alt.X("period:N", title=None, sort=None, axis=alt.Axis(labelAngle=0)),
            y=alt.Y("budget left %:Q", title="budget left %"),
            color=alt.condition(alt.datum["budget left %"] >= 0, alt.value("#4c78a8"), alt.value("#e45756")),
            tooltip=["period", "compliance %", "objective %", "budget left %", "pages", "tickets"],
        )
    )
    zero = alt.Chart(pd.DataFrame({"y": [0]})).mark_rule(color="gray").encode(y="y:Q")
    return alt.layer(bars, zero).properties(height=180)
