"""amtool on alertmanager.yml and its derived copies; routing checked with `amtool config routes test`."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from slo_pipeline.devstack import launch
from tests.config.promtools import REPO_ROOT, assert_ok, routed_receiver, run_tool

REPO_CONFIG = REPO_ROOT / "alertmanager" / "alertmanager.yml"


def test_repo_config_passes_amtool() -> None:
    output = assert_ok(run_tool("amtool", "check-config", REPO_CONFIG), "amtool check-config")
    assert "4 receivers" in output


@pytest.mark.parametrize(
    ("labels", "receiver"),
    [
        (["alertname=AnomalyDetectorNeedsRetraining", "retrain=true"], "slo-pipeline-retrain"),
        # A retrain request wins even if someone gives it a paging severity.
        (["retrain=true", "severity=page"], "slo-pipeline-retrain"),
        (["alertname=AnomalyThreatensSLO", "severity=page", "slo=checkout"], "slo-pipeline-page"),
        (["alertname=SLOErrorBudgetBurn", "severity=page", "burn_tier=fast"], "slo-pipeline-page"),
        (["alertname=AnomalyDetected", "severity=ticket"], "slo-pipeline-ticket"),
        (["alertname=Whatever"], "slo-pipeline-incidents"),
        (["severity=info"], "slo-pipeline-incidents"),
    ],
)
def test_routes(labels: list[str], receiver: str) -> None:
    assert routed_receiver(REPO_CONFIG, labels) == receiver


def test_every_receiver_calls_the_webhook_with_a_bearer_token_file() -> None:
    document = yaml.safe_load(REPO_CONFIG.read_text())
    for receiver in document["receivers"]:
        (webhook,) = receiver["webhook_configs"]
        assert webhook["url"].endswith("/alerts"), receiver["name"]
        assert webhook["send_resolved"] is True, receiver["name"]
        assert webhook["http_config"]["authorization"]["type"] == "Bearer"
        assert webhook["http_config"]["authorization"]["credentials_file"]


def test_derived_config_uses_local_webhook_token_file_and_timings(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("s3cret")

    config = launch.write_alertmanager_config(
        tmp_path / "alertmanager.yml",
        webhook_base_url="http://127.0.0.1:18080",
        token_file=token_file,
        group_wait="1s",
        group_interval="2s",
        repeat_interval="1m",
    )

    assert_ok(run_tool("amtool", "check-config", config), "amtool check-config (derived)")
    document = yaml.safe_load(config.read_text())
    for receiver in document["receivers"]:
        webhook = receiver["webhook_configs"][0]
        assert webhook["url"] == "http://127.0.0.1:18080/alerts"
        assert webhook["http_config"]["authorization"]["credentials_file"] == str(token_file.resolve())
    route = document["route"]
    assert (route["group_wait"], route["group_interval"], route["repeat_interval"]) == ("1s", "2s", "1m")
    # Sub-routes that set their own timing get the override too, so no route stays slow in tests.
    for child in route["routes"]:
        for key, value in (("group_wait", "1s"), ("group_interval", "2s"), ("repeat_interval", "1m")):
            assert child.get(key, value) == value
    assert routed_receiver(config, ["severity=page"]) == "slo-pipeline-page"
