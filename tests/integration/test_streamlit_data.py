"""The operator app's data-access functions against a real, migrated PostgreSQL database."""

from __future__ import annotations

import hashlib
import json
import uuid

import pytest

from slo_pipeline.adapters.incident_history import incident_history
from slo_pipeline.adapters.postgres import DatabaseError, connect
from streamlit_app import incidents, models
from tests.fixtures.database import fetch_all

pytestmark = pytest.mark.integration


def _insert(database_url: str, query: str, params: tuple[object, ...]) -> int:
    conn = connect(database_url)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(query, params)
            return int(cur.fetchone()[0])
    finally:
        conn.close()


def seed_incident(
    database_url: str,
    fingerprint: str,
    *,
    alertname: str = "AnomalyScoreHigh",
    status: str = "firing",
    detector: str | None = "checkout_latency",
    slo: str | None = None,
    starts_at: str = "2024-05-01T10:00:00Z",
    driver: str | None = None,
    labels: dict[str, str] | None = None,
) -> int:
    """One incident with the delivery it references, as the webhook would have stored them."""
    body = {"fingerprint": fingerprint, "nonce": uuid.uuid4().hex}
    digest = hashlib.sha256(json.dumps(body).encode()).hexdigest()
    delivery = _insert(
        database_url,
        "INSERT INTO alert_deliveries (receiver, status, group_key, body_sha256, body) "
        "VALUES ('ticket', %s, %s, %s, %s) RETURNING id",
        (status, fingerprint, digest, json.dumps(body)),
    )
    labels = {"alertname": alertname, **({"detector": detector} if detector else {}), **(labels or {})}
    return _insert(
        database_url,
        """
        INSERT INTO incidents (fingerprint, starts_at, ends_at, status, alertname, labels, annotations,
                               detector, slo, severity, first_seen_delivery_id, last_seen_delivery_id,
                               driver)
        VALUES (%s, %s, CASE WHEN %s = 'resolved' THEN %s::timestamptz + interval '10 minutes' END,
                %s, %s, %s, %s, %s, %s, 'ticket', %s, %s, %s)
        RETURNING id
        """,
        (
            fingerprint,
            starts_at,
            status,
            starts_at,
            status,
            alertname,
            json.dumps(labels),
            json.dumps({"summary": f"{alertname} on {detector}"}),
            detector,
            slo,
            delivery,
            delivery,
            driver,
        ),
    )


def seed_job(
    database_url: str,
    detector: str,
    *,
    status: str,
    decision: str | None = None,
    reasons: list[str] | None = None,
    error: str | None = None,
) -> int:
    return _insert(
        database_url,
        "INSERT INTO retrain_jobs (detector, status, decision, decision_reasons, error, finished_at) "
        "VALUES (%s, %s, %s, %s, %s, now()) RETURNING id",
        (detector, status, decision, json.dumps(reasons) if reasons is not None else None, error),
    )


def test_list_incidents_filters_and_orders_newest_first(database_url: str) -> None:
    old = seed_incident(database_url, "a", starts_at="2024-05-01T10:00:00Z", slo="checkout")
    new = seed_incident(database_url, "b", starts_at="2024-05-02T10:00:00Z", status="resolved")
    other = seed_incident(database_url, "c", detector="payments_errors", slo="payments")

    every = incidents.list_incidents(database_url)
    # Same start: the later-stored incident comes first.
    assert [row["id"] for row in every] == [new, other, old]
    by_detector = incidents.list_incidents(database_url, incidents.IncidentFilter(detector="payments_errors"))
    assert [row["id"] for row in by_detector] == [other]
    resolved = incidents.list_incidents(database_url, incidents.IncidentFilter(status="resolved"))
    assert [row["id"] for row in resolved] == [new]
    by_slo = incidents.list_incidents(database_url, incidents.IncidentFilter(slo="checkout"))
    assert [row["id"] for row in by_slo] == [old]
    assert len(incidents.list_incidents(database_url, incidents.IncidentFilter(limit=1))) == 1
    assert incidents.filter_choices(database_url) == {
        "detector": ["checkout_latency", "payments_errors"],
        "slo": ["checkout", "payments"],
    }


def test_feedback_is_stored_filtered_and_cleared(database_url: str) -> None:
    incident_id = seed_incident(database_url, "a")
    untouched = seed_incident(database_url, "b")
    verdict = incidents.validate_feedback("true_positive", " disk full ")

    assert incidents.record_feedback(database_url, incident_id, verdict, "bob")

    row = incidents.get_incident(database_url, incident_id)
    assert row is not None
    assert (row["feedback"], row["feedback_by"], row["feedback_note"]) == (
        "true_positive",
        "bob",
        "disk full",
    )
    assert row["feedback_at"] is not None
    assert row["labels"]["alertname"] == "AnomalyScoreHigh"
    reviewed = incidents.IncidentFilter(feedback="true_positive")
    assert [r["id"] for r in incidents.list_incidents(database_url, reviewed)] == [incident_id]
    unreviewed = incidents.IncidentFilter(feedback=incidents.UNREVIEWED)
    assert [r["id"] for r in incidents.list_incidents(database_url, unreviewed)] == [untouched]

    assert incidents.clear_feedback(database_url, incident_id, "carol")
    assert fetch_all(
        database_url, "SELECT feedback, feedback_by, feedback_at FROM incidents WHERE id = %s", (incident_id,)
    ) == [(None, None, None)]
    # The row forgot the verdict; the audit trail did not, and says who cleared it.
    trail = incidents.feedback_history(database_url, incident_id)
    assert [(r["changed_by"], r["old_feedback"], r["new_feedback"]) for r in trail] == [
        ("carol", "true_positive", None),
        ("bob", None, "true_positive"),
    ]
    assert trail[0]["old_feedback_note"] == "disk full"
    assert incidents.feedback_history(database_url, untouched) == []


def test_a_hand_typed_feedback_update_is_audited_too(database_url: str) -> None:
    """The trail is a trigger, so a psql UPDATE outside the UI cannot skip it."""
    incident_id = seed_incident(database_url, "a")
    fetch_all(
        database_url,
        "UPDATE incidents SET feedback = 'false_positive', feedback_by = 'dba', feedback_at = now() "
        "WHERE id = %s RETURNING id",
        (incident_id,),
    )
    fetch_all(
        database_url, "UPDATE incidents SET severity = 'page' WHERE id = %s RETURNING id", (incident_id,)
    )

    trail = incidents.feedback_history(database_url, incident_id)
    assert [(r["changed_by"], r["new_feedback"]) for r in trail] == [("dba", "false_positive")]


def test_false_positive_feedback_returns_the_period_to_training(database_url: str) -> None:
    # The contract with slo_pipeline.adapters.incident_history: what the UI writes is what training reads.
    incident_id = seed_incident(
        database_url, "a", alertname="AnomalyDetected", status="resolved", starts_at="2024-05-01T10:00:00Z"
    )
    window = {"start": 1714500000.0, "end": 1714600000.0}
    [unreviewed] = incident_history(database_url, "checkout_latency", **window)
    assert not unreviewed.confirmed  # kept in training, not held against validation

    incidents.record_feedback(
        database_url, incident_id, incidents.validate_feedback("true_positive", ""), "bob"
    )
    [confirmed] = incident_history(database_url, "checkout_latency", **window)
    assert confirmed.confirmed  # cut out of the training data

    incidents.record_feedback(
        database_url, incident_id, incidents.validate_feedback("false_positive", ""), "carol"
    )
    [noise] = incident_history(database_url, "checkout_latency", **window)
    # normal data for training (oversampled, and that series' threshold is tightened)
    assert noise.false_positive and not noise.confirmed


def test_feedback_on_a_missing_incident_reports_false(database_url: str) -> None:
    verdict = incidents.validate_feedback("false_positive", "")
    assert incidents.record_feedback(database_url, 999_999, verdict, "bob") is False
    assert incidents.get_incident(database_url, 999_999) is None


def test_retrain_jobs_newest_first_with_readable_reasons(database_url: str) -> None:
    failed = seed_job(database_url, "checkout_latency", status="failed", error="boom")
    newest = seed_job(
        database_url, "checkout_latency", status="succeeded", decision="promoted", reasons=["ok", "faster"]
    )
    seed_job(database_url, "other", status="queued")

    jobs = models.retrain_jobs(database_url, "checkout_latency")

    assert [job["id"] for job in jobs] == [newest, failed]
    assert jobs[0]["decision_reasons"] == "ok; faster"
    assert jobs[1]["error"] == "boom"


def test_unreachable_database_raises_a_named_error() -> None:
    with pytest.raises(DatabaseError, match="port=1"):
        incidents.list_incidents("postgresql://postgres@127.0.0.1:1/nothing")
