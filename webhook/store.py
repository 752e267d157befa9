"""Writes of the webhook: one transaction per notification (delivery + incidents + retrain jobs).

The delivery row is the idempotency key: if an identical notification was already stored (an
Alertmanager retry after a lost 200, or a duplicate send) the insert does nothing and neither do
the incident upsert and the enqueue, so a retry can never double-count. Which alerts ask for
which retraining is decided in webhook/retrain_triggers.py; this module only reads the SLO links
and writes the jobs, inside the same transaction. Incident drivers
(slo_pipeline/adapters/incident_drivers.py) are written afterwards, in a transaction of their own,
so a Prometheus lookup never holds row locks.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime

import psycopg2.extensions
import psycopg2.extras

from slo_pipeline.adapters.incident_drivers import NewIncident
from webhook.payload import Alert, DeliveryKey, Notification
from webhook.retrain_triggers import burn_rate_pages, select_retrains, split_configured

# Namespace (first key) of the per-detector advisory locks that make the cooldown check exact.
RETRAIN_LOCK_NAMESPACE = 0x5E7A

INSERT_DELIVERY_SQL = """
INSERT INTO alert_deliveries (receiver, status, group_key, body_sha256, body, error)
VALUES (%s, %s, %s, %s, %s::jsonb, %s)
ON CONFLICT ON CONSTRAINT alert_deliveries_dedup DO NOTHING
RETURNING id
"""

# A resolved incident stays resolved: a late firing notification for the same occurrence (a
# retry from another receiver that lost the race) must not reopen it. A re-fire of the same
# labels gets a new startsAt, hence a new row.
UPSERT_INCIDENTS_SQL = """
INSERT INTO incidents (
    fingerprint, starts_at, ends_at, status, alertname, labels, annotations,
    detector, slo, severity, generator_url, first_seen_delivery_id, last_seen_delivery_id
) VALUES %s
ON CONFLICT ON CONSTRAINT incidents_occurrence DO UPDATE SET
    status = CASE WHEN incidents.status = 'resolved' THEN 'resolved' ELSE EXCLUDED.status END,
    ends_at = CASE WHEN incidents.status = 'resolved'
                   THEN COALESCE(incidents.ends_at, EXCLUDED.ends_at) ELSE EXCLUDED.ends_at END,
    alertname = EXCLUDED.alertname,
    labels = EXCLUDED.labels,
    annotations = EXCLUDED.annotations,
    detector = EXCLUDED.detector,
    slo = EXCLUDED.slo,
    severity = EXCLUDED.severity,
    generator_url = EXCLUDED.generator_url,
    last_seen_delivery_id = EXCLUDED.last_seen_delivery_id,
    updated_at = now()
RETURNING id, fingerprint, starts_at, (xmax = 0) AS inserted
"""
UPSERT_INCIDENTS_TEMPLATE = "(%s, %s, %s, %s, %s, %s::jsonb, %s::jsonb, %s, %s, %s, %s, %s, %s)"

# Inserted only if the detector has no queued/running job (partial unique index) and none was
# created within the cooldown. The advisory lock taken just before makes the NOT EXISTS check
# and the insert atomic with respect to concurrent notifications for the same detector.
ENQUEUE_RETRAIN_SQL = """
INSERT INTO retrain_jobs (detector, reason, incident_id)
SELECT %(detector)s, %(reason)s, %(incident_id)s
WHERE NOT EXISTS (
    SELECT 1 FROM retrain_jobs
    WHERE detector = %(detector)s
      AND (status IN ('queued', 'running')
           OR created_at > now() - make_interval(secs => %(cooldown)s))
)
ON CONFLICT (detector) WHERE status IN ('queued', 'running') DO NOTHING
RETURNING id
"""

# Detectors linked to SLOs: `detectors:` of the single SLO a `slos.spec` document holds (the same
# path slo_pipeline.slo.store.detectors_for_slo reads). Read here with the notification's own
# cursor, not through that helper, because its `with conn` would commit the transaction halfway.
# A hand-edited spec whose `detectors` is not an array links nothing rather than failing the
# notification (Alertmanager would retry it forever).
LINKED_DETECTORS_SQL = """
SELECT s.name, d.detector
FROM slos AS s
CROSS JOIN LATERAL jsonb_array_elements_text(
    CASE WHEN jsonb_typeof(s.spec -> 'slos' -> 0 -> 'detectors') = 'array'
         THEN s.spec -> 'slos' -> 0 -> 'detectors' ELSE '[]'::jsonb END
) WITH ORDINALITY AS d(detector, position)
WHERE s.name = ANY(%s)
ORDER BY s.name, d.position
"""


@dataclass(frozen=True)
class RecordResult:
    delivery_id: int | None  # None: an identical notification was already stored
    incidents_inserted: int = 0
    incidents_updated: int = 0
    retrain_jobs: dict[str, int] = field(default_factory=dict)  # detector -> new job id
    new_incidents: tuple[NewIncident, ...] = ()  # rows this notification inserted, with their alerts
    unconfigured_retrain_requests: int = 0  # retrains asked for detectors the config does not name

    @property
    def duplicate(self) -> bool:
        return self.delivery_id is None


def store_rejected_delivery(
    conn: psycopg2.extensions.connection, body_text: str, body_sha256: str, key: DeliveryKey, error: str
) -> bool:
    """Keep a JSON body we refused, with the reason, so nothing Alertmanager sent is lost.

    The key fields and the reason are informational copies: a NUL character in them (PostgreSQL
    text cannot hold one) is replaced, so the row can be written whenever the body itself can."""
    receiver, status, group_key, reason = (
        None if value is None else value.replace("\x00", "\ufffd")
        for value in (key.receiver, key.status, key.group_key, error)
    )
    with conn, conn.cursor() as cur:
        cur.execute(INSERT_DELIVERY_SQL, (receiver, status, group_key, body_sha256, body_text, reason))
        return cur.fetchone() is not None


def record_notification(
    conn: psycopg2.extensions.connection,
    body_text: str,
    body_sha256: str,
    notification: Notification,
    retrain_cooldown_seconds: float,
    configured_detectors: Collection[str],
) -> RecordResult:
    """Store a valid notification in ONE transaction; committed when this returns. Retrain jobs
    are queued only for `configured_detectors`."""
    with conn, conn.cursor() as cur:
        cur.execute(
            INSERT_DELIVERY_SQL,
            (
                notification.receiver,
                notification.status,
                notification.group_key,
                body_sha256,
                body_text,
                None,
            ),
        )
        row = cur.fetchone()
        if row is None:
            return RecordResult(delivery_id=None)
        delivery_id = row[0]
        alerts = unique_occurrences(notification.alerts)
        incident_ids, inserted = _upsert_incidents(cur, alerts, delivery_id)
        jobs, unconfigured = _enqueue_retrains(
            cur, alerts, incident_ids, retrain_cooldown_seconds, configured_detectors
        )
        new_incidents = tuple(
            NewIncident(incident_ids[key], alert)
            for alert in alerts
            if (key := (alert.fingerprint, alert.starts_at)) in inserted
        )
        return RecordResult(
            delivery_id=delivery_id,
            incidents_inserted=len(inserted),
            incidents_updated=len(alerts) - len(inserted),
            retrain_jobs=jobs,
            new_incidents=new_incidents,
            unconfigured_retrain_requests=unconfigured,
        )


def unique_occurrences(alerts: list[Alert]) -> list[Alert]:
    """One alert per (fingerprint, starts_at), the last one winning, sorted by that key.

    ON CONFLICT DO UPDATE cannot touch one row twice in a statement, and a fixed row order keeps
    two concurrent notifications with overlapping alerts from deadlocking on each other's rows.
    """
    by_key: dict[tuple[str, datetime], Alert] = {}
    for alert in alerts:
        by_key[(alert.fingerprint, alert.starts_at)] = alert
    return [by_key[key] for key in sorted(by_key)]


def _upsert_incidents(
    cur: psycopg2.extensions.cursor, alerts: list[Alert], delivery_id: int
) -> tuple[dict[tuple[str, datetime], int], set[tuple[str, datetime]]]:
    """Incident id per (fingerprint, starts_at), and the keys this statement inserted."""
    if not alerts:
        return {}, set()
    rows = [
        (
            alert.fingerprint,
            alert.starts_at,
            alert.ends_at,
            alert.status,
            alert.alertname,
            psycopg2.extras.Json(alert.labels),
            psycopg2.extras.Json(alert.annotations),
            alert.detector,
            alert.slo,
            alert.severity,
            alert.generator_url,
            delivery_id,
            delivery_id,
        )
        for alert in alerts
    ]
    returned = psycopg2.extras.execute_values(
        cur, UPSERT_INCIDENTS_SQL, rows, template=UPSERT_INCIDENTS_TEMPLATE, page_size=1000, fetch=True
    )
    ids = {(fingerprint, starts_at): incident_id for incident_id, fingerprint, starts_at, _ in returned}
    inserted = {
        (fingerprint, starts_at) for _, fingerprint, starts_at, was_inserted in returned if was_inserted
    }
    return ids, inserted


def _enqueue_retrains(
    cur: psycopg2.extensions.cursor,
    alerts: list[Alert],
    incident_ids: dict[tuple[str, datetime], int],
    cooldown_seconds: float,
    configured_detectors: Collection[str],
) -> tuple[dict[str, int], int]:
    """New job id per detector, and the number of requests for unconfigured detectors."""
    pages = burn_rate_pages(alerts)
    # Only notifications that carry a burn-rate page pay for the SLO lookup.
    detectors_by_slo = _linked_detectors(cur, sorted(pages)) if pages else {}
    jobs: dict[str, int] = {}
    # select_retrains sorts by detector: concurrent transactions take the advisory locks in the
    # same order (no deadlock).
    requests, unconfigured = split_configured(select_retrains(alerts, detectors_by_slo), configured_detectors)
    for request in requests:
        alert = request.alert
        cur.execute(
            "SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (RETRAIN_LOCK_NAMESPACE, request.detector)
        )
        cur.execute(
            ENQUEUE_RETRAIN_SQL,
            {
                "detector": request.detector,
                "reason": request.reason,
                "incident_id": incident_ids.get((alert.fingerprint, alert.starts_at)),
                "cooldown": cooldown_seconds,
            },
        )
        row = cur.fetchone()
        if row is not None:
            jobs[request.detector] = row[0]
    return jobs, unconfigured


def _linked_detectors(cur: psycopg2.extensions.cursor, slo_names: list[str]) -> dict[str, list[str]]:
    """SLO name -> its detectors, in spec order; unknown SLOs are simply absent."""
    cur.execute(LINKED_DETECTORS_SQL, (slo_names,))
    linked: dict[str, list[str]] = {}
    for slo_name, detector in cur.fetchall():
        linked.setdefault(slo_name, []).append(detector)
    return linked
