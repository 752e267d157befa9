"""PostgreSQL outages under the real webhook, and Alertmanager's retries across one.

The database is a private server (slo_pipeline.devstack.pgserver) that the test stops and starts; the
webhook is `slo-pipeline webhook` under gunicorn; Alertmanager is the real 0.25 binary.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
import requests

from slo_pipeline.devstack.launch import ManagedProcess
from slo_pipeline.devstack.pgserver import ManagedPostgres
from tests.fixtures.database import WEBHOOK_TOKEN, fetch_all, make_alert, make_notification
from tests.fixtures.waiting import wait_until

pytestmark = pytest.mark.integration

AUTH = {"Authorization": f"Bearer {WEBHOOK_TOKEN}"}
DELIVERY_TIMEOUT = 90.0  # Alertmanager backs off between retries; a few group intervals at most


def post(webhook: ManagedProcess, body: object) -> requests.Response:
    return requests.post(f"{webhook.url}/alerts", json=body, headers=AUTH, timeout=10)


def requests_answered(webhook: ManagedProcess, code: int) -> float:
    text = requests.get(f"{webhook.url}/metrics", timeout=10).text
    match = re.search(rf'^slo_pipeline_webhook_requests_total\{{code="{code}"\}} (\S+)$', text, re.M)
    return float(match.group(1)) if match else 0.0


def test_database_down_gives_503_and_the_webhook_recovers(
    private_postgres: ManagedPostgres,
    private_database_url: str,
    webhook_factory: Callable[..., ManagedProcess],
) -> None:
    webhook = webhook_factory(private_database_url, workers=1)
    assert post(webhook, make_notification(make_alert("before"))).status_code == 200

    private_postgres.stop()
    down = post(webhook, make_notification(make_alert("during")))
    assert down.status_code == 503
    assert down.json() == {"error": "storage unavailable, retry later"}
    health = requests.get(f"{webhook.url}/healthz", timeout=10)
    assert health.status_code == 503
    assert health.json()["status"] == "unavailable"

    private_postgres.start()
    assert post(webhook, make_notification(make_alert("during"))).status_code == 200
    assert requests.get(f"{webhook.url}/healthz", timeout=10).status_code == 200

    # A restart between two requests: the worker's kept connection is now dead, and the very
    # first request must still succeed (drop the dead connection, retry on a new one).
    private_postgres.stop()
    private_postgres.start()
    assert post(webhook, make_notification(make_alert("after"))).status_code == 200
    assert fetch_all(private_database_url, "SELECT fingerprint FROM incidents ORDER BY id") == [
        ("before",),
        ("during",),
        ("after",),
    ]


def test_alertmanager_retries_through_an_outage_and_the_incident_lands_once(
    private_postgres: ManagedPostgres,
    private_database_url: str,
    webhook_factory: Callable[..., ManagedProcess],
    alertmanager_factory: Callable[..., ManagedProcess],
) -> None:
    webhook = webhook_factory(private_database_url, workers=2)
    alertmanager = alertmanager_factory(
        webhook_base_url=webhook.url, token=WEBHOOK_TOKEN, group_wait="1s", group_interval="2s"
    )
    private_postgres.stop()

    starts_at = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=30)
    labels = {"alertname": "OutageProbe", "severity": "ticket", "detector": "d1", "slo": "s1"}
    first = {"labels": {**labels, "series": "a"}, "startsAt": starts_at.isoformat()}
    response = requests.post(f"{alertmanager.url}/api/v2/alerts", json=[first], timeout=10)
    assert response.status_code == 200, response.text

    wait_until(
        lambda: requests_answered(webhook, 503) >= 1,
        timeout=30,
        describe="Alertmanager to hit the webhook (503)",
    )
    private_postgres.start()
    wait_until(
        lambda: fetch_all(private_database_url, "SELECT count(*) FROM incidents")[0][0] >= 1,
        timeout=DELIVERY_TIMEOUT,
        describe="the retried notification to be stored",
    )

    # A second alert of the same group is a barrier: once it is stored, Alertmanager has flushed
    # the group again (re-sending the first alert), so any duplicate would be visible by now.
    second = {"labels": {**labels, "series": "b"}, "startsAt": starts_at.isoformat()}
    assert requests.post(f"{alertmanager.url}/api/v2/alerts", json=[second], timeout=10).status_code == 200
    wait_until(
        lambda: fetch_all(private_database_url, "SELECT count(*) FROM incidents")[0][0] >= 2,
        timeout=DELIVERY_TIMEOUT,
        describe="the second alert to be stored",
    )
    rows = fetch_all(
        private_database_url,
        "SELECT labels->>'series', starts_at, status, ends_at FROM incidents ORDER BY labels->>'series'",
    )
    assert rows == [("a", starts_at, "firing", None), ("b", starts_at, "firing", None)]
    receivers = fetch_all(private_database_url, "SELECT DISTINCT receiver FROM alert_deliveries")
    assert receivers == [("slo-pipeline-ticket",)]
    assert requests_answered(webhook, 503) >= 1
