"""The webhook under real gunicorn (`slo-pipeline webhook`) against a real, per-test database."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import pytest
import requests

from slo_pipeline.devstack.launch import ManagedProcess
from tests.fixtures.database import WEBHOOK_TOKEN, fetch_all, make_alert, make_notification

pytestmark = pytest.mark.integration

AUTH = {"Authorization": f"Bearer {WEBHOOK_TOKEN}"}


def post(webhook: ManagedProcess, body: Any, *, headers: dict[str, str] | None = None) -> requests.Response:
    data = body if isinstance(body, (bytes, str)) or hasattr(body, "__next__") else json.dumps(body)
    return requests.post(
        f"{webhook.url}/alerts",
        data=data,
        headers={"Content-Type": "application/json", **(AUTH if headers is None else headers)},
        timeout=10,
    )


def count(database_url: str, table: str) -> int:
    return int(fetch_all(database_url, f"SELECT count(*) FROM {table}")[0][0])


@pytest.fixture
def webhook(database_url: str, webhook_factory: Callable[..., ManagedProcess]) -> ManagedProcess:
    return webhook_factory(
        database_url, workers=2, max_body_bytes=8192, retrain_cooldown=0, detectors=("d1", "d2", "d3")
    )


def test_missing_or_wrong_token_is_401_and_stores_nothing(webhook: ManagedProcess, database_url: str) -> None:
    body = make_notification(make_alert("f1"))
    assert post(webhook, body, headers={}).status_code == 401
    assert post(webhook, body, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert post(webhook, body, headers={"Authorization": WEBHOOK_TOKEN}).status_code == 401
    assert count(database_url, "alert_deliveries") == 0


@pytest.mark.parametrize("token", ["", "not a token"])
def test_webhook_refuses_to_start_without_a_usable_token(
    database_url: str, webhook_factory: Callable[..., ManagedProcess], token: str
) -> None:
    webhook = webhook_factory(database_url, token=token, wait=False)
    assert webhook.popen.wait(timeout=60) == 2
    assert "WEBHOOK_TOKEN" in webhook.log_tail()


def test_body_over_the_limit_is_413_with_and_without_content_length(
    webhook: ManagedProcess, database_url: str
) -> None:
    big = make_notification(*[make_alert(f"fp{i:04d}") for i in range(60)])
    assert len(json.dumps(big)) > 8192
    assert post(webhook, big).status_code == 413
    encoded = json.dumps(big).encode()
    chunked = (encoded[i : i + 1000] for i in range(0, len(encoded), 1000))  # no Content-Length
    assert post(webhook, chunked).status_code == 413
    assert count(database_url, "alert_deliveries") == 0


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"this is not json", "not valid JSON"),
        (b"", "empty"),
        ({**make_notification(make_alert("f1")), "version": "3"}, "version: unsupported version '3'"),
        (
            {k: v for k, v in make_notification(make_alert("f1")).items() if k != "version"},
            "version: missing",
        ),
        ({k: v for k, v in make_notification(make_alert("f1")).items() if k != "alerts"}, "alerts: missing"),
        (
            make_notification(make_alert("f1"), {**make_alert("f2"), "startsAt": "soon"}),
            "alerts[1].startsAt: not an RFC 3339 timestamp",
        ),
        (make_notification({k: v for k, v in make_alert("f1").items() if k != "fingerprint"}), "fingerprint"),
        (make_notification(make_alert("f1", nested="x") | {"labels": {"a": {"b": 1}}}), "alerts[0].labels.a"),
        (["a", "list"], "must be a JSON object"),
    ],
)
def test_malformed_input_is_400_naming_the_problem_and_creates_no_incident(
    webhook: ManagedProcess, database_url: str, body: Any, problem: str
) -> None:
    response = post(webhook, body)
    assert response.status_code == 400, response.text
    assert problem in response.json()["error"]
    assert count(database_url, "incidents") == 0
    assert count(database_url, "retrain_jobs") == 0
    stored = fetch_all(database_url, "SELECT error FROM alert_deliveries")
    if isinstance(body, bytes):
        assert stored == []  # not JSON: nothing that JSONB could hold
    else:
        assert len(stored) == 1 and problem in str(stored[0][0])  # the raw JSON is kept


def test_nul_character_is_400_not_5xx(webhook: ManagedProcess, database_url: str) -> None:
    body = make_notification(make_alert("f1", service="a\u0000b"))
    response = post(webhook, body)
    assert response.status_code == 400
    assert count(database_url, "incidents") == 0


def test_firing_notification_is_stored_as_open_incidents(webhook: ManagedProcess, database_url: str) -> None:
    body = make_notification(
        make_alert("f1", detector="checkout", severity="ticket", slo="checkout-availability"),
        make_alert("f2", starts_at="2024-05-01T10:00:01.987654321Z", ends_at="2099-01-01T00:00:00Z"),
    )
    response = post(webhook, body)
    assert response.status_code == 200, response.text
    assert response.json()["incidents_inserted"] == 2
    rows = fetch_all(
        database_url,
        "SELECT fingerprint, starts_at, ends_at, status, alertname, labels, annotations, detector, "
        "severity, slo, first_seen_delivery_id = last_seen_delivery_id FROM incidents ORDER BY fingerprint",
    )
    first, second = rows
    assert first[:5] == ("f1", datetime(2024, 5, 1, 10, 0, tzinfo=UTC), None, "firing", "AnomalyScoreHigh")
    assert first[5] == {
        "alertname": "AnomalyScoreHigh",
        "detector": "checkout",
        "severity": "ticket",
        "slo": "checkout-availability",
    }
    assert first[6] == {"summary": "alert f1"}
    assert first[7:] == ("checkout", "ticket", "checkout-availability", True)
    # a firing alert's future endsAt is only an expiry guess: the incident stays open
    assert second[1:3] == (datetime(2024, 5, 1, 10, 0, 1, 987654, tzinfo=UTC), None)
    delivery = fetch_all(
        database_url, "SELECT receiver, status, group_key, body, error FROM alert_deliveries"
    )
    assert delivery == [("slo-pipeline-ticket", "firing", "{}:{g}", body, None)]


def test_duplicate_delivery_adds_nothing(webhook: ManagedProcess, database_url: str) -> None:
    body = make_notification(make_alert("f1", retrain="true", detector="d1"))
    assert post(webhook, body).json()["status"] == "stored"
    before = fetch_all(database_url, "SELECT id, updated_at, last_seen_delivery_id FROM incidents")
    second = post(webhook, body)
    assert second.status_code == 200
    assert second.json()["status"] == "duplicate"
    assert count(database_url, "alert_deliveries") == 1
    assert fetch_all(database_url, "SELECT id, updated_at, last_seen_delivery_id FROM incidents") == before
    assert count(database_url, "retrain_jobs") == 1


def test_resolved_notification_closes_the_incident(webhook: ManagedProcess, database_url: str) -> None:
    assert post(webhook, make_notification(make_alert("f1"))).status_code == 200
    resolved = make_notification(make_alert("f1", status="resolved", ends_at="2024-05-01T10:07:30Z"))
    assert post(webhook, resolved).status_code == 200
    rows = fetch_all(
        database_url, "SELECT status, ends_at, first_seen_delivery_id < last_seen_delivery_id FROM incidents"
    )
    assert rows == [("resolved", datetime(2024, 5, 1, 10, 7, 30, tzinfo=UTC), True)]
    # a late firing retry of the same occurrence must not reopen it
    late = make_notification(make_alert("f1"), receiver="slo-pipeline-page")
    assert post(webhook, late).status_code == 200
    assert fetch_all(database_url, "SELECT status, ends_at FROM incidents") == [
        ("resolved", datetime(2024, 5, 1, 10, 7, 30, tzinfo=UTC))
    ]
    # a re-fire of the same labels starts a new incident
    refire = make_notification(make_alert("f1", starts_at="2024-05-01T11:00:00Z"))
    assert post(webhook, refire).status_code == 200
    assert fetch_all(database_url, "SELECT status FROM incidents ORDER BY starts_at") == [
        ("resolved",),
        ("firing",),
    ]


def test_retrain_is_enqueued_at_most_once_per_detector(webhook: ManagedProcess, database_url: str) -> None:
    first = post(
        webhook,
        make_notification(
            make_alert("f1", retrain="true", detector="d1"),
            make_alert("f2", retrain="true", detector="d1"),
            make_alert("f3", retrain="true", detector="d2"),
            make_alert("f4", detector="d3"),  # no retrain label
            make_alert("f5", retrain="true"),  # no detector label
            receiver="slo-pipeline-retrain",
        ),
    )
    assert first.status_code == 200
    assert sorted(first.json()["retrain_jobs"]) == ["d1", "d2"]
    again = post(
        webhook, make_notification(make_alert("f6", retrain="true", detector="d1"), group_key="other")
    )
    assert again.json()["retrain_jobs"] == {}  # d1 already has a queued job
    jobs = fetch_all(
        database_url,
        "SELECT j.detector, j.status, i.fingerprint FROM retrain_jobs j "
        "JOIN incidents i ON i.id = j.incident_id ORDER BY j.detector",
    )
    assert jobs == [("d1", "queued", "f1"), ("d2", "queued", "f3")]
    # once the job is done, the next alert (cooldown 0 here) enqueues a new one
    fetch_all(database_url, "UPDATE retrain_jobs SET status = 'failed' WHERE detector = 'd1' RETURNING id")
    third = post(webhook, make_notification(make_alert("f7", retrain="true", detector="d1"), group_key="3"))
    assert list(third.json()["retrain_jobs"]) == ["d1"]


def test_retrain_cooldown_suppresses_a_new_job_after_a_finished_one(
    database_url: str, webhook_factory: Callable[..., ManagedProcess]
) -> None:
    webhook = webhook_factory(database_url, retrain_cooldown=3600, detectors=("d1", "d2"))
    assert (
        post(webhook, make_notification(make_alert("f1", retrain="true", detector="d1"))).status_code == 200
    )
    fetch_all(database_url, "UPDATE retrain_jobs SET status = 'succeeded' RETURNING id")
    later = post(webhook, make_notification(make_alert("f2", retrain="true", detector="d1"), group_key="2"))
    assert later.status_code == 200
    assert later.json()["retrain_jobs"] == {}
    assert count(database_url, "retrain_jobs") == 1
    # other detectors are not affected by d1's cooldown
    other = post(webhook, make_notification(make_alert("f3", retrain="true", detector="d2"), group_key="3"))
    assert list(other.json()["retrain_jobs"]) == ["d2"]


def test_concurrent_overlapping_notifications_neither_fail_nor_duplicate(
    webhook: ManagedProcess, database_url: str
) -> None:
    """Two receivers (page + retrain) get the same alerts at once, plus plain retries."""

    def send(index: int) -> int:
        alerts = [make_alert(f"fp{n:02d}", retrain="true", detector="d1") for n in range(10)]
        body = make_notification(*(alerts if index % 2 else alerts[::-1]), receiver=f"r{index % 3}")
        return post(webhook, body).status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        codes = list(pool.map(send, range(40)))
    assert codes == [200] * 40
    assert count(database_url, "incidents") == 10
    assert count(database_url, "alert_deliveries") == 6  # 3 receivers x 2 orders; retries deduplicated
    assert count(database_url, "retrain_jobs") == 1


@pytest.fixture
def promtool() -> Iterator[str]:
    path = shutil.which("promtool")
    assert path is not None, "promtool (Debian package prometheus) must be installed"
    yield path


def test_metrics_scrape_is_promtool_clean_and_counts_requests(
    webhook: ManagedProcess, database_url: str, promtool: str
) -> None:
    post(webhook, make_notification(make_alert("f1", retrain="true", detector="d1")))
    post(webhook, make_notification(make_alert("f2", status="resolved", ends_at="2024-05-01T11:00:00Z")))
    post(webhook, b"nope")
    post(webhook, {}, headers={})
    # two workers answer; counters must be summed across both processes' files
    scrape = requests.get(f"{webhook.url}/metrics", timeout=10)
    assert scrape.status_code == 200
    checked = subprocess.run(
        [promtool, "check", "metrics"], input=scrape.text, capture_output=True, text=True, check=False
    )
    assert (checked.returncode, checked.stdout + checked.stderr) == (0, "")
    text = scrape.text
    assert 'slo_pipeline_webhook_requests_total{code="200"} 2.0' in text
    assert 'slo_pipeline_webhook_requests_total{code="400"} 1.0' in text
    assert 'slo_pipeline_webhook_requests_total{code="401"} 1.0' in text
    assert 'slo_pipeline_webhook_alerts_total{status="firing"} 1.0' in text
    assert 'slo_pipeline_webhook_alerts_total{status="resolved"} 1.0' in text
    assert 'slo_pipeline_webhook_retrain_jobs_enqueued_total{detector="d1"} 1.0' in text
    assert "slo_pipeline_webhook_request_duration_seconds_count 4.0" in text


def test_healthz_reports_the_database(webhook: ManagedProcess) -> None:
    response = requests.get(f"{webhook.url}/healthz", timeout=10)
    assert (response.status_code, response.json()) == (200, {"status": "ok", "database": "ok"})
