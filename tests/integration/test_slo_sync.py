"""`slo-pipeline rules sync` as a real process between a real PostgreSQL and a real Prometheus.

An SLO stored (and then edited the way the UI edits it) reaches Prometheus' loaded rules without
anyone running `rules render`; a PostgreSQL that goes away and comes back, and a stored SLO whose
rules promtool refuses, leave the last good rule files in place and the loop running; a Prometheus
that is down gets the edit (from disk, and by a retried reload) once it is back; SIGTERM stops the
loop with exit code 0.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pytest
import requests

from slo_pipeline.adapters.postgres import connect
from slo_pipeline.devstack import launch
from slo_pipeline.devstack.pgserver import ManagedPostgres
from slo_pipeline.slo.spec import parse_specs
from slo_pipeline.slo.store import apply_slos
from streamlit_app import slos as ui_slos
from tests.fixtures.database import fetch_all
from tests.fixtures.paths import REPO_ROOT
from tests.fixtures.waiting import wait_until, watching

pytestmark = pytest.mark.integration

EXAMPLE = REPO_ROOT / "examples" / "slos.yml"
SLO_NAME = "demo-availability"
SYNC_INTERVAL_SECONDS = 0.5
TIMEOUT_SECONDS = 60.0


def loaded_rules(prometheus: launch.ManagedProcess) -> dict[str, list[dict[str, object]]]:
    body = requests.get(f"{prometheus.url}/api/v1/rules", timeout=10).json()
    return {group["name"]: group["rules"] for group in body["data"]["groups"]}


def loaded_objective(prometheus: launch.ManagedProcess, slo_name: str) -> str | None:
    """The PromQL of `slo:objective:ratio` for the SLO as Prometheus loaded it, e.g. `vector(0.995)`."""
    for rules in loaded_rules(prometheus).values():
        for rule in rules:
            labels = rule.get("labels") or {}
            if rule.get("name") == "slo:objective:ratio" and labels.get("slo") == slo_name:  # type: ignore[union-attr]
                return str(rule["query"])
    return None


def edit_objective(database_url: str, objective: float, who: str) -> None:
    """What the UI's Save button does (streamlit_app/ui_slos.py -> slos.save_edit)."""
    (original,) = [slo for slo in ui_slos.load_slos(database_url) if slo.name == SLO_NAME]
    edit = ui_slos.SLOEdit(objective=objective, time_period=original.block.time_period)
    assert ui_slos.save_edit(database_url, original, edit, changed_by=who, change_note="integration test")


def set_error_query(database_url: str, query: str) -> None:
    """A hand-typed UPDATE (psql): the trigger records it, nothing validates its PromQL."""
    conn = connect(database_url)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(
                "UPDATE slos SET spec = jsonb_set(spec, '{slos,0,sli,events,error_query}',"
                " to_jsonb(%s::text)) WHERE name = %s",
                (query, SLO_NAME),
            )
            assert cur.rowcount == 1
    finally:
        conn.close()


def rule_files(folder: Path) -> dict[str, str]:
    return {path.name: path.read_text(encoding="utf-8") for path in sorted(folder.glob("*.yml"))}


def log_lines(sync: launch.ManagedProcess, text: str, level: str = "") -> list[str]:
    return [line for line in sync.log_tail(100_000).splitlines() if text in line and level in line]


def start_prometheus(
    tmp_path: Path, rules_dir: Path, managed_processes: list[launch.ManagedProcess], port: int | None = None
) -> launch.ManagedProcess:
    """Like the prometheus_factory fixture, but restartable on the same port and TSDB."""
    config = launch.write_prometheus_config(
        tmp_path / "prometheus" / "prometheus.yml",
        scrape_targets={},
        alertmanager_url=None,
        rule_files=[rules_dir / "*.yml"],
        scrape_interval="1s",
        evaluation_interval="1s",
    )
    process = launch.start_prometheus(
        config_file=config, data_dir=tmp_path / "prometheus" / "data", port=port
    )
    managed_processes.append(process)
    return process


def start_sync(
    tmp_path: Path,
    rules_dir: Path,
    *,
    database_url: str,
    prometheus_url: str,
    managed_processes: list[launch.ManagedProcess],
) -> launch.ManagedProcess:
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "PROMETHEUS_URL": prometheus_url,
        "SLO_PIPELINE_SLO_SYNC_INTERVAL": str(SYNC_INTERVAL_SECONDS),
        "SLO_PIPELINE_CONFIG": str(tmp_path / "absent.yml"),  # no detectors needed
    }
    argv = [sys.executable, "-m", "slo_pipeline.cli", "--log-level", "DEBUG", "rules", "sync"]
    argv += ["--out", str(rules_dir)]
    sync = launch.start_service(
        "slo-sync", lambda port: argv, port=None, log_path=tmp_path / "sync.log", ready_path=None, env=env
    )
    managed_processes.append(sync)  # stopped at teardown even when the test fails
    return sync


def test_sync_follows_edits_survives_outages_and_refuses_broken_rules(
    tmp_path: Path,
    private_postgres: ManagedPostgres,
    private_database_url: str,
    managed_processes: list[launch.ManagedProcess],
) -> None:
    rules_dir = tmp_path / "rules" / "slo"
    rules_dir.mkdir(parents=True)
    prometheus = start_prometheus(tmp_path, rules_dir, managed_processes)
    sync = start_sync(
        tmp_path,
        rules_dir,
        database_url=private_database_url,
        prometheus_url=prometheus.url,
        managed_processes=managed_processes,
    )
    wait_until(
        lambda: bool(log_lines(sync, "syncing SLO rules into")),
        timeout=TIMEOUT_SECONDS,
        describe="the first tick",
        **watching(sync),
    )

    # 1. SLOs stored with the CLI's store function reach Prometheus.
    conn = connect(private_database_url)
    try:
        apply_slos(conn, parse_specs(EXAMPLE.read_text(encoding="utf-8")), changed_by="test", change_note="")
    finally:
        conn.close()
    wait_until(
        lambda: (
            {
                "sloth-slo-alerts-demo-demo-availability",
                "sloth-slo-meta-recordings-demo-demo-latency",
            }
            <= set(loaded_rules(prometheus))
        ),
        timeout=TIMEOUT_SECONDS,
        describe="Prometheus to load the generated groups",
        **watching(sync),
    )
    assert loaded_objective(prometheus, SLO_NAME) == "vector(0.995)"

    # 2. An edit the way the UI makes it: Prometheus evaluates the new objective.
    edit_objective(private_database_url, 99.9, "erin")
    wait_until(
        lambda: loaded_objective(prometheus, SLO_NAME) == "vector(0.999)",
        timeout=TIMEOUT_SECONDS,
        describe="the edited objective",
        **watching(sync),
    )
    before_outage = rule_files(rules_dir)
    assert set(before_outage) == {"demo.rules.yml"}

    # 3. PostgreSQL goes away: the files stay, the error is logged once, the loop keeps ticking.
    private_postgres.stop()
    wait_until(
        lambda: bool(log_lines(sync, "still failing (4 ticks)")),
        timeout=TIMEOUT_SECONDS,
        describe="several failed ticks",
        **watching(sync),
    )
    assert len(log_lines(sync, "reading the SLOs from PostgreSQL failed", "ERROR")) == 1
    assert rule_files(rules_dir) == before_outage
    assert loaded_objective(prometheus, SLO_NAME) == "vector(0.999)"

    # ... and comes back: the next edit goes through.
    private_postgres.start()
    wait_until(
        lambda: bool(log_lines(sync, "PostgreSQL works again")),
        timeout=TIMEOUT_SECONDS,
        describe="the recovery",
        **watching(sync),
    )
    edit_objective(private_database_url, 99.0, "frank")
    wait_until(
        lambda: loaded_objective(prometheus, SLO_NAME) == "vector(0.99)",
        timeout=TIMEOUT_SECONDS,
        describe="the edit after the outage",
        **watching(sync),
    )

    # 4. Prometheus goes away: the edit is installed anyway, the reload is retried until it works.
    prometheus.stop()
    edit_objective(private_database_url, 99.5, "grace")
    wait_until(
        lambda: bool(log_lines(sync, "reloading Prometheus failed", "ERROR")),
        timeout=TIMEOUT_SECONDS,
        describe="the failed reload",
        **watching(sync),
    )
    assert "vector(0.995)" in rule_files(rules_dir)["demo.rules.yml"]
    wait_until(
        lambda: bool(log_lines(sync, "reloading Prometheus still failing (3")),
        timeout=TIMEOUT_SECONDS,
        describe="several failed reloads",
        **watching(sync),
    )
    prometheus = start_prometheus(tmp_path, rules_dir, managed_processes, port=prometheus.port)
    wait_until(
        lambda: bool(log_lines(sync, "reloading Prometheus works again")),
        timeout=TIMEOUT_SECONDS,
        describe="the reload to work again",
        **watching(sync),
    )
    assert loaded_objective(prometheus, SLO_NAME) == "vector(0.995)"
    assert len(log_lines(sync, "reloading Prometheus failed", "ERROR")) == 1

    # 5. A hand-typed UPDATE whose PromQL promtool refuses: not installed, the error names the SLO.
    good_files = rule_files(rules_dir)
    (stored_query,) = fetch_all(
        private_database_url,
        "SELECT spec #> '{slos,0,sli,events,error_query}' FROM slos WHERE name = %s",
        (SLO_NAME,),
    )[0]
    set_error_query(private_database_url, 'sum(rate(demo_http_requests_total{code=~"5.."}[{{.window}}])')
    wait_until(
        lambda: bool(log_lines(sync, "not installing the rules", "ERROR")),
        timeout=TIMEOUT_SECONDS,
        describe="the refusal",
        **watching(sync),
    )
    (refusal,) = log_lines(sync, "not installing the rules", "ERROR")
    assert f"changed since the last installed rules: {SLO_NAME})" in refusal
    assert f"slo '{SLO_NAME}' (service 'demo')" in sync.log_tail(100_000)  # promtool's complaint, mapped
    assert rule_files(rules_dir) == good_files
    assert loaded_objective(prometheus, SLO_NAME) == "vector(0.995)"

    # ... fixed by hand, then edited in the UI: installed again; the refusal was logged once.
    set_error_query(private_database_url, str(stored_query))
    edit_objective(private_database_url, 99.95, "heidi")
    wait_until(
        lambda: loaded_objective(prometheus, SLO_NAME) == "vector(0.9995)",
        timeout=TIMEOUT_SECONDS,
        describe="the edit after the fix",
        **watching(sync),
    )
    assert len(log_lines(sync, "not installing the rules", "ERROR")) == 1

    # 6. SIGTERM: the loop finishes its tick and exits cleanly, leaving the files as they were.
    final_files = rule_files(rules_dir)
    os.killpg(sync.pid, signal.SIGTERM)
    assert sync.popen.wait(timeout=30) == 0, sync.log_tail()
    assert log_lines(sync, "SLO rules sync stopped")
    assert rule_files(rules_dir) == final_files
