"""A calendar period's SLO compliance report from the stored history (`slo report`, the UI).

Reading is in `load_report`; `report_text` and `report_dict` only format, so the CLI and the
SLO page say the same thing.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from slo_pipeline.adapters import postgres as db
from slo_pipeline.adapters import slo_history as history_store
from slo_pipeline.core.slo_history import PeriodReport, parse_period, period_of, period_report
from slo_pipeline.slo.burnrate import TIERS
from slo_pipeline.slo.spec import period_days


class ReportError(ValueError):
    """The request cannot be answered: a bad or future period, an SLO nobody knows."""


def check_period(period: str | None, now: float) -> str:
    """The period to report (default: the current month); ReportError names what is wrong."""
    current = period_of(now)
    if period is None:
        return current
    try:
        start, _ = parse_period(period)
    except ValueError as err:
        raise ReportError(str(err)) from None
    if start > now:
        raise ReportError(f"period {period!r} has not begun (the current period is {current})")
    return period.strip()


def known_slos(database_url: str) -> list[str]:
    """Stored SLOs and SLOs with history (a deleted SLO's record stays reportable)."""
    conn = db.connect(database_url, application_name="slo-pipeline-slo-report")
    try:
        with conn, conn.cursor() as cur:
            cur.execute("SELECT name FROM slos UNION SELECT DISTINCT slo_name FROM slo_snapshots ORDER BY 1")
            return [row[0] for row in cur.fetchall()]
    finally:
        conn.close()


def load_report(database_url: str, slo: str, period: str, *, now: float | None = None) -> PeriodReport:
    moment = time.time() if now is None else now
    start, end = parse_period(period)
    conn = db.connect(database_url, application_name="slo-pipeline-slo-report")
    try:
        snapshots = history_store.load_snapshots(conn, slo, start, end)
        breaches = history_store.load_breaches(conn, slo, start, end)
    finally:
        conn.close()
    return period_report(slo, period, snapshots, breaches, as_of=moment)


def load_reports(
    database_url: str, slo: str, periods: list[str], *, now: float | None = None
) -> list[PeriodReport]:
    return [load_report(database_url, slo, period, now=now) for period in periods]


def _time(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=UTC).strftime("%Y-%m-%d %H:%M")


def _percent(ratio: float | None, digits: int = 3) -> str:
    return "n/a" if ratio is None else f"{100 * ratio:.{digits}f}%"


def report_dict(report: PeriodReport) -> dict[str, Any]:
    """The report as JSON-ready values (ratios as fractions, times as ISO 8601 UTC)."""
    return {
        "slo": report.slo,
        "period": report.period,
        "start": datetime.fromtimestamp(report.start, tz=UTC).isoformat(),
        "end": datetime.fromtimestamp(report.end, tz=UTC).isoformat(),
        "objective_percent": report.objective,
        "objectives_percent": report.objectives,
        "sli_error_ratio": report.sli_error_ratio,
        "compliance": report.compliance,
        "meets_objective": report.meets_objective,
        "budget_remaining": report.budget_remaining,
        "rolling_budget_remaining": report.rolling_budget_remaining,
        "worst_burn": report.worst_burn,
        "pages": report.pages,
        "tickets": report.tickets,
        "snapshots": report.snapshots,
        "recorded_snapshots": report.recorded_snapshots,
        "expected_snapshots": report.expected_snapshots,
        "breaches": [
            {
                "severity": b.severity,
                "start": datetime.fromtimestamp(b.start, tz=UTC).isoformat(),
                "end": datetime.fromtimestamp(b.end, tz=UTC).isoformat(),
                "incident_ids": list(b.incident_ids),
            }
            for b in report.breaches
        ],
    }


def report_text(report: PeriodReport, time_period: str | None = None) -> str:
    """Plain text for a terminal; `time_period` (e.g. 30d) names the burn tiers' factors."""
    lines = [f"SLO {report.slo}, period {report.period} ({_time(report.start)} to {_time(report.end)} UTC)"]
    if report.snapshots == 0:
        lines.append(
            "  no snapshots stored for this period: the worker stores one every "
            "SLO_PIPELINE_SLO_HISTORY_INTERVAL seconds (is `slo-pipeline worker` running?)"
        )
        return "\n".join(lines)
    objectives = " -> ".join(f"{o:g}%" for o in report.objectives)
    lines.append(
        f"  objective         {objectives}"
        + (" (changed during the period)" if len(report.objectives) > 1 else "")
    )
    if report.sli_error_ratio is None:
        lines.append("  SLI               no traffic recorded in the stored intervals")
    else:
        verdict = "met" if report.meets_objective else "MISSED"
        lines.append(
            f"  SLI error ratio   {_percent(report.sli_error_ratio)} "
            f"(compliance {_percent(report.compliance)}): objective {verdict}"
        )
        lines.append(
            f"  budget remaining  {_percent(report.budget_remaining, 1)} of this period's error budget"
        )
    lines.append(f"  rolling budget    {_percent(report.rolling_budget_remaining, 1)} at the last snapshot")
    factors = {t.burn_tier: t.factor(period_days(time_period)) for t in TIERS} if time_period else {}
    burns = []
    for tier in TIERS:
        if tier.burn_tier in report.worst_burn:
            factor = f" (factor {factors[tier.burn_tier]})" if tier.burn_tier in factors else ""
            burns.append(
                f"{tier.burn_tier} {tier.short}/{tier.long} {report.worst_burn[tier.burn_tier]:.2f}x{factor}"
            )
    # One window pair per line: four on one line do not fit a terminal (or the UI's code box).
    lines.append("  worst burn        " + (burns[0] if burns else "n/a"))
    lines.extend(f"                    {burn}" for burn in burns[1:])
    lines.append(f"  pages / tickets   {report.pages} / {report.tickets}")
    lines.append(
        f"  snapshots         {report.snapshots} of {report.expected_snapshots} scheduled, "
        f"{report.recorded_snapshots} with data ({report.coverage:.0%} of the instants due)"
    )
    if not report.breaches:
        lines.append("  breaches          none")
    for breach in report.breaches:
        linked = ", ".join(str(i) for i in breach.incident_ids) or "none"
        lines.append(
            f"  breach            {breach.severity:<6} {_time(breach.start)} -> {_time(breach.end)} UTC, "
            f"incidents: {linked}"
        )
    return "\n".join(lines)
