"""Retry driver lookups that failed when the incident was new (the worker runs this when idle).

The webhook looks a new anomaly incident's driver up once, within a 2-second budget, while
Alertmanager waits (slo_pipeline/adapters/incident_drivers.py). When Prometheus was down or
slow then, the incident is stored with `driver_lookup = 'failed'` (or with no outcome at all if
even that could not be written). The driver is the one at `startsAt`, which Prometheus still
holds later, so asking again is worth it: this pass re-runs the same lookup for such incidents,
newest first, and records the outcome the same way. `no_match` is final (Prometheus answered;
no series matched).

Retries back off: after the n-th lookup that reached Prometheus the next waits
SETTLE_SECONDS x 4^(n-1) (1, 4, 16, 64, 256 minutes), so MAX_ATTEMPTS lookups in all span ~5.7 h
of outage; an incident older than MAX_AGE_SECONDS is not retried. Incidents a pass did not get
to ask about (an earlier query failed, the budget ran out) keep their attempts. Times are the
database's clock, so workers with skewed clocks agree; one pass runs at a time across workers
(an advisory lock), so several workers do not spend an incident's attempts N times faster.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

import psycopg2.extensions

from slo_pipeline.adapters.incident_drivers import (
    FOUND,
    DriverOutcome,
    DriverSource,
    NewIncident,
    StoredAlert,
    describe_missing_drivers,
    find_drivers,
    record_driver_lookups,
)

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 6  # the webhook's own lookup and five retries
# Drivers matter while an incident is being handled, and Prometheus keeps 15 days by default.
MAX_AGE_SECONDS = 24 * 3600
# The first retry waits this long after the webhook's lookup (or the incident's creation, when no
# lookup was recorded); each later one four times longer than the one before.
SETTLE_SECONDS = 60
BACKOFF_FACTOR = 4
BATCH_SIZE = 50
# Small enough that a worker asked to stop is not held up long by a pass (it runs between jobs).
BUDGET_SECONDS = 5.0
# pg_try_advisory_lock key of the pass ("slopdriv"), so one worker runs it at a time.
LOCK_KEY = 0x736C6F7064726976

PENDING_SQL = """
SELECT id, labels, starts_at
FROM incidents
WHERE driver IS NULL AND detector IS NOT NULL
  AND (driver_lookup IS NULL OR driver_lookup = 'failed')
  AND driver_lookup_attempts < %(max_attempts)s
  AND starts_at >= now() - make_interval(secs => %(max_age)s)
  AND COALESCE(driver_lookup_at, created_at) <= now() - make_interval(
        secs => %(settle)s * power(%(factor)s, GREATEST(driver_lookup_attempts - 1, 0)))
ORDER BY starts_at DESC, id DESC
LIMIT %(limit)s
"""


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = MAX_ATTEMPTS
    max_age_seconds: float = MAX_AGE_SECONDS
    settle_seconds: float = SETTLE_SECONDS
    backoff_factor: float = BACKOFF_FACTOR
    batch_size: int = BATCH_SIZE
    budget_seconds: float = BUDGET_SECONDS


def pending_lookups(conn: psycopg2.extensions.connection, policy: RetryPolicy) -> list[NewIncident]:
    """Incidents whose driver is missing and whose next retry is due, newest first."""
    params = {
        "max_attempts": policy.max_attempts,
        "max_age": float(policy.max_age_seconds),
        "settle": float(policy.settle_seconds),
        "factor": float(policy.backoff_factor),
        "limit": policy.batch_size,
    }
    with conn, conn.cursor() as cur:
        cur.execute(PENDING_SQL, params)
        rows = cur.fetchall()
    return [NewIncident(id=row[0], alert=_alert(row[1:])) for row in rows]


def retry_driver_lookups(
    conn: psycopg2.extensions.connection, source: DriverSource, *, policy: RetryPolicy | None = None
) -> list[DriverOutcome]:
    """One pass: look the due incidents' drivers up again and record every outcome. Returns []
    at once while another worker's pass holds the lock.

    Database errors propagate (the caller's loop logs and retries them); Prometheus errors are
    outcomes (`failed`), as in the webhook.
    """
    policy = policy or RetryPolicy()
    with conn, conn.cursor() as cur:
        cur.execute("SELECT pg_try_advisory_lock(%s)", (LOCK_KEY,))
        (locked,) = cur.fetchone()
    if not locked:
        return []
    try:
        incidents = pending_lookups(conn, policy)
        if not incidents:
            return []
        outcomes = find_drivers(source, incidents, policy.budget_seconds)
        record_driver_lookups(conn, outcomes)
    finally:
        if not conn.closed:
            with conn, conn.cursor() as cur:
                cur.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))
    found = sum(o.outcome == FOUND for o in outcomes)
    log.info("driver retry: %d of %d incident(s) now have a driver", found, len(outcomes))
    summary = describe_missing_drivers(outcomes)
    if summary is not None:
        log.info("driver retry: %s", summary)
    return outcomes


def _alert(row: tuple[Any, ...]) -> StoredAlert:
    labels, starts_at = row
    return StoredAlert(labels=_json_object(labels), starts_at=starts_at)


def _json_object(value: object) -> dict[str, str]:
    """jsonb comes back as a dict from psycopg2; a string only if someone cast it."""
    data = json.loads(value) if isinstance(value, str) else value
    return {str(k): str(v) for k, v in (data or {}).items()} if isinstance(data, dict) else {}
