"""The operator UI in a real browser: `streamlit run` on loopback, Debian's chromium via Selenium.

One walk through every page, as an operator would: sign in, see the SLO charts, tighten an
objective (the reason lands in the revision and `rules sync` renders the new rule file), apply a
threshold budget, mark an incident false positive, roll a model back. Each page is saved as a
screenshot under .data/test-artifacts/browser/ (look at them: they are the test's evidence).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from slo_pipeline.devstack import launch
from slo_pipeline.settings import load_settings
from slo_pipeline.slo.history import snapshot_pass
from tests.fixtures.browser import (
    button,
    by_label,
    choose_page,
    replace_text,
    screenshot,
    select_option,
    wait_for,
    wait_idle,
)
from tests.fixtures.database import fetch_all
from tests.fixtures.paths import REPO_ROOT
from tests.fixtures.ui import PASSWORD, add_ui_user
from tests.fixtures.ui_world import (
    DETECTOR,
    MODEL_DETECTOR,
    build_world,
    seed_burst_incident,
    seed_model_versions,
)

pytestmark = pytest.mark.integration
SLO = "demo-availability"


@pytest.fixture
def ui(
    database_url: str,
    tmp_path: Path,
    managed_processes: list[launch.ManagedProcess],
    prometheus_factory: Callable[..., launch.ManagedProcess],
) -> dict[str, object]:
    world = build_world(tmp_path / "world", database_url)
    incident_id = seed_burst_incident(database_url, world)
    tracking_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    seed_model_versions(tracking_uri)
    add_ui_user(database_url, "alice", "editor")
    rule_file = world.rules_dir / "demo.rules.yml"
    prometheus = prometheus_factory(data_dir=world.tsdb, rule_files=[rule_file], evaluation_interval="5s")
    # What the worker does every hour: the SLOs' compliance into PostgreSQL (the SLO page's months).
    history = snapshot_pass(load_settings(database_url=database_url, prometheus_url=prometheus.url))
    assert history.failed == [] and history.snapshots_inserted > 0
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "PROMETHEUS_URL": prometheus.url,
        "MLFLOW_TRACKING_URI": tracking_uri,
        "SLO_PIPELINE_CONFIG": str(REPO_ROOT / "slo-pipeline.yml"),
        "SLO_PIPELINE_SLO_SYNC_INTERVAL": "1",
    }
    managed_processes.append(
        launch.start_service(
            "rules-sync",
            lambda port: [
                sys.executable,
                "-m",
                "slo_pipeline.cli",
                "rules",
                "sync",
                "--out",
                str(world.rules_dir),
            ],
            port=None,
            log_path=tmp_path / "logs" / "rules-sync.log",
            ready_path=None,
            env=env,
            cwd=REPO_ROOT,
        )
    )
    streamlit = launch.start_service(
        "ui",
        lambda port: [
            sys.executable,
            "-m",
            "streamlit",
            "run",
            str(REPO_ROOT / "streamlit_app" / "app.py"),
            "--server.address=127.0.0.1",
            f"--server.port={port}",
        ],
        port=None,
        log_path=tmp_path / "logs" / "ui.log",
        ready_path="/_stcore/health",
        env=env,
        cwd=tmp_path,  # the script-level .streamlit/config.toml must apply from anywhere
    )
    managed_processes.append(streamlit)
    return {
        "url": streamlit.url,
        "incident_id": incident_id,
        "rule_file": rule_file,
        "tracking_uri": tracking_uri,
    }


def _sign_in(driver: WebDriver, url: str) -> None:
    driver.get(url)
    wait_idle(driver)
    screenshot(driver, "01-sign-in")
    by_label(driver, "input", "User name").send_keys("alice")
    by_label(driver, "input", "Password").send_keys(PASSWORD)
    button(driver, "Sign in").click()
    wait_idle(driver)
    wait_for(
        driver,
        "the signed-in sidebar",
        lambda d: "Signed in as alice" in d.find_element(By.TAG_NAME, "body").text,
    )


def _charts_drawn(driver: WebDriver) -> int:
    """Vega-Lite charts that rendered something (a canvas or svg with a real size)."""
    return int(
        driver.execute_script(
            'return [...document.querySelectorAll(\'[data-testid="stVegaLiteChart"] canvas, '
            '[data-testid="stVegaLiteChart"] svg.marks\')].filter(e => e.getBoundingClientRect().width > 100 '
            "&& e.getBoundingClientRect().height > 50).length;"
        )
    )


def test_an_operator_walks_through_every_page(
    ui: dict[str, object], browser: WebDriver, database_url: str
) -> None:
    driver = browser
    _sign_in(driver, str(ui["url"]))
    body = driver.find_element(By.TAG_NAME, "body").text
    assert "AnomalyThreatensSLO" in body
    # The developer toolbar is hidden: no Deploy button and no rerun/clear-cache menu for operators.
    assert not driver.find_elements(By.CSS_SELECTOR, '[data-testid="stAppDeployButton"]')
    screenshot(driver, "02-incidents")

    # SLOs: the list with sparklines and the detail charts.
    choose_page(driver, "SLOs")
    drawn = wait_for(driver, "the SLO charts", lambda d: _charts_drawn(d) >= 3 and _charts_drawn(d))
    assert drawn >= 3
    body = driver.find_element(By.TAG_NAME, "body").text
    assert f"Compliance per month: {SLO}" in body and "This month and the five before" in body
    assert f"SLO {SLO}, period " in body  # the stored month's report, as `slo report` prints it
    screenshot(driver, "03-slos")

    # Tighten the objective with a reason; the rules sync renders the new rule file.
    objective = by_label(driver, "input", "Objective (%)")
    replace_text(objective, "99.6")
    by_label(driver, "textarea", "Why (change note)").send_keys("browser test: tighter objective")
    button(driver, "Save change").click()
    wait_idle(driver)
    wait_for(
        driver,
        "the saved message",
        lambda d: f"{SLO} saved: 99.6%" in d.find_element(By.TAG_NAME, "body").text,
    )
    assert fetch_all(
        database_url,
        "SELECT changed_by, change_note, new_spec->'slos'->0->>'objective' FROM slo_revisions "
        "WHERE slo_name = %s ORDER BY revision DESC LIMIT 1",
        (SLO,),
    ) == [("alice", "browser test: tighter objective", "99.6")]
    rule_file = Path(str(ui["rule_file"]))
    wait_for(
        driver, "the re-rendered rule file", lambda d: "sloth_objective: '99.6'" in rule_file.read_text()
    )
    screenshot(driver, "04-slo-edited")

    # Threshold: preview a budget for the detector with the incident, then apply it.
    choose_page(driver, "Threshold")
    select_option(driver, "Detector", DETECTOR)
    replace_text(by_label(driver, "input", "Proposed budget (false alarms per series per week)"), "2")
    button(driver, "Preview").click()
    wait_idle(driver)
    wait_for(driver, "the preview charts", lambda d: _charts_drawn(d) >= 2)
    by_label(driver, "textarea", "Why (stored with the change)").send_keys("browser test: fewer misses")
    button(driver, f"Apply 2 false alarms per week to {DETECTOR}").click()
    wait_idle(driver)
    assert fetch_all(
        database_url,
        "SELECT false_alarms_per_week, updated_by, reason FROM detector_budgets WHERE detector = %s",
        (DETECTOR,),
    ) == [(2.0, "alice", "browser test: fewer misses")]
    screenshot(driver, "05-threshold")

    # Incidents: mark the burst's incident false positive.
    choose_page(driver, "Incidents")
    button(driver, "Mark false positive").click()
    wait_idle(driver)
    incident_id = ui["incident_id"]
    assert fetch_all(
        database_url, "SELECT feedback, feedback_by FROM incidents WHERE id = %s", (incident_id,)
    ) == [("false_positive", "alice")]
    assert fetch_all(
        database_url,
        "SELECT changed_by, new_feedback FROM incident_feedback_events WHERE incident_id = %s",
        (incident_id,),
    ) == [("alice", "false_positive")]
    screenshot(driver, "06-incident-feedback")

    # Models: roll the detector back to its previous version (1).
    choose_page(driver, "Models")
    wait_for(driver, "the metrics chart", lambda d: _charts_drawn(d) >= 1)
    driver.find_element(By.XPATH, '//label[.//p[starts-with(normalize-space(.), "I understand")]]').click()
    wait_idle(driver)
    button(driver, f"Roll back {MODEL_DETECTOR} to version 1").click()
    wait_idle(driver)
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=str(ui["tracking_uri"]), registry_uri=str(ui["tracking_uri"]))
    aliases = {alias: str(v) for alias, v in client.get_registered_model(MODEL_DETECTOR).aliases.items()}
    assert aliases == {"champion": "1", "previous": "3"}
    assert client.get_model_version(MODEL_DETECTOR, "1").tags["slo_pipeline.rollback_by"] == "alice"
    screenshot(driver, "07-models")
