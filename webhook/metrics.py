"""The webhook's own Prometheus metrics.

Under gunicorn every worker is a separate process, so prometheus_client runs in multiprocess mode
(values in files under PROMETHEUS_MULTIPROC_DIR, which webhook.server sets before any import of
prometheus_client) and /metrics aggregates the files with a MultiProcessCollector. Without that
variable (a Flask test client, `flask run`) the metrics live in a private in-process registry.
Metrics are created per app, never at import time, so creating two apps in one process is fine.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from slo_pipeline.adapters.incident_drivers import OUTCOMES
from webhook.auth import AuthFailure

# The variable prometheus_client itself reads (at import) to pick its multiprocess value class.
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# Notifications are small; a storm of them with a slow database is what these buckets must show.
DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass(frozen=True)
class WebhookMetrics:
    registry: CollectorRegistry | None  # None in multiprocess mode: collected from files instead
    requests: Counter
    alerts: Counter
    request_duration: Histogram
    retrain_jobs_enqueued: Counter
    duplicate_deliveries: Counter
    driver_lookups: Counter
    unauthorized: Counter
    unconfigured_retrain_requests: Counter

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type."""
        if self.registry is not None:
            return generate_latest(self.registry), CONTENT_TYPE_LATEST
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=os.environ[MULTIPROC_ENV])
        return generate_latest(registry), CONTENT_TYPE_LATEST


def multiprocess_mode() -> bool:
    return bool(os.environ.get(MULTIPROC_ENV))


def create_metrics() -> WebhookMetrics:
    # In multiprocess mode registering in a registry would be pointless (values are read back
    # from the files); in single-process mode a private registry keeps apps independent.
    registry = None if multiprocess_mode() else CollectorRegistry()
    return WebhookMetrics(
        registry=registry,
        requests=Counter(
            "slo_pipeline_webhook_requests",
            "Alertmanager notifications received on /alerts, by HTTP status code answered.",
            ["code"],
            registry=registry,
        ),
        alerts=Counter(
            "slo_pipeline_webhook_alerts",
            "Alerts stored from accepted notifications, by alert status.",
            ["status"],
            registry=registry,
        ),
        request_duration=Histogram(
            "slo_pipeline_webhook_request_duration_seconds",
            "Time to handle one notification on /alerts, storage included.",
            buckets=DURATION_BUCKETS,
            registry=registry,
        ),
        retrain_jobs_enqueued=Counter(
            "slo_pipeline_webhook_retrain_jobs_enqueued",
            "Retrain jobs enqueued (an alert asked for retraining, or a burn-rate page of the "
            "detector's SLO), by detector.",
            ["detector"],
            registry=registry,
        ),
        duplicate_deliveries=Counter(
            "slo_pipeline_webhook_duplicate_deliveries",
            "Notifications identical to one already stored (Alertmanager retries), ignored.",
            registry=registry,
        ),
        driver_lookups=_driver_lookups(registry),
        unauthorized=_unauthorized(registry),
        unconfigured_retrain_requests=Counter(
            "slo_pipeline_webhook_unconfigured_retrain_requests",
            "Retrains asked for (by a retrain alert or a linked SLO) of detectors the pipeline "
            "configuration does not name: no job is queued, whatever the detector label said.",
            registry=registry,
        ),
    )


def _unauthorized(registry: CollectorRegistry | None) -> Counter:
    counter = Counter(
        "slo_pipeline_webhook_unauthorized_requests",
        "Requests to /alerts refused with 401, by reason (missing header, malformed credentials, "
        "another scheme than Bearer, wrong token).",
        ["reason"],
        registry=registry,
    )
    for reason in AuthFailure:
        counter.labels(reason=reason.value)
    return counter


def _driver_lookups(registry: CollectorRegistry | None) -> Counter:
    counter = Counter(
        "slo_pipeline_webhook_driver_lookups",
        "New incidents with a detector label whose driver was looked up in Prometheus, by outcome "
        "(found, no_match, failed: Prometheus unreachable, slow or erroring, or the driver not stored).",
        ["outcome"],
        registry=registry,
    )
    # Every outcome exists from the start, so rate() and alerts on `failed` work before the first one.
    for outcome in OUTCOMES:
        counter.labels(outcome=outcome)
    return counter
