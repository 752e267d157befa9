"""Retry driver lookups that failed when the incident was new (the worker runs this when idle).

The webhook looks a new anomaly incident's driver up once, within a 2-second budget, while
Alertmanager waits (webhook/drivers.py). When Prometheus was down or slow then, the incident is
stored with `driver_lookup = 'failed'` (or with no outcome at all if even that could not be
written). The driver is the one at `startsAt`, which Prometheus still holds later, so asking again
is worth it: this pass re-runs the same lookup for such incidents, newest first, with a larger
budget, and records the outcome the same way. `no_match` is final (Prometheus answered; no series
matched). Each incident is tried at most MAX_ATTEMPTS times in all and only while it is younger
than MAX_AGE_SECONDS, so a detector whose drivers never resolve costs a bounded amount of work.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg2.extensions

from webhook.drivers import FOUND, DriverOutcome, DriverSource, NewIncident, find_drivers
from webhook.payload import Alert
from webhook.store import record_driver_lookups

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 5
# Drivers matter while an incident is being handled, and Prometheus keeps 15 days by default.
MAX_AGE_SECONDS = 24 * 3600
# The webhook's own lookup runs right after it commits; leave it that long before retrying.
SETTLE_SECONDS = 60
BATCH_SIZE = 50
BUDGET_SECONDS = 10.0

PENDING_SQL = """
SELECT id, status, labels, annotations, starts_at, ends_at, generator_url, fingerprint
FROM incidents
WHERE driver IS NULL AND detector IS NOT NULL
  AND (driver_lookup IS NULL OR driver_lookup = 'failed')
  AND driver_lookup_attempts < %(max_attempts)s
  AND starts_at >= %(oldest)s
  AND created_at <= %(settled)s
ORDER BY starts_at DESC, id DESC
LIMIT %(limit)s
"""


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = MAX_ATTEMPTS
    max_age_seconds: float = MAX_AGE_SECONDS
    settle_seconds: float = SETTLE_SECONDS
    batch_size: int = BATCH_SIZE
    budget_seconds: float = BUDGET_SECONDS


def pending_lookups(
    conn: psycopg2.extensions.connection, now: datetime, policy: RetryPolicy
) -> list[NewIncident]:
    """Incidents whose driver is missing and worth asking for again, newest first."""
    params = {
        "max_attempts": policy.max_attempts,
        "oldest": now - timedelta(seconds=policy.max_age_seconds),
        "settled": now - timedelta(seconds=policy.settle_seconds),
        "limit": policy.batch_size,
    }
    with conn, conn.cursor() as cur:
        cur.execute(PENDING_SQL, params)
        rows = cur.fetchall()
    return [NewIncident(id=row[0], alert=_alert(row[1:])) for row in rows]


def retry_driver_lookups(
    conn: psycopg2.extensions.connection,
    source: DriverSource,
    *,
    now: datetime | None = None,
    policy: RetryPolicy | None = None,
) -> list[DriverOutcome]:
    """One pass: look the pending incidents' drivers up again and record every outcome.

    Database errors propagate (the caller's loop logs and retries them); Prometheus errors are
    outcomes (`failed`), as in the webhook.
    """
    policy = policy or RetryPolicy()
    incidents = pending_lookups(conn, now or datetime.now(UTC), policy)
    if not incidents:
        return []
    outcomes = find_drivers(source, incidents, policy.budget_seconds)
    record_driver_lookups(conn, outcomes)
    found = sum(o.outcome == FOUND for o in outcomes)
    log.info("driver retry: %d of %d incident(s) now have a driver", found, len(outcomes))
    for outcome in outcomes:
        if outcome.outcome != FOUND:
            log.info("incident %d still has no driver: %s", outcome.incident_id, outcome.reason)
    return outcomes


def _alert(row: tuple[Any, ...]) -> Alert:
    status, labels, annotations, starts_at, ends_at, generator_url, fingerprint = row
    return Alert(
        status=status,
        labels=_json_object(labels),
        annotations=_json_object(annotations),
        starts_at=starts_at,
        ends_at=ends_at,
        generator_url=generator_url,
        fingerprint=fingerprint,
    )


def _json_object(value: object) -> dict[str, str]:
    """jsonb comes back as a dict from psycopg2; a string only if someone cast it."""
    data = json.loads(value) if isinstance(value, str) else value
    return {str(k): str(v) for k, v in (data or {}).items()} if isinstance(data, dict) else {}
