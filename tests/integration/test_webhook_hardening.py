"""Issue 9 findings 3-6 and 9 against the real webhook (gunicorn) and a real, per-test database.

Poison notifications, permanent database errors, bearer-token parsing and its 401 accounting,
retrain requests of made-up detectors, the per-notification alert cap, slow clients, a locked
table and what the unauthenticated /healthz shows.
"""

from __future__ import annotations

import json
import secrets
import socket
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from typing import Any

import psycopg2
import pytest
import requests

from slo_pipeline.adapters.postgres import connect
from slo_pipeline.devstack.launch import ManagedProcess
from tests.fixtures.database import WEBHOOK_TOKEN, drop_database, fetch_all, make_alert, make_notification

pytestmark = pytest.mark.integration

AUTH = {"Authorization": f"Bearer {WEBHOOK_TOKEN}", "Content-Type": "application/json"}


def post(webhook: ManagedProcess, body: Any, headers: dict[str, str] | None = None) -> requests.Response:
    return requests.post(
        f"{webhook.url}/alerts",
        data=json.dumps(body),
        headers=AUTH if headers is None else headers,
        timeout=60,
    )


def incompressible(length: int) -> str:
    """Random text PostgreSQL cannot compress below the btree row limit (unlike 'x' * 4000)."""
    return secrets.token_urlsafe(length)[:length]


def count(database_url: str, table: str) -> int:
    return int(fetch_all(database_url, f"SELECT count(*) FROM {table}")[0][0])


def execute(database_url: str, statement: str) -> None:
    conn = connect(database_url)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(statement)
    finally:
        conn.close()


def metric(webhook: ManagedProcess, line_prefix: str) -> float | None:
    text = requests.get(f"{webhook.url}/metrics", timeout=10).text
    values = [
        float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(line_prefix + " ")
    ]
    return values[0] if values else None


@pytest.fixture
def webhook(database_url: str, webhook_factory: Callable[..., ManagedProcess]) -> ManagedProcess:
    return webhook_factory(database_url, workers=1, detectors=("checkout_latency",), retrain_cooldown=0)


# --- finding 3: poison notifications ---------------------------------------------------------


@pytest.mark.parametrize("field", ["fingerprint", "alertname"])
def test_incompressible_4000_char_indexed_value_is_refused_for_good_and_kept(
    webhook: ManagedProcess, database_url: str, field: str
) -> None:
    alert = make_alert("f1")
    if field == "fingerprint":
        alert["fingerprint"] = incompressible(4000)
    else:
        alert["labels"] = {"alertname": incompressible(4000)}
    body = make_notification(make_alert("ok"), alert)

    answers = [post(webhook, body) for _ in range(3)]  # Alertmanager would not retry a 4xx; a user might

    assert [a.status_code for a in answers] == [400, 400, 400], answers[0].text
    assert f"alerts[1].{'fingerprint' if field == 'fingerprint' else 'labels.alertname'}" in answers[0].text
    kept = fetch_all(database_url, "SELECT body, error FROM alert_deliveries")
    assert len(kept) == 1 and kept[0][0] == body and "1024 allowed" in str(kept[0][1])
    assert count(database_url, "incidents") == 0  # no row from a refused notification


def test_incompressible_4000_char_group_key_and_receiver_are_stored(
    webhook: ManagedProcess, database_url: str
) -> None:
    group_key, receiver = incompressible(4000), incompressible(4000)
    body = make_notification(make_alert("f1"), group_key=group_key, receiver=receiver)
    first, again = post(webhook, body), post(webhook, body)
    assert (first.status_code, first.json()["status"]) == (200, "stored")
    assert (again.status_code, again.json()["status"]) == (200, "duplicate")
    assert fetch_all(database_url, "SELECT group_key, receiver, error FROM alert_deliveries") == [
        (group_key, receiver, None)
    ]
    assert count(database_url, "incidents") == 1


def test_permanent_database_error_is_400_with_the_raw_delivery_kept(
    webhook: ManagedProcess, database_url: str
) -> None:
    """An operator's own index on a label (program limit, SQLSTATE 54000) must not turn into a
    5xx that Alertmanager retries forever: whatever the cause, classes 22/23/54 are a 400."""
    execute(database_url, "CREATE INDEX incidents_team_idx ON incidents ((labels ->> 'team'))")
    body = make_notification(make_alert("f1", team=incompressible(4000)))
    answer = post(webhook, body)
    assert answer.status_code == 400, answer.text
    assert "SQLSTATE 54000" in answer.json()["error"]
    kept = fetch_all(database_url, "SELECT body, error FROM alert_deliveries")
    assert len(kept) == 1 and kept[0][0] == body and "54000" in str(kept[0][1])
    assert count(database_url, "incidents") == 0


# --- finding 5: bearer token ------------------------------------------------------------------


def test_401s_are_counted_by_reason_and_logged_at_a_limited_rate(
    webhook: ManagedProcess, database_url: str
) -> None:
    body = make_notification(make_alert("f1"))
    refused = {
        "missing": {"Content-Type": "application/json"},
        "scheme": {"Authorization": f"Basic {WEBHOOK_TOKEN}"},
        "malformed": {"Authorization": f"Bearer  {WEBHOOK_TOKEN}"},  # two spaces
        "wrong_token": {"Authorization": "Bearer not-the-token"},
    }
    for headers in refused.values():
        for _ in range(50):
            assert post(webhook, body, headers=headers).status_code == 401
    assert post(webhook, body, headers={"Authorization": f"bEaReR {WEBHOOK_TOKEN}"}).status_code == 200

    for reason in refused:
        assert metric(webhook, f'slo_pipeline_webhook_unauthorized_requests_total{{reason="{reason}"}}') == 50
    assert metric(webhook, 'slo_pipeline_webhook_requests_total{code="401"}') == 200
    log_lines = [line for line in webhook.log_tail(10_000).splitlines() if "refused a request from" in line]
    assert len(log_lines) == 1  # one worker, one line per minute; the counter has all 200
    assert "127.0.0.1" in log_lines[0]
    assert count(database_url, "alert_deliveries") == 1


# --- finding 6: retrain requests --------------------------------------------------------------


def test_made_up_detectors_queue_nothing_and_add_no_metric_series(
    webhook: ManagedProcess, database_url: str
) -> None:
    made_up = [make_alert(f"f{i}", retrain="true", detector=f"made_up_{i}") for i in range(900)]
    real = make_alert("real", retrain="true", detector="checkout_latency")
    answer = post(webhook, make_notification(*made_up, real))
    assert answer.status_code == 200, answer.text
    assert list(answer.json()["retrain_jobs"]) == ["checkout_latency"]
    assert fetch_all(database_url, "SELECT detector FROM retrain_jobs") == [("checkout_latency",)]
    assert count(database_url, "incidents") == 901  # the alerts themselves are all kept
    text = requests.get(f"{webhook.url}/metrics", timeout=10).text
    assert "made_up" not in text
    assert metric(webhook, "slo_pipeline_webhook_unconfigured_retrain_requests_total") == 900


def test_notification_over_the_alert_cap_is_413_with_the_raw_delivery_kept(
    database_url: str, webhook_factory: Callable[..., ManagedProcess]
) -> None:
    webhook = webhook_factory(database_url, extra_env={"SLO_PIPELINE_WEBHOOK_MAX_ALERTS": "5"})
    at_cap = make_notification(*[make_alert(f"a{i}") for i in range(5)], group_key="at")
    over = make_notification(*[make_alert(f"o{i}") for i in range(6)], group_key="over")
    assert post(webhook, at_cap).status_code == 200
    answer = post(webhook, over)
    assert answer.status_code == 413
    assert "6 alerts, more than the 5 allowed" in answer.json()["error"]
    kept = fetch_all(database_url, "SELECT body FROM alert_deliveries WHERE error IS NOT NULL")
    assert kept == [(over,)]
    assert count(database_url, "incidents") == 5


# --- finding 4: slow clients and a stuck database ---------------------------------------------


def half_sent_request(webhook: ManagedProcess) -> socket.socket:
    """A client that starts a POST and never finishes its headers."""
    sock = socket.create_connection(("127.0.0.1", webhook.port), timeout=60)
    sock.sendall(b"POST /alerts HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: appl")
    return sock


def still_open(sock: socket.socket) -> bool:
    """True while the server has not closed the connection (nothing to read, no EOF)."""
    sock.setblocking(False)
    try:
        return sock.recv(1) != b""
    except BlockingIOError:
        return True
    finally:
        sock.setblocking(True)


def test_slow_clients_do_not_stall_a_valid_post(webhook: ManagedProcess, database_url: str) -> None:
    """One worker: under the old sync worker class, four half-sent requests held it (30 s+)."""
    slow = [half_sent_request(webhook) for _ in range(4)]
    try:
        answer = post(webhook, make_notification(make_alert("f1")))
        assert answer.status_code == 200
        assert all(still_open(sock) for sock in slow)  # answered while the slow clients still hang
    finally:
        for sock in slow:
            sock.close()
    assert count(database_url, "incidents") == 1


def test_a_stalled_client_is_disconnected_and_frees_its_thread(
    database_url: str, webhook_factory: Callable[..., ManagedProcess]
) -> None:
    webhook = webhook_factory(
        database_url,
        extra_env={"SLO_PIPELINE_WEBHOOK_THREADS": "1", "SLO_PIPELINE_WEBHOOK_CLIENT_TIMEOUT": "1"},
    )
    with closing(half_sent_request(webhook)) as slow:
        assert slow.recv(1024) == b""  # the server closed it (the socket's own timeout is 60 s)
    # the only thread is free again
    assert post(webhook, make_notification(make_alert("f1"))).status_code == 200


@contextmanager
def table_locked(database_url: str, table: str) -> Iterator[psycopg2.extensions.connection]:
    conn = connect(database_url)
    try:
        with conn.cursor() as cur:
            cur.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
        yield conn  # the transaction (and the lock) stays open until the block ends
    finally:
        conn.rollback()
        conn.close()


def test_a_held_table_lock_gives_a_503_while_the_lock_is_still_held(
    database_url: str, webhook_factory: Callable[..., ManagedProcess]
) -> None:
    webhook = webhook_factory(database_url, extra_env={"SLO_PIPELINE_WEBHOOK_STATEMENT_TIMEOUT": "1"})
    body = make_notification(make_alert("f1"))
    with table_locked(database_url, "alert_deliveries") as locker:
        answer = post(webhook, body)
        assert answer.status_code == 503
        assert answer.json()["error"] == "storage unavailable, retry later"
        assert locker.get_transaction_status() == psycopg2.extensions.TRANSACTION_STATUS_INTRANS
    assert "lock timeout" in webhook.log_tail() or "statement timeout" in webhook.log_tail()
    retried = post(webhook, body)  # Alertmanager's retry once the lock is gone
    assert (retried.status_code, retried.json()["status"]) == (200, "stored")


# --- finding 9: what the unauthenticated /healthz shows ---------------------------------------


def test_healthz_does_not_show_database_user_host_or_name(
    empty_database_url: str, webhook_factory: Callable[..., ManagedProcess]
) -> None:
    from slo_pipeline.adapters.postgres import migrate

    migrate(empty_database_url)
    webhook = webhook_factory(empty_database_url)
    dbname = psycopg2.extensions.parse_dsn(empty_database_url)["dbname"]
    drop_database(empty_database_url)  # the webhook's kept connection breaks, reconnects fail

    answer = requests.get(f"{webhook.url}/healthz", timeout=30)

    assert answer.status_code == 503
    assert answer.json() == {"status": "unavailable", "database": "unavailable"}
    assert dbname in webhook.log_tail()  # the detail is in the log, for the operator


@pytest.mark.parametrize("where", ["fingerprint", "label key", "receiver"])
def test_nul_character_in_a_text_column_is_400_not_500(
    webhook: ManagedProcess, database_url: str, where: str
) -> None:
    """Found by `make chaos` (fuzz): a raw U+0000 in a value bound to a text column made psycopg2
    raise before PostgreSQL saw it, and the webhook answered 500."""
    alert = make_alert("f1")
    body = make_notification(alert)
    if where == "fingerprint":
        alert["fingerprint"] = "f\u00001"
    elif where == "label key":
        alert["labels"] = {"alertname": "A", "te\u0000am": "x"}
    else:
        body["receiver"] = "r\u0000"
    answer = post(webhook, body)
    assert answer.status_code == 400, answer.text
    assert "NUL character" in answer.json()["error"]
    assert count(database_url, "incidents") == 0
