"""Retraining on SLO violations (issue #3), on real processes.

1. Webhook + PostgreSQL: a burn-rate page for an SLO applied through the SLO store enqueues a
   retrain job for every detector linked to it, through the same one-per-detector and cooldown
   rules as `retrain="true"` alerts.
2. The whole alert path: simulator -> Prometheus (the SLO rules rendered by rulegen from
   examples/slos.yml, plus rules/anomaly*.yml) -> Alertmanager (the repo's routes and
   inhibitions) -> webhook -> PostgreSQL. An error burst fires the 14.4x page; the slower tiers
   of the same SLO fire in Prometheus but Alertmanager inhibits them.

How time is compressed, and why history is backfilled: the rules are scaled by TIME_SCALE
(launch.write_rules), so the tiers' windows 5m/1h, 30m/6h, 2h/1d, 6h/3d become 5s/1m, 30s/6m,
2m/24m, 6m/72m. A Prometheus that started a minute ago would compute its "72m" ratio over one
minute of data, so every tier would see the burst at once and the slower ones (lower
thresholds) would even fire first: nothing like production. Normal traffic from the same
traffic model is therefore backfilled for longer than the longest scaled window, with the live
scrape's job/instance labels, so each long window is diluted by healthy history exactly as it
would be at full scale and the tiers fire in their real order (fast page first).

`min_events` still makes sense at this scale: the guard is a rate (`total >= 20 / 300`), which
time scaling does not touch. A compressed 5s window at the simulator's ~24 req/s holds ~120
events, so the guard neither blocks the test nor is bypassed (it would block below 20 events).
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
import requests

from slo_pipeline.adapters.postgres import connect
from slo_pipeline.devstack import launch
from slo_pipeline.devstack.simulator.history import write_history
from slo_pipeline.slo.burnrate import TIERS, WINDOW_SECONDS
from slo_pipeline.slo.rulegen import render_rule_files
from slo_pipeline.slo.spec import parse_specs
from slo_pipeline.slo.store import apply_slos, detectors_for_slo, load_slos
from tests.fixtures.database import WEBHOOK_TOKEN, fetch_all, make_alert, make_notification
from tests.fixtures.paths import REPO_ROOT
from tests.fixtures.services import prometheus_query
from tests.fixtures.waiting import wait_until

pytestmark = pytest.mark.integration

T = TypeVar("T")

EXAMPLE_SLOS = REPO_ROOT / "examples" / "slos.yml"
SLO = "demo-availability"
ALERTNAME = "DemoAvailabilitySLO"
DETECTORS = [
    "demo_error_ratio",
    "demo_request_rate",
    "demo_route_health",
]  # `detectors:` of demo-availability
NO_DETECTORS_SLO = "demo-checkout-availability"
AUTH = {"Authorization": f"Bearer {WEBHOOK_TOKEN}"}

TIME_SCALE = 1 / 60
# Longest window an alert tier reads (3d), scaled, plus margin: every long window starts full.
HISTORY_SECONDS = WINDOW_SECONDS["3d"] * TIME_SCALE + 600
HISTORY_STEP_SECONDS = 5.0
# Half the requests fail: ~100x the 0.5% budget. Expected onsets after injection (history
# diluting the long windows): slowest ~5s, fast ~8s, medium ~18s, slow ~30s. The burst outlasts
# the test so nothing resolves while it asserts.
BURST = {"kind": "error_burst", "duration_seconds": 300, "magnitude": 0.5}
SLOWER_TIERS = ("medium", "slow", "slowest")


def post(webhook: launch.ManagedProcess, body: dict[str, Any]) -> dict[str, Any]:
    response = requests.post(f"{webhook.url}/alerts", json=body, headers=AUTH, timeout=10)
    assert response.status_code == 200, response.text
    return dict(response.json())


def apply_example_slos(database_url: str) -> None:
    conn = connect(database_url)
    try:
        apply_slos(conn, parse_specs(EXAMPLE_SLOS.read_text(encoding="utf-8")), changed_by="e2e-test")
        # The link the webhook follows, read back through the store's own API.
        assert detectors_for_slo(conn, SLO) == DETECTORS
        assert detectors_for_slo(conn, NO_DETECTORS_SLO) == []
    finally:
        conn.close()


def burn_page(
    fingerprint: str, *, slo: str = SLO, tier: str = "fast", severity: str = "page", **fields: str
) -> dict[str, object]:
    """An alert labelled as the generated rules label it (see rules/slo/demo.rules.yml); `fields`
    are make_alert's (status, starts_at, ends_at)."""
    labels = {"burn_tier": tier, "slo": slo, "severity": severity, "sloth_severity": severity}
    return make_alert(fingerprint, alertname=ALERTNAME, **labels, **fields)


def jobs(database_url: str) -> list[tuple[object, ...]]:
    return fetch_all(
        database_url,
        "SELECT j.detector, j.status, j.reason, i.fingerprint, i.slo, i.severity "
        "FROM retrain_jobs j LEFT JOIN incidents i ON i.id = j.incident_id ORDER BY j.id",
    )


# --- 1. the webhook alone ------------------------------------------------------------------------


def test_burn_rate_page_enqueues_the_slos_detectors_once(
    database_url: str, webhook_factory: Callable[..., launch.ManagedProcess]
) -> None:
    apply_example_slos(database_url)
    webhook = webhook_factory(database_url, retrain_cooldown=3600, detectors=DETECTORS)

    first = post(webhook, make_notification(burn_page("p1"), receiver="slo-pipeline-page", group_key="g1"))
    assert sorted(first["retrain_jobs"]) == DETECTORS
    reason = f"burn-rate page {ALERTNAME} for SLO {SLO} (burn_tier fast, fingerprint p1)"
    assert jobs(database_url) == [(d, "queued", reason, "p1", SLO, "page") for d in DETECTORS]

    # Still queued: a medium page, a re-fire and the detector's own retrain alert add nothing.
    again = make_notification(
        burn_page("p2", tier="medium"),
        burn_page("p1", starts_at="2024-05-01T11:00:00Z"),
        make_alert("r1", retrain="true", detector="demo_error_ratio"),
        group_key="g2",
    )
    assert post(webhook, again)["retrain_jobs"] == {}
    # Finished, but within the cooldown: still nothing (same rule as retrain="true" alerts).
    fetch_all(database_url, "UPDATE retrain_jobs SET status = 'succeeded' RETURNING id")
    assert post(webhook, make_notification(burn_page("p3"), group_key="g3"))["retrain_jobs"] == {}
    assert len(jobs(database_url)) == len(DETECTORS)


def test_pages_that_must_not_retrain_are_still_stored(
    database_url: str, webhook_factory: Callable[..., launch.ManagedProcess]
) -> None:
    apply_example_slos(database_url)
    webhook = webhook_factory(database_url, retrain_cooldown=0, detectors=DETECTORS)
    body = make_notification(
        burn_page("unknown", slo="no-such-slo"),
        burn_page("no-detectors", slo=NO_DETECTORS_SLO),
        burn_page("ticket", tier="slow", severity="ticket"),
        burn_page("resolved", status="resolved", ends_at="2024-05-01T10:05:00Z"),
        make_alert("gated", severity="page", slo=SLO),  # SLO-gated anomaly page: no burn_tier
    )
    answer = post(webhook, body)
    assert (answer["incidents_inserted"], answer["retrain_jobs"]) == (5, {})
    stored = fetch_all(database_url, "SELECT fingerprint, slo FROM incidents ORDER BY fingerprint")
    assert stored == [
        ("gated", SLO),
        ("no-detectors", NO_DETECTORS_SLO),
        ("resolved", SLO),
        ("ticket", SLO),
        ("unknown", "no-such-slo"),
    ]
    assert jobs(database_url) == []
    # The same notification again is a duplicate; one with a real page then does enqueue.
    assert post(webhook, body)["status"] == "duplicate"
    assert sorted(post(webhook, make_notification(burn_page("p1")))["retrain_jobs"]) == DETECTORS


# --- 2. the whole alert path ---------------------------------------------------------------------


def scaled(window: str) -> str:
    return launch.scale_duration(window, TIME_SCALE)


def write_scaled_rules(database_url: str, out: Path) -> list[Path]:
    """Render the stored SLOs with rulegen, then scale them and the anomaly rules for Prometheus."""
    conn = connect(database_url)
    try:
        slos = load_slos(conn)
    finally:
        conn.close()
    rendered = out / "rendered"
    rendered.mkdir(parents=True)
    sources = []
    for name, text in render_rule_files(slos).items():
        (rendered / name).write_text(text, encoding="utf-8")
        sources.append(rendered / name)
    sources += sorted((REPO_ROOT / "rules").glob("anomaly*.yml"))
    written = launch.write_rules(out / "scaled", time_scale=TIME_SCALE, sources=sources)

    # Every recorded window (and the 30d period) really shrank: 5m -> 5s ... 3d -> 72m, 30d -> 12h.
    slo_rules = (out / "scaled" / "demo.rules.yml").read_text(encoding="utf-8")
    ranges = set(re.findall(r"\[(\w+)\]", slo_rules))
    assert ranges == {scaled(w) for w in (*WINDOW_SECONDS, "30d", "28d", "7d")}, ranges
    assert {scaled(t.short) for t in TIERS} | {scaled(t.long) for t in TIERS} <= ranges
    return written


def start_simulator(tmp_path: Path, processes: list[launch.ManagedProcess]) -> launch.ManagedProcess:
    def argv(port: int) -> list[str]:
        listen = f"127.0.0.1:{port}"
        return [
            sys.executable,
            "-m",
            "slo_pipeline.cli",
            "simulator",
            "serve",
            "--listen",
            listen,
            "--seed",
            "7",
        ]

    simulator = launch.start_service(
        "simulator", argv, port=None, log_path=tmp_path / "simulator.log", ready_path="/healthz"
    )
    processes.append(simulator)
    return simulator


def backfill_normal_history(simulator: launch.ManagedProcess, data_dir: Path, tmp_path: Path) -> None:
    """Healthy traffic up to now, labelled like Prometheus will label the live scrapes, so history
    and live samples are one series set (the simulator's fresh counters read as one reset)."""
    end = time.time() // HISTORY_STEP_SECONDS * HISTORY_STEP_SECONDS
    history = tmp_path / "history.om"
    labels = {"job": "demo-service", "instance": f"127.0.0.1:{simulator.port}"}
    write_history(
        history,
        start=end - HISTORY_SECONDS,
        end=end,
        step_seconds=HISTORY_STEP_SECONDS,
        seed=1,
        labels=labels,
    )
    launch.backfill_openmetrics(history, data_dir)


def firing_tiers(prometheus: launch.ManagedProcess) -> set[str]:
    result = prometheus_query(
        prometheus, f'ALERTS{{alertname="{ALERTNAME}", slo="{SLO}", alertstate="firing"}}'
    )
    return {series["metric"]["burn_tier"] for series in result}


def alertmanager_alerts(alertmanager: launch.ManagedProcess) -> dict[str, dict[str, Any]]:
    """burn_tier -> Alertmanager's view of that alert of the SLO (inhibited ones included)."""
    response = requests.get(
        f"{alertmanager.url}/api/v2/alerts",
        params={"filter": [f'alertname="{ALERTNAME}"', f'slo="{SLO}"']},
        timeout=10,
    )
    response.raise_for_status()
    return {alert["labels"]["burn_tier"]: alert for alert in response.json()}


def tiers_delivered(database_url: str) -> set[str]:
    rows = fetch_all(
        database_url,
        "SELECT DISTINCT labels ->> 'burn_tier' FROM incidents WHERE alertname = %s AND slo = %s",
        (ALERTNAME, SLO),
    )
    return {str(row[0]) for row in rows}


def test_error_burst_pages_fast_tier_inhibits_slower_ones_and_queues_retraining(
    tmp_path: Path,
    database_url: str,
    webhook_factory: Callable[..., launch.ManagedProcess],
    alertmanager_factory: Callable[..., launch.ManagedProcess],
    prometheus_factory: Callable[..., launch.ManagedProcess],
    managed_processes: list[launch.ManagedProcess],
) -> None:
    apply_example_slos(database_url)
    rule_files = write_scaled_rules(database_url, tmp_path / "rules")
    simulator = start_simulator(tmp_path, managed_processes)
    data_dir = tmp_path / "tsdb"
    backfill_normal_history(simulator, data_dir, tmp_path)

    # default cooldown: one job per detector, period
    webhook = webhook_factory(database_url, detectors=DETECTORS)
    alertmanager = alertmanager_factory(webhook_base_url=webhook.url, token=WEBHOOK_TOKEN)
    prometheus = prometheus_factory(
        scrape_targets={"demo-service": [f"127.0.0.1:{simulator.port}"]},
        alertmanager_url=alertmanager.url,
        rule_files=rule_files,
        data_dir=data_dir,
    )

    # Live scrapes feed the compressed 5s window, and the healthy service pages nobody.
    wait_until(
        lambda: prometheus_query(prometheus, f'slo:sli_error:ratio_rate5m{{slo="{SLO}"}}'),
        timeout=60,
        describe="the SLO's 5m ratio over live scrapes",
        interval=0.5,
    )
    assert firing_tiers(prometheus) & {"fast", "medium"} == set(), "paging before any incident"
    assert jobs(database_url) == []

    injected = requests.post(f"{simulator.url}/incidents", json=BURST, timeout=5)
    assert injected.status_code == 202, injected.text

    # The 14.4x page travels Prometheus -> Alertmanager (page route) -> webhook -> PostgreSQL.
    incident_query = (
        "SELECT i.id, i.slo, i.severity, i.status, d.receiver FROM incidents i "
        "JOIN alert_deliveries d ON d.id = i.first_seen_delivery_id "
        "WHERE i.alertname = %s AND i.labels ->> 'burn_tier' = 'fast' AND i.slo = %s"
    )
    rows = wait_until(
        lambda: fetch_all(database_url, incident_query, (ALERTNAME, SLO)),
        timeout=90,
        describe="the fast burn-rate page in the incidents table",
        interval=0.5,
    )
    ((incident_id, slo, severity, status, receiver),) = rows
    assert (slo, severity, status, receiver) == (SLO, "page", "firing", "slo-pipeline-page")

    # Retraining of every detector of the SLO was queued in that same transaction, linked to it.
    queued = fetch_all(
        database_url, "SELECT detector, status, incident_id, reason FROM retrain_jobs ORDER BY detector"
    )
    assert [row[:3] for row in queued] == [(d, "queued", incident_id) for d in DETECTORS]
    assert all(str(row[3]).startswith(f"burn-rate page {ALERTNAME} for SLO {SLO}") for row in queued)

    # The slower tiers fire in Prometheus too, but Alertmanager inhibits them under the fast page.
    wait_until(
        lambda: firing_tiers(prometheus) >= {"fast", *SLOWER_TIERS},
        timeout=90,
        describe="every burn tier of the SLO to fire in Prometheus",
        interval=0.5,
    )

    def all_slower_tiers_inhibited() -> dict[str, dict[str, Any]] | None:
        alerts = alertmanager_alerts(alertmanager)
        inhibited = all(alerts.get(tier, {}).get("status", {}).get("inhibitedBy") for tier in SLOWER_TIERS)
        return alerts if inhibited else None

    alerts = wait_until(
        all_slower_tiers_inhibited,
        timeout=30,
        describe="Alertmanager to inhibit the slower tiers",
        interval=0.5,
    )
    assert alerts["fast"]["status"] == {"state": "active", "silencedBy": [], "inhibitedBy": []}
    assert {alerts[tier]["status"]["state"] for tier in SLOWER_TIERS} == {"suppressed"}
    # The pages that fire after the fast one never reached the webhook. (The 1x ticket may have:
    # it fires seconds before the fast page, as it would at full scale, and is inhibited since.)
    assert tiers_delivered(database_url) & {"medium", "slow"} == set()
    # Nothing else asked for retraining: the checkout SLO (no detectors) pages too in this
    # demo, without enqueueing anything.
    assert len(fetch_all(database_url, "SELECT id FROM retrain_jobs")) == len(DETECTORS)
