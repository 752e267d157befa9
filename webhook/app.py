"""Flask app of the Alertmanager webhook: `POST /alerts`, `GET /healthz`, `GET /metrics`.

Status codes are chosen for Alertmanager's retry logic: 2xx only after the commit; 5xx (503)
when storage is unavailable (down, stuck past the statement timeout, locked), so it retries; 4xx
for a request that can never succeed, so it does not. A permanent database error (SQLSTATE
classes 22 data exception, 23 integrity violation, 54 program limit) is a 400, never a 5xx that
Alertmanager would retry forever. Whatever is refused after authentication is kept raw in
alert_deliveries with the reason. Malformed input never produces a 500.

After the commit, new anomaly incidents get their driver from Prometheus
(slo_pipeline/adapters/incident_drivers.py): bounded in time, and whatever happens there the
answer stays the 200 of the stored notification.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg2
from flask import Flask, Response, jsonify, request

from slo_pipeline.adapters.incident_drivers import (
    FAILED,
    FOUND,
    LOOKUP_BUDGET_SECONDS,
    DriverOutcome,
    DriverSource,
    NewIncident,
    PrometheusDriverSource,
    describe_missing_drivers,
    find_drivers,
    record_driver_lookups,
)
from slo_pipeline.adapters.metrics_http import LANDING_CONTENT_TYPE, landing_page
from slo_pipeline.adapters.postgres import DatabaseError
from slo_pipeline.settings import Settings
from webhook.auth import check_bearer, check_startup_token
from webhook.body import BodyTooLarge, read_limited
from webhook.connections import ConnectionSource
from webhook.log_limit import RateLimitedLog
from webhook.metrics import WebhookMetrics, create_metrics
from webhook.payload import PayloadError, delivery_key, parse_json, parse_notification
from webhook.store import RecordResult, record_notification, store_rejected_delivery

log = logging.getLogger(__name__)

STORAGE_UNAVAILABLE = "storage unavailable, retry later"
# SQLSTATE classes no retry can fix: data exception, integrity constraint violation, program limit
# exceeded (e.g. an index row too large). Everything else (connection lost, statement timeout,
# lock timeout, serialization failure, ...) is worth a retry.
PERMANENT_SQLSTATE_CLASSES = frozenset({"22", "23", "54"})
UNAUTHORIZED_LOG_INTERVAL_SECONDS = 60.0


def is_permanent_database_error(err: BaseException) -> bool:
    code = getattr(err, "pgcode", None)
    return isinstance(code, str) and code[:2] in PERMANENT_SQLSTATE_CLASSES


def create_app(settings: Settings, *, driver_source: DriverSource | None = None) -> Flask:
    """`driver_source` defaults to instant queries against `settings.prometheus_url`."""
    app = Flask("webhook")
    check_startup_token(settings.webhook_token)  # no app without a usable token, however it is served
    database = ConnectionSource(
        settings.database_url,
        connect_timeout=5,
        application_name="slo-pipeline-webhook",
        statement_timeout_seconds=settings.webhook_statement_timeout_seconds,
    )
    metrics = create_metrics()
    unauthorized_log = RateLimitedLog(log, UNAUTHORIZED_LOG_INTERVAL_SECONDS)
    configured_detectors = frozenset(d.name for d in settings.pipeline.detectors)
    drivers = DriverRecorder(
        database,
        driver_source or PrometheusDriverSource(settings.prometheus),
        # The shorter of the two: an operator who lowered the query timeout wants it honoured here.
        min(LOOKUP_BUDGET_SECONDS, settings.query_timeout_seconds),
        metrics,
    )

    @app.post("/alerts")
    def receive_alerts() -> Response:
        started = time.perf_counter()
        response = _receive(settings, database, metrics, drivers, unauthorized_log, configured_detectors)
        metrics.requests.labels(code=str(response.status_code)).inc()
        metrics.request_duration.observe(time.perf_counter() - started)
        return response

    landing = landing_page(
        "slo-pipeline webhook",
        [
            ("/metrics", "notifications received, answered and stored"),
            ("/healthz", "200 while PostgreSQL answers"),
        ],
        "Alertmanager receiver: POST /alerts with the bearer token stores incidents in PostgreSQL "
        "and queues retraining.",
    )

    @app.get("/")
    def index() -> Response:
        return Response(landing, status=200, content_type=LANDING_CONTENT_TYPE)

    @app.get("/healthz")
    def healthz() -> Response:
        try:
            database.run(_ping)
        except (DatabaseError, psycopg2.Error) as err:
            # The detail (server, user, database) goes to the log only: /healthz is unauthenticated.
            log.warning("health check: database unavailable: %s", err)
            return _json({"status": "unavailable", "database": "unavailable"}, 503)
        return _json({"status": "ok", "database": "ok"}, 200)

    @app.get("/metrics")
    def metrics_endpoint() -> Response:
        text, content_type = metrics.render()
        return Response(text, status=200, content_type=content_type)

    return app


@dataclass(frozen=True)
class DriverRecorder:
    """Looks up and stores the drivers of new anomaly incidents; never raises (best effort)."""

    database: ConnectionSource
    source: DriverSource
    budget_seconds: float
    metrics: WebhookMetrics

    def record(self, incidents: Sequence[NewIncident]) -> None:
        try:
            outcomes = find_drivers(self.source, incidents, self.budget_seconds)
            outcomes = self._store(outcomes)
        except Exception:  # a bug here must not turn a committed notification into a 500
            log.exception("looking up the drivers of %d new incident(s) failed", len(incidents))
            return
        for outcome in outcomes:
            self.metrics.driver_lookups.labels(outcome=outcome.outcome).inc()
        summary = describe_missing_drivers(outcomes)
        if summary is not None:  # one line per request, however many incidents
            level = logging.WARNING if any(o.outcome == FAILED for o in outcomes) else logging.INFO
            log.log(level, "%s", summary)

    def _store(self, outcomes: list[DriverOutcome]) -> list[DriverOutcome]:
        """Record every outcome (a found driver with it); if that fails, found drivers count (and
        log) as failed lookups, and the incidents, left unrecorded, are the worker's to retry."""
        if not outcomes:
            return outcomes
        try:
            self.database.run(lambda conn: record_driver_lookups(conn, outcomes))
        except (DatabaseError, psycopg2.Error) as err:
            reason = f"storing the driver failed: {_first_line(err)}"
            return [
                DriverOutcome(o.incident_id, FAILED, reason=reason) if o.outcome == FOUND else o
                for o in outcomes
            ]
        return outcomes


def _receive(
    settings: Settings,
    database: ConnectionSource,
    metrics: WebhookMetrics,
    drivers: DriverRecorder,
    unauthorized_log: RateLimitedLog,
    configured_detectors: frozenset[str],
) -> Response:
    failure = check_bearer(request.headers.get("Authorization"), settings.webhook_token)
    if failure is not None:
        metrics.unauthorized.labels(reason=failure.value).inc()
        unauthorized_log.warning(
            "refused a request from %s: %s bearer token (401)", request.remote_addr, failure.value
        )
        response = _json({"error": "missing or wrong bearer token"}, 401)
        response.headers["WWW-Authenticate"] = 'Bearer realm="slo-pipeline-webhook"'
        return response
    try:
        body = read_limited(request.stream, request.content_length, settings.max_body_bytes)
    except BodyTooLarge as err:
        return _json({"error": str(err)}, 413)

    try:
        document = parse_json(body)
    except PayloadError as err:
        log.warning("refused notification: %s", err)
        return _json({"error": str(err)}, 400)  # not JSON: nothing we could store as JSONB

    body_text = body.decode("utf-8")  # parse_json accepted it, so it is UTF-8
    body_sha256 = hashlib.sha256(body).hexdigest()
    alert_count = _alert_count(document)
    if alert_count > settings.webhook_max_alerts:
        limit = settings.webhook_max_alerts
        error = f"alerts: {alert_count} alerts, more than the {limit} allowed per notification"
        log.warning("refused notification %s: %s", body_sha256[:12], error)
        return _store_rejected(database, body_text, body_sha256, document, error, status=413)
    try:
        notification = parse_notification(document)
    except PayloadError as err:
        log.warning("refused notification %s: %s", body_sha256[:12], err)
        return _store_rejected(database, body_text, body_sha256, document, str(err))

    try:
        result: RecordResult = database.run(
            lambda conn: record_notification(
                conn,
                body_text,
                body_sha256,
                notification,
                settings.retrain_cooldown_seconds,
                configured_detectors,
            )
        )
    except psycopg2.Error as err:
        if not is_permanent_database_error(err):
            log.error("storing notification %s failed: %s", body_sha256[:12], err)
            return _json({"error": STORAGE_UNAVAILABLE}, 503)
        # e.g. a \u0000 inside a string, or a value too large for an index: never storable.
        error = f"notification cannot be stored: {_first_line(err)} (SQLSTATE {err.pgcode})"
        log.warning("refused notification %s: %s", body_sha256[:12], error)
        return _store_rejected(database, body_text, body_sha256, document, error)
    except DatabaseError as err:
        log.error("storing notification %s failed: %s", body_sha256[:12], err)
        return _json({"error": STORAGE_UNAVAILABLE}, 503)

    if result.duplicate:
        metrics.duplicate_deliveries.inc()
    else:
        for alert in notification.alerts:
            metrics.alerts.labels(status=alert.status).inc()
        for detector in result.retrain_jobs:
            metrics.retrain_jobs_enqueued.labels(detector=detector).inc()
        if result.unconfigured_retrain_requests:
            metrics.unconfigured_retrain_requests.inc(result.unconfigured_retrain_requests)
        # After the commit: the incidents are safe whatever Prometheus does now.
        if result.new_incidents:
            drivers.record(result.new_incidents)
    return _json(
        {
            "status": "duplicate" if result.duplicate else "stored",
            "delivery_id": result.delivery_id,
            "incidents_inserted": result.incidents_inserted,
            "incidents_updated": result.incidents_updated,
            "retrain_jobs": result.retrain_jobs,
        },
        200,
    )


def _store_rejected(
    database: ConnectionSource,
    body_text: str,
    body_sha256: str,
    document: Any,
    error: str,
    *,
    status: int = 400,
) -> Response:
    """4xx for the sender, but keep the raw JSON; if the database is unavailable, 503 so
    Alertmanager retries and the body is not lost. A body PostgreSQL can never store (a \\u0000
    in a string) is refused and logged: there is nothing a retry could change."""
    try:
        database.run(
            lambda conn: store_rejected_delivery(conn, body_text, body_sha256, delivery_key(document), error)
        )
    except psycopg2.Error as err:
        if not is_permanent_database_error(err):
            log.error("storing refused notification %s failed: %s", body_sha256[:12], err)
            return _json({"error": STORAGE_UNAVAILABLE}, 503)
        log.warning("refused notification %s cannot be stored either: %s", body_sha256[:12], err)
    except DatabaseError as err:
        log.error("storing refused notification %s failed: %s", body_sha256[:12], err)
        return _json({"error": STORAGE_UNAVAILABLE}, 503)
    return _json({"error": error}, status)


def _alert_count(document: Any) -> int:
    alerts = document.get("alerts") if isinstance(document, dict) else None
    return len(alerts) if isinstance(alerts, list) else 0


def _ping(conn: psycopg2.extensions.connection) -> None:
    with conn, conn.cursor() as cur:
        cur.execute("SELECT 1")
        cur.fetchone()


def _json(payload: dict[str, Any], status: int) -> Response:
    response = jsonify(payload)
    response.status_code = status
    return response


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
