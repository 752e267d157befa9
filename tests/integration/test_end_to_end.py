"""The whole loop on real processes: simulated service -> Prometheus -> exporter (MLflow champion)
-> rules -> Alertmanager -> webhook -> PostgreSQL -> worker -> MLflow -> exporter hot-swap.

Everything runs the repo's own configs and rules through the same launcher as `make demo`. Only
time is compressed: rule durations are scaled by RULES_TIME_SCALE (launch.write_rules) and the
detector samples every 15 s, so a run takes minutes instead of hours. Nothing is mocked.
"""

from __future__ import annotations

import hashlib
import json
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import TypeVar

import psycopg2
import psycopg2.extras
import pytest

from slo_pipeline.adapters import lake
from slo_pipeline.core.features import FEATURE_NAMES
from slo_pipeline.devstack.demo import inject_incident
from slo_pipeline.devstack.stack import Stack, StackOptions, start_stack
from tests.fixtures.waiting import wait_until

T = TypeVar("T")

DETECTOR = "e2e_latency_p95"
ROUTES = {"/api/checkout", "/api/search", "/api/login"}
RULES_TIME_SCALE = 1 / 30
PIPELINE_YAML = f"""
detectors:
  - name: {DETECTOR}
    query: >-
      histogram_quantile(0.95,
        sum by (route, le) (rate(demo_http_request_duration_seconds_bucket[1m])))
    step_seconds: 15
    training_window_seconds: 86400
    false_alarms_per_week: 1
    # A short medium window (2 min) so scores settle soon after the spike; the rules' 1/30 time
    # scale makes keep_firing_for 30 s, so the incident resolves within minutes.
    windows: {{short: 4, medium: 8, long: 120}}
"""


def scrape(url: str) -> str:
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as response:
        return response.read().decode()


def served_versions(exporter_url: str) -> set[str]:
    versions = set()
    for line in scrape(exporter_url).splitlines():
        if line.startswith("anomaly_model_info{") and f'detector="{DETECTOR}"' in line:
            label_text = line[line.index("{") + 1 : line.rindex("}")]
            for pair in label_text.split('",'):
                key, _, value = pair.partition("=")
                if key.strip() == "model_version":
                    versions.add(value.strip('"'))
    return versions


def query(database_url: str, sql: str, *params: object) -> list[dict]:
    conn = psycopg2.connect(database_url)
    try:
        with conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
            cur.execute(sql, params)
            return [dict(row) for row in cur.fetchall()]
    finally:
        conn.close()


def post_alerts(webhook_url: str, token: str, body: bytes) -> int:
    request = urllib.request.Request(
        f"{webhook_url}/alerts",
        data=body,
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status


def prometheus_vector(prometheus_url: str, promql: str) -> list[dict]:
    url = f"{prometheus_url}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)["data"]["result"]


@pytest.fixture
def stack(tmp_path: Path, database_url: str) -> Stack:
    config = tmp_path / "pipeline.yml"
    config.write_text(PIPELINE_YAML, encoding="utf-8")
    options = StackOptions(
        data_dir=tmp_path / "stack",
        pipeline_config=config,
        history_days=1.0,
        rules_time_scale=RULES_TIME_SCALE,
        scrape_interval="1s",
        evaluation_interval="1s",
        exporter_interval_seconds=2.0,
        alertmanager_group_wait="1s",
        alertmanager_group_interval="2s",
        alertmanager_repeat_interval="1h",
        retrain_cooldown_seconds=3600.0,
        worker_poll_seconds=1.0,
        database_url=database_url,
        webhook_token="e2e-token",
        with_ui=False,
        lake_sync=True,
        lake_sync_interval_seconds=5.0,
    )
    running = start_stack(options)
    try:
        yield running
    finally:
        running.stop()


@pytest.mark.integration
def test_anomaly_becomes_incident_triggers_retraining_and_new_model_serves(stack: Stack) -> None:
    urls = stack.urls
    database_url = urls["database"]
    exporter_pid = stack.processes["exporter"].pid  # type: ignore[attr-defined]

    # The first model, trained by the stack from backfilled history, serves as version 1.
    assert wait_until(
        lambda: served_versions(urls["exporter"]),
        timeout=60,
        describe="the exporter to serve version 1",
        interval=1.0,
        ignoring=(Exception,),
    ) == {"1"}

    injected_at = time.time()
    inject_incident(urls["simulator"], "latency_spike", duration_seconds=45)

    # The anomaly alert travelled Prometheus -> Alertmanager -> webhook -> PostgreSQL.
    incident = wait_until(
        lambda: query(
            database_url,
            "SELECT * FROM incidents WHERE alertname = 'AnomalyDetected' AND detector = %s "
            "AND starts_at >= to_timestamp(%s) ORDER BY id LIMIT 1",
            DETECTOR,
            injected_at - 5,
        ),
        timeout=120,
        describe="an AnomalyDetected incident for the detector",
        interval=1.0,
        ignoring=(Exception,),
    )[0]
    assert incident["labels"]["route"] in ROUTES
    assert incident["labels"]["detector"] == DETECTOR
    assert injected_at - 5 <= incident["starts_at"].timestamp() <= time.time()
    assert incident["ends_at"] is None or incident["status"] == "resolved"

    # The webhook recorded which feature drove it, looked up in the exporter's anomaly_driver_info
    # at the alert's start (written just after the incident's own commit, hence the short wait).
    driver = wait_until(
        lambda: query(database_url, "SELECT driver FROM incidents WHERE id = %s", incident["id"])[0][
            "driver"
        ],
        timeout=15,
        describe="the incident's driver",
        interval=1.0,
        ignoring=(Exception,),
    )
    assert driver in FEATURE_NAMES, driver

    # Redelivery is idempotent: the same bytes twice store one delivery, and the alert's
    # incident stays one row (same fingerprint and startsAt). Counts are scoped to this alert,
    # since Alertmanager keeps sending other notifications meanwhile.
    delivery = query(
        database_url, "SELECT body FROM alert_deliveries WHERE id = %s", incident["first_seen_delivery_id"]
    )[0]
    body = json.dumps(delivery["body"]).encode()
    same_body = "SELECT count(*) AS n FROM alert_deliveries WHERE body_sha256 = %s"
    same_alert = "SELECT count(*) AS n FROM incidents WHERE fingerprint = %s AND starts_at = %s"
    for _ in range(2):
        assert post_alerts(urls["webhook"], "e2e-token", body) == 200
    assert query(database_url, same_body, hashlib.sha256(body).hexdigest())[0]["n"] == 1
    assert query(database_url, same_alert, incident["fingerprint"], incident["starts_at"])[0]["n"] == 1

    # The retrain alert queued a job; the worker trained, validated and promoted version 2.
    job = wait_until(
        lambda: query(
            database_url,
            "SELECT * FROM retrain_jobs WHERE detector = %s AND status IN ('succeeded', 'failed')",
            DETECTOR,
        ),
        timeout=300,
        describe="a finished retrain job",
        interval=2,
        ignoring=(Exception,),
    )[0]
    assert job["status"] == "succeeded", job["error"]
    assert job["model_version"] == "2"
    assert job["run_id"]
    assert job["decision"] == "promoted", job["decision_reasons"]

    # The exporter swapped to the new champion without a restart.
    wait_until(
        lambda: served_versions(urls["exporter"]) == {"2"},
        timeout=60,
        describe="the exporter to serve version 2",
        interval=1.0,
        ignoring=(Exception,),
    )
    assert stack.processes["exporter"].pid == exporter_pid  # type: ignore[attr-defined]
    assert stack.processes["exporter"].is_running()  # type: ignore[attr-defined]

    # Once the spike is over, the resolved notification closes the incident.
    resolved = wait_until(
        lambda: query(
            database_url,
            "SELECT * FROM incidents WHERE id = %s AND status = 'resolved'",
            incident["id"],
        ),
        timeout=420,
        describe="the incident to be resolved",
        interval=2,
        ignoring=(Exception,),
    )[0]
    assert resolved["ends_at"] is not None
    assert resolved["ends_at"] > resolved["starts_at"]

    # The lake sync loop ran beside it: every detector's series reached the lake, and Prometheus
    # scraped the loop's own account of that.
    detectors = [detector.name for detector in stack.settings.pipeline.detectors]
    for name in detectors:
        assert lake.latest_timestamp(stack.settings.data_lake, name) is not None, name
    last_sync = "slo_pipeline_lake_sync_last_success_timestamp_seconds"
    synced = prometheus_vector(urls["prometheus"], f"{last_sync} > 0")
    assert sorted(sample["metric"]["detector"] for sample in synced) == sorted(detectors)
