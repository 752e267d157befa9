"""Retention of raw Alertmanager deliveries (alert_deliveries), run by the worker when idle.

Every notification is kept raw so nothing Alertmanager sent is lost; without a limit the table
grows forever (a repeat every group_interval per alert group). Deliveries older than
`alert_delivery_retention_days` are deleted, except the first and last delivery of every
incident: those are the incident's evidence and its foreign keys. Deleted in batches, each its
own short transaction, so the webhook's inserts never wait long behind the pass.
"""

from __future__ import annotations

import logging

import psycopg2.extensions

log = logging.getLogger(__name__)

BATCH_ROWS = 5000

PRUNE_BATCH_SQL = """
DELETE FROM alert_deliveries
WHERE id IN (
    SELECT d.id FROM alert_deliveries AS d
    WHERE d.received_at < now() - make_interval(secs => %(retention_seconds)s)
      AND NOT EXISTS (SELECT 1 FROM incidents AS i WHERE i.first_seen_delivery_id = d.id)
      AND NOT EXISTS (SELECT 1 FROM incidents AS i WHERE i.last_seen_delivery_id = d.id)
    ORDER BY d.id
    LIMIT %(batch)s
)
"""


def prune_alert_deliveries(
    conn: psycopg2.extensions.connection, retention_days: float, *, batch_rows: int = BATCH_ROWS
) -> int:
    """Delete expired, unreferenced deliveries; returns how many were deleted."""
    deleted = 0
    while True:
        with conn, conn.cursor() as cur:
            cur.execute(PRUNE_BATCH_SQL, {"retention_seconds": retention_days * 86400, "batch": batch_rows})
            count = cur.rowcount
        deleted += count
        if count < batch_rows:
            break
    if deleted:
        log.info("retention: deleted %d alert deliveries older than %g days", deleted, retention_days)
    return deleted
