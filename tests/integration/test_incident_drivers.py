"""Incident drivers end to end: a real Prometheus holding `anomaly_driver_info` samples rendered
by the exporter's own code, the real webhook under gunicorn, and a real per-test database.

The driver samples are backfilled with promtool at the labels a scrape with `honor_labels` would
store; the alerts carry those labels plus what Prometheus and the rule add (alertname, severity,
the external label `monitor`), exactly as Alertmanager would deliver them.
"""

from __future__ import annotations

import hashlib
import json
import socket
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import requests

from exporter.exposition import render_detector
from slo_pipeline.adapters.postgres import connect
from slo_pipeline.devstack import launch
from slo_pipeline.settings import DetectorConfig, load_settings
from tests.fixtures.database import WEBHOOK_TOKEN, fetch_all, make_alert, make_notification
from tests.fixtures.services import prometheus_query
from webhook.payload import parse_notification
from webhook.store import record_notification
from worker.driver_retry import MAX_ATTEMPTS
from worker.runner import RetrainWorker

pytestmark = pytest.mark.integration

AUTH = {"Authorization": f"Bearer {WEBHOOK_TOKEN}", "Content-Type": "application/json"}
LATENCY = DetectorConfig(name="checkout_latency", query="q", slo="checkout")
ERRORS = DetectorConfig(name="checkout_errors", query="q", slo="checkout")
TARGET = {"job": "checkout", "instance": "10.0.0.7:8080"}
PAY = {**TARGET, "route": "/pay"}
SEARCH = {**TARGET, "route": '/search?q="x"'}  # quotes survive exposition, backfill and query
CART = {**TARGET, "route": "/cart"}
STEP = 15
NOW = int(time.time())
END = NOW - NOW % STEP - 20 * 60  # the samples end 20 minutes ago, well inside the TSDB's range
START = END - 10 * 60
ALERT_START = datetime.fromtimestamp(END - 120, UTC)


def driver_lines() -> list[str]:
    """What the exporter's page holds for both detectors while /pay and /search are anomalous."""
    latency = render_detector(
        LATENCY,
        [{"__name__": "lat", **PAY}, {"__name__": "lat", **SEARCH}, {"__name__": "lat", **CART}],
        np.array([1e-9, 1e-6, 0.3]),
        np.array([5.0, 2.0, 0.4]),
        {0: "errors:level_vs_long", 1: "step_change", 2: "short_volatility"},
    )
    # Another detector anomalous on the same series labels: the query must not mix them up.
    errors = render_detector(ERRORS, [PAY], np.array([1e-9]), np.array([4.0]), {0: "medium_mean_vs_long"})
    lines = (latency.driver_lines + errors.driver_lines).splitlines()
    assert len(lines) == 3, "the calm /cart series has no driver line"
    return lines


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[launch.ManagedProcess]:
    folder = tmp_path_factory.mktemp("incident-drivers")
    history = ["# HELP anomaly_driver_info Driver of anomalous series.", "# TYPE anomaly_driver_info gauge"]
    for line in driver_lines():
        history.extend(f"{line} {t}" for t in range(START, END + 1, STEP))
    history.append("# EOF")
    (folder / "drivers.om").write_text("\n".join(history) + "\n", encoding="utf-8")
    launch.backfill_openmetrics(folder / "drivers.om", folder / "data")
    config = launch.write_prometheus_config(
        folder / "prometheus.yml", scrape_targets={}, alertmanager_url=None, rule_files=[]
    )
    process = launch.start_prometheus(config_file=config, data_dir=folder / "data")
    try:
        yield process
    finally:
        process.stop()


def anomaly_alert(fingerprint: str, series: dict[str, str], **extra: str) -> dict[str, object]:
    """An alert on the series' anomaly_score as Prometheus sends it: the score's labels, the rule's
    and the external label `monitor`."""
    return make_alert(
        fingerprint,
        starts_at=ALERT_START.isoformat().replace("+00:00", ".123456789Z"),  # Go's nanoseconds
        alertname="AnomalyThreatensSLO",
        detector=LATENCY.name,
        slo="checkout",
        severity="page",
        monitor="slo-pipeline",
        **series,
        **extra,
    )


def post(webhook: launch.ManagedProcess, body: object) -> requests.Response:
    return requests.post(f"{webhook.url}/alerts", data=json.dumps(body), headers=AUTH, timeout=30)


def drivers(database_url: str) -> dict[str, str | None]:
    return dict(fetch_all(database_url, "SELECT fingerprint, driver FROM incidents"))  # type: ignore[arg-type]


def lookup_counts(webhook: launch.ManagedProcess) -> dict[str, float]:
    text = requests.get(f"{webhook.url}/metrics", timeout=10).text
    counts = {}
    for line in text.splitlines():
        if line.startswith("slo_pipeline_webhook_driver_lookups_total{"):
            series, _, value = line.rpartition(" ")
            counts[series.split('outcome="', 1)[1].rstrip('"}')] = float(value)
    return counts


def test_the_backfilled_drivers_are_what_the_webhook_will_query(prometheus: launch.ManagedProcess) -> None:
    result = prometheus_query(
        prometheus, f'anomaly_driver_info{{detector="{LATENCY.name}"}}', time=ALERT_START.timestamp()
    )
    assert sorted(r["metric"]["driver"] for r in result) == ["errors:level_vs_long", "step_change"]


def test_new_anomaly_incidents_get_their_driver_and_keep_it(
    prometheus: launch.ManagedProcess,
    database_url: str,
    webhook_factory: Callable[..., launch.ManagedProcess],
) -> None:
    webhook = webhook_factory(database_url, prometheus_url=prometheus.url)
    notification = make_notification(
        anomaly_alert("pay", PAY),
        anomaly_alert("search", SEARCH),
        anomaly_alert("cart", CART),  # anomaly_score fired, but no driver was published for it
        make_alert(
            "retrain", alertname="AnomalyDetectorNeedsRetraining", detector=LATENCY.name, retrain="true"
        ),
        make_alert("burn", alertname="SLOBurnFast", slo="checkout", burn_tier="fast", severity="page"),
    )

    response = post(webhook, notification)

    assert response.status_code == 200, response.text
    assert response.json()["incidents_inserted"] == 5
    assert drivers(database_url) == {
        "pay": "errors:level_vs_long",
        "search": "step_change",
        "cart": None,
        "retrain": None,  # detector-wide: no single series drove it
        "burn": None,  # no detector label: not looked up at all
    }
    assert lookup_counts(webhook) == {"found": 2.0, "no_match": 2.0, "failed": 0.0}

    # Alertmanager's retry of the same body, then the resolution: no second lookup, driver kept.
    assert post(webhook, notification).json()["status"] == "duplicate"
    resolved = anomaly_alert("pay", PAY)
    resolved.update(status="resolved", endsAt=datetime.now(UTC).isoformat())
    assert post(webhook, make_notification(resolved)).json()["incidents_updated"] == 1
    rows = fetch_all(database_url, "SELECT status, driver FROM incidents WHERE fingerprint = 'pay'")
    assert rows == [("resolved", "errors:level_vs_long")]
    assert lookup_counts(webhook) == {"found": 2.0, "no_match": 2.0, "failed": 0.0}


def test_unreachable_prometheus_stores_the_incident_without_driver(
    database_url: str, webhook_factory: Callable[..., launch.ManagedProcess]
) -> None:
    webhook = webhook_factory(database_url)  # its Prometheus URL is a port nobody listens on

    response = post(webhook, make_notification(anomaly_alert("pay", PAY), anomaly_alert("cart", CART)))

    assert response.status_code == 200, response.text
    assert drivers(database_url) == {"pay": None, "cart": None}
    assert lookup_counts(webhook) == {"found": 0.0, "no_match": 0.0, "failed": 2.0}
    log = Path(webhook.log_path).read_text(encoding="utf-8")
    assert "without a driver (2 failed)" in log and "Connection refused" in log


def test_a_prometheus_outage_is_one_log_line_per_notification_not_one_per_incident(
    database_url: str, webhook_factory: Callable[..., launch.ManagedProcess]
) -> None:
    """Issue 9 finding 9: 2,001 lines for one request before."""
    webhook = webhook_factory(database_url)  # its Prometheus URL is a port nobody listens on
    alerts = [anomaly_alert(f"pay-{i}", PAY) for i in range(300)]

    response = post(webhook, make_notification(*alerts))

    assert response.status_code == 200, response.text
    assert lookup_counts(webhook)["failed"] == 300.0
    lines = [
        line for line in Path(webhook.log_path).read_text(encoding="utf-8").splitlines() if "driver" in line
    ]
    assert len(lines) == 1, lines
    assert "300 incident(s) without a driver (300 failed)" in lines[0] and "and 290 more" in lines[0]


def test_a_prometheus_that_hangs_costs_the_budget_not_the_delivery(
    database_url: str, webhook_factory: Callable[..., launch.ManagedProcess]
) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)  # connections complete in the backlog; nothing ever answers
        webhook = webhook_factory(
            database_url, prometheus_url=f"http://127.0.0.1:{listener.getsockname()[1]}"
        )
        response = post(webhook, make_notification(anomaly_alert("pay", PAY), anomaly_alert("cart", CART)))
        # The webhook answered although Prometheus never does: the lookup gave up within its budget
        # (a hang would run into post()'s own timeout). Both alerts share one query (same detector
        # and start) and it was not retried: each attempt left a connection in the backlog.
        listener.setblocking(False)
        attempts = 0
        while True:
            try:
                connection, _ = listener.accept()
            except BlockingIOError:
                break
            connection.close()
            attempts += 1

    assert response.status_code == 200, response.text
    assert attempts == 1, attempts
    assert drivers(database_url) == {"pay": None, "cart": None}
    assert lookup_counts(webhook)["failed"] == 2.0


def lookups(database_url: str) -> dict[str, tuple[object, ...]]:
    rows = fetch_all(
        database_url, "SELECT fingerprint, driver, driver_lookup, driver_lookup_attempts FROM incidents"
    )
    return {str(row[0]): row[1:] for row in rows}


def age(database_url: str, minutes: int) -> None:
    """Move the incidents' creation and last lookup `minutes` into the past (starts_at stays)."""
    fetch_all(
        database_url,
        "UPDATE incidents SET created_at = created_at - make_interval(mins => %s),"
        " driver_lookup_at = driver_lookup_at - make_interval(mins => %s) RETURNING id",
        (minutes, minutes),
    )


def store_without_lookup(database_url: str, *alerts: dict[str, object]) -> dict[str, int]:
    """Incidents stored by the webhook's own code with no lookup outcome recorded (as when writing
    it failed); returns their ids by fingerprint."""
    body = json.dumps(make_notification(*alerts))
    conn = connect(database_url)
    try:
        sha = hashlib.sha256(body.encode()).hexdigest()
        result = record_notification(conn, body, sha, parse_notification(json.loads(body)), 0, frozenset())
    finally:
        conn.close()
    return {incident.alert.fingerprint: incident.id for incident in result.new_incidents}


def unreachable_url() -> str:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{unused.getsockname()[1]}"


def test_a_failed_lookup_is_retried_by_the_worker_until_prometheus_answers(
    prometheus: launch.ManagedProcess,
    database_url: str,
    webhook_factory: Callable[..., launch.ManagedProcess],
) -> None:
    webhook = webhook_factory(database_url)  # Prometheus unreachable while the incidents are new
    assert post(webhook, make_notification(anomaly_alert("pay", PAY), anomaly_alert("cart", CART))).ok
    # One refused query (the webhook takes incidents in fingerprint order); the other incident,
    # of the same detector and start, was not asked about.
    assert lookups(database_url) == {"cart": (None, "failed", 1), "pay": (None, "failed", 0)}

    worker = RetrainWorker(load_settings(database_url=database_url, prometheus_url=prometheus.url))
    assert worker.retry_drivers() == [], "the webhook's own lookup just ran: not retried yet"
    age(database_url, 2)
    outcomes = worker.retry_drivers()

    assert sorted(o.outcome for o in outcomes) == ["found", "no_match"]
    assert lookups(database_url) == {
        "pay": ("errors:level_vs_long", "found", 1),
        "cart": (None, "no_match", 2),  # Prometheus answered: asking again would not help
    }
    age(database_url, 600)
    assert worker.retry_drivers() == []


def test_a_pass_charges_only_the_incident_it_asked_about_then_backs_off(database_url: str) -> None:
    ids = store_without_lookup(database_url, anomaly_alert("pay", PAY), anomaly_alert("search", SEARCH))
    age(database_url, 2)
    worker = RetrainWorker(load_settings(database_url=database_url, prometheus_url=unreachable_url()))

    first = worker.retry_drivers()
    # Newest first (same start: highest id); after its refused query the other is not asked.
    assert [(o.incident_id, o.outcome, o.queried) for o in first] == [
        (ids["search"], "failed", True),
        (ids["pay"], "failed", False),
    ]
    assert lookups(database_url) == {"search": (None, "failed", 1), "pay": (None, "failed", 0)}
    # `search` now waits a minute; `pay` was never asked, so it is still due.
    assert [(o.incident_id, o.queried) for o in worker.retry_drivers()] == [(ids["pay"], True)]
    assert worker.retry_drivers() == []
    age(database_url, 2)  # the first retry's minute has passed for both: the same again
    assert [(o.incident_id, o.queried) for o in worker.retry_drivers()] == [
        (ids["search"], True),
        (ids["pay"], False),
    ]
    assert [(o.incident_id, o.queried) for o in worker.retry_drivers()] == [(ids["pay"], True)]
    assert lookups(database_url) == {"search": (None, "failed", 2), "pay": (None, "failed", 2)}
    age(database_url, 2)  # after a second lookup the next waits 4 minutes: 2 are not enough
    assert worker.retry_drivers() == []


def test_retries_are_bounded_by_attempts_and_age(database_url: str) -> None:
    ids = store_without_lookup(database_url, anomaly_alert("pay", PAY), anomaly_alert("old", CART))
    fetch_all(
        database_url,
        "UPDATE incidents SET starts_at = now() - interval '2 days' WHERE fingerprint = 'old' RETURNING id",
    )
    worker = RetrainWorker(load_settings(database_url=database_url, prometheus_url=unreachable_url()))
    for attempt in range(1, MAX_ATTEMPTS + 1):
        age(database_url, 300)  # longer than the longest back-off (256 min)
        outcomes = worker.retry_drivers()
        assert [(o.incident_id, o.outcome) for o in outcomes] == [(ids["pay"], "failed")]
        assert lookups(database_url)["pay"] == (None, "failed", attempt)
    age(database_url, 300)
    assert worker.retry_drivers() == []  # attempts spent
    assert lookups(database_url)["old"] == (None, None, 0)  # older than a day: never retried
