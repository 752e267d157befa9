"""promtool check config on the repo's prometheus.yml and on the copies launch.py derives from it."""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

from slo_pipeline.devstack import launch
from tests.config.promtools import REPO_ROOT, RULE_FILES, assert_ok, run_tool

REPO_JOBS = {
    "slo-pipeline-exporter",
    "slo-pipeline-webhook",
    "slo-pipeline-worker",
    "slo-pipeline-slo-sync",
    "slo-pipeline-lake-sync",
    "demo-service",
}


def test_repo_config_in_compose_layout_passes_promtool(tmp_path: Path) -> None:
    # Compose mounts rules/ next to prometheus.yml; rule_files are relative to the config file.
    shutil.copy(REPO_ROOT / "prometheus" / "prometheus.yml", tmp_path / "prometheus.yml")
    shutil.copytree(REPO_ROOT / "rules", tmp_path / "rules", ignore=shutil.ignore_patterns("tests"))

    output = assert_ok(run_tool("promtool", "check", "config", tmp_path / "prometheus.yml"), "check config")

    assert RULE_FILES, "rules/*.yml is empty"
    assert f"SUCCESS: {len(RULE_FILES)} rule files found" in output


def test_repo_config_scrapes_our_services() -> None:
    document = yaml.safe_load((REPO_ROOT / "prometheus" / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in document["scrape_configs"]}

    assert set(jobs) == REPO_JOBS
    assert jobs["slo-pipeline-exporter"]["static_configs"][0]["targets"] == ["exporter:9110"]
    # The ports the worker and the rules sync serve /metrics on by default (settings.py).
    assert jobs["slo-pipeline-worker"]["static_configs"][0]["targets"] == ["worker:9111"]
    assert jobs["slo-pipeline-slo-sync"]["static_configs"][0]["targets"] == ["slo-sync:9112"]
    # The exporter re-publishes its inputs' job/instance labels; they must not become exported_*.
    assert jobs["slo-pipeline-exporter"]["honor_labels"] is True
    assert document["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == ["alertmanager:9093"]


def test_derived_config_points_at_local_processes_and_passes_promtool(tmp_path: Path) -> None:
    rules = launch.write_rules(tmp_path / "rules", time_scale=1 / 60)
    config = launch.write_prometheus_config(
        tmp_path / "prometheus.yml",
        scrape_targets={"slo-pipeline-exporter": ["127.0.0.1:19110"], "demo-service": ["127.0.0.1:18000"]},
        alertmanager_url="http://127.0.0.1:19093",
        rule_files=rules,
        scrape_interval="1s",
        evaluation_interval="1s",
    )

    output = assert_ok(run_tool("promtool", "check", "config", config), "check config")
    assert f"SUCCESS: {len(rules)} rule files found" in output

    document = yaml.safe_load(config.read_text())
    jobs = {job["job_name"]: job for job in document["scrape_configs"]}
    assert set(jobs) == {"slo-pipeline-exporter", "demo-service"}  # webhook job not asked for: dropped
    assert jobs["demo-service"]["static_configs"] == [{"targets": ["127.0.0.1:18000"]}]
    assert jobs["slo-pipeline-exporter"]["honor_labels"] is True  # template settings survive
    assert document["global"]["scrape_interval"] == "1s"
    assert document["alerting"]["alertmanagers"][0]["static_configs"] == [{"targets": ["127.0.0.1:19093"]}]
    assert document["rule_files"] == [str(path.resolve()) for path in rules]


def test_derived_config_without_alertmanager_has_no_alerting_section(tmp_path: Path) -> None:
    config = launch.write_prometheus_config(
        tmp_path / "prometheus.yml",
        scrape_targets={"helper": ["127.0.0.1:1"]},
        alertmanager_url=None,
        rule_files=[],
    )

    document = yaml.safe_load(config.read_text())
    assert "alerting" not in document
    expected_job = {"job_name": "helper", "static_configs": [{"targets": ["127.0.0.1:1"]}]}
    assert document["scrape_configs"] == [expected_job]
    assert_ok(run_tool("promtool", "check", "config", config), "check config")
