"""`slo_snapshots` and `slo_breaches` (sql/012_slo_history.sql): writes of a snapshot pass, reads
for reports and validation. Thin I/O; what goes in is decided by slo_pipeline.core.slo_history.

Writes are idempotent: a snapshot is keyed by (SLO, scheduled instant) and inserted at most once,
and a breach period is merged with the stored periods it overlaps or touches, so re-running a
pass (or two workers running it at once, serialised by an advisory lock per SLO) changes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import psycopg2.extensions
from psycopg2.extras import Json, execute_values

from slo_pipeline.core.slo_gate import Interval
from slo_pipeline.core.slo_history import BreachPeriod, Snapshot, absorb

# An incident that began up to this long before a breach (an anomaly alert's lead) is linked to it.
LINK_LEAD_SECONDS = 3600.0

_INSERT_SNAPSHOTS = """
INSERT INTO slo_snapshots (slo_name, taken_at, interval_seconds, objective, time_period, recorded,
                           period_error_ratio, budget_remaining, burn_rates, interval_error_ratio,
                           interval_weight, pages, tickets, peak_burn_rates)
VALUES %s
ON CONFLICT (slo_name, taken_at) DO NOTHING
RETURNING 1
"""
_SNAPSHOT_TEMPLATE = "(%s, to_timestamp(%s), %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"

_RELINK = """
UPDATE slo_breaches b
   SET incident_ids = coalesce((
           SELECT array_agg(i.id ORDER BY i.id) FROM incidents i
            WHERE (i.slo = b.slo_name OR i.detector = ANY(%(detectors)s))
              AND i.starts_at <= b.ends_at
              AND coalesce(i.ends_at, 'infinity') >= b.starts_at - make_interval(secs => %(lead)s)
       ), '{}'),
       updated_at = now()
 WHERE b.slo_name = %(slo)s AND b.ends_at >= to_timestamp(%(since)s)
"""


@dataclass(frozen=True)
class PassWrite:
    snapshots_inserted: int
    breaches_written: int


def last_snapshot_times(conn: psycopg2.extensions.connection) -> dict[str, float]:
    """SLO name -> epoch of its newest snapshot."""
    with conn, conn.cursor() as cur:
        cur.execute("SELECT slo_name, extract(epoch FROM max(taken_at)) FROM slo_snapshots GROUP BY slo_name")
        return {name: float(epoch) for name, epoch in cur.fetchall()}


def write_pass(
    conn: psycopg2.extensions.connection,
    slo: str,
    *,
    detectors: Sequence[str],
    snapshots: Sequence[Snapshot],
    breaches: Sequence[BreachPeriod],
    gap_seconds: float,
    relink_since: float,
) -> PassWrite:
    """Store one SLO's snapshots and breach periods in one transaction, then refresh the incident
    links of its breaches that ended after `relink_since` (incidents arrive after the alert)."""
    with conn, conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"slo_history:{slo}",))
        inserted = 0
        if snapshots:
            rows = [
                (
                    s.slo,
                    s.taken_at,
                    s.interval_seconds,
                    s.objective,
                    s.time_period,
                    s.recorded,
                    s.period_error_ratio,
                    s.budget_remaining,
                    Json(s.burn_rates),
                    s.interval_error_ratio,
                    s.interval_weight,
                    s.pages,
                    s.tickets,
                    Json(s.peak_burn_rates),
                )
                for s in snapshots
            ]
            # rowcount would only count the last page of rows: count what came back instead.
            returned = execute_values(
                cur, _INSERT_SNAPSHOTS, rows, template=_SNAPSHOT_TEMPLATE, page_size=500, fetch=True
            )
            inserted = len(returned)
        for breach in breaches:
            _merge_breach(cur, slo, breach, gap_seconds)
        cur.execute(
            _RELINK,
            {"detectors": list(detectors), "lead": LINK_LEAD_SECONDS, "slo": slo, "since": relink_since},
        )
    return PassWrite(snapshots_inserted=inserted, breaches_written=len(breaches))


def _merge_breach(cur: psycopg2.extensions.cursor, slo: str, breach: BreachPeriod, gap: float) -> None:
    cur.execute(
        "SELECT id, extract(epoch FROM starts_at), extract(epoch FROM ends_at) FROM slo_breaches"
        " WHERE slo_name = %s AND severity = %s"
        "   AND starts_at <= to_timestamp(%s) AND ends_at >= to_timestamp(%s)"
        " ORDER BY starts_at FOR UPDATE",
        (slo, breach.severity, breach.end + gap, breach.start - gap),
    )
    rows = cur.fetchall()
    merged = absorb(
        [Interval(float(a), float(b)) for _, a, b in rows], Interval(breach.start, breach.end), gap
    )
    if not rows:
        cur.execute(
            "INSERT INTO slo_breaches (slo_name, severity, starts_at, ends_at)"
            " VALUES (%s, %s, to_timestamp(%s), to_timestamp(%s))",
            (slo, breach.severity, merged.start, merged.end),
        )
        return
    keep, *rest = (row[0] for row in rows)
    if rest:  # the new period bridges stored ones: they become one
        cur.execute("DELETE FROM slo_breaches WHERE id = ANY(%s)", (rest,))
    cur.execute(
        "UPDATE slo_breaches SET starts_at = to_timestamp(%s), ends_at = to_timestamp(%s), updated_at = now()"
        " WHERE id = %s AND (starts_at <> to_timestamp(%s) OR ends_at <> to_timestamp(%s))",
        (merged.start, merged.end, keep, merged.start, merged.end),
    )


def load_snapshots(
    conn: psycopg2.extensions.connection, slo: str, start: float, end: float
) -> list[Snapshot]:
    """Snapshots of `slo` taken in `(start, end]`, oldest first."""
    with conn, conn.cursor() as cur:
        cur.execute(
            "SELECT slo_name, extract(epoch FROM taken_at), interval_seconds, objective, time_period,"
            "       recorded, period_error_ratio, budget_remaining, burn_rates, interval_error_ratio,"
            "       interval_weight, pages, tickets, peak_burn_rates"
            "  FROM slo_snapshots"
            " WHERE slo_name = %s AND taken_at > to_timestamp(%s) AND taken_at <= to_timestamp(%s)"
            " ORDER BY taken_at",
            (slo, start, end),
        )
        return [
            Snapshot(
                slo=row[0],
                taken_at=float(row[1]),
                interval_seconds=float(row[2]),
                objective=float(row[3]),
                time_period=row[4],
                recorded=bool(row[5]),
                period_error_ratio=row[6],
                budget_remaining=row[7],
                burn_rates={str(k): float(v) for k, v in (row[8] or {}).items()},
                interval_error_ratio=row[9],
                interval_weight=row[10],
                pages=int(row[11]),
                tickets=int(row[12]),
                peak_burn_rates={str(k): float(v) for k, v in (row[13] or {}).items()},
            )
            for row in cur.fetchall()
        ]


def load_breaches(
    conn: psycopg2.extensions.connection, slo: str, start: float, end: float, severity: str | None = None
) -> list[BreachPeriod]:
    """Breach periods of `slo` overlapping `[start, end]`, oldest first."""
    query = (
        "SELECT severity, extract(epoch FROM starts_at), extract(epoch FROM ends_at), incident_ids"
        "  FROM slo_breaches"
        " WHERE slo_name = %s AND starts_at <= to_timestamp(%s) AND ends_at >= to_timestamp(%s)"
    )
    params: list[object] = [slo, end, start]
    if severity is not None:
        query += " AND severity = %s"
        params.append(severity)
    with conn, conn.cursor() as cur:
        cur.execute(query + " ORDER BY starts_at, severity", params)
        return [
            BreachPeriod(severity=row[0], start=float(row[1]), end=float(row[2]), incident_ids=tuple(row[3]))
            for row in cur.fetchall()
        ]


def history_periods(conn: psycopg2.extensions.connection, slo: str) -> list[str]:
    """`YYYY-MM` months (UTC) holding snapshots of `slo`, newest first."""
    with conn, conn.cursor() as cur:
        cur.execute(
            # A snapshot at 00:00 on the 1st closes the month before: its interval lies in it.
            "SELECT DISTINCT to_char(taken_at AT TIME ZONE 'UTC' - interval '1 microsecond', 'YYYY-MM')"
            "       AS month FROM slo_snapshots WHERE slo_name = %s ORDER BY month DESC",
            (slo,),
        )
        return [row[0] for row in cur.fetchall()]
