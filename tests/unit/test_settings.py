"""The settings object: environment + pipeline YAML, validated once, errors naming the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from slo_pipeline.config_docs import render
from slo_pipeline.settings import ConfigError, load_pipeline_config, load_settings
from tests.fixtures.paths import REPO_ROOT


def test_environment_variables_reach_the_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = tmp_path / "pipeline.yml"
    config.write_text("detectors:\n  - name: api_latency\n    query: up\n    step_seconds: 30\n")
    monkeypatch.setenv("PROMETHEUS_URL", "http://prom.example:9090")
    monkeypatch.setenv("DATABASE_URL", "postgresql://db.example/x")
    monkeypatch.setenv("WEBHOOK_TOKEN", "s3cret")
    monkeypatch.setenv("SLO_PIPELINE_CONFIG", str(config))
    monkeypatch.setenv("SLO_PIPELINE_EXPORTER_INTERVAL", "7.5")

    settings = load_settings()

    assert settings.prometheus_url == "http://prom.example:9090"
    assert settings.database_url == "postgresql://db.example/x"
    assert settings.webhook_token == "s3cret"
    assert settings.exporter_interval_seconds == 7.5
    detector = settings.pipeline.detector("api_latency")
    assert detector.step_seconds == 30
    # one false alarm per week at a 30 s step: 1 / 20160 samples
    assert detector.tail_probability_threshold == pytest.approx(1 / 20160)


def test_missing_pipeline_file_means_no_detectors(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SLO_PIPELINE_CONFIG", str(tmp_path / "absent.yml"))
    assert load_settings().pipeline.detectors == []


@pytest.mark.parametrize(
    ("yaml_text", "expected"),
    [
        ("detectors:\n  - name: Bad-Name\n    query: up\n", "snake_case"),
        ("detectors:\n  - name: a\n    query: up\n  - name: a\n    query: up\n", "unique"),
        (
            "detectors:\n  - name: a\n    query: up\n    windows: {short: 9, medium: 5, long: 20}\n",
            "short < medium < long",
        ),
        ("detectors:\n  - name: a\n    query: up\n    false_alarms_per_week: 0\n", "false_alarms_per_week"),
        ("detectors:\n  - name: a\n", "query"),
        ("detectors: [unclosed\n", "not valid YAML"),
        ("detectors:\n  - name: a\n    query: up\n    stepp_seconds: 5\n", "stepp_seconds"),
        ("detectors:\n  - name: a\n    query: up\n    slo: 'x\"} or vector(1) #'\n", "not an SLO name"),
    ],
)
def test_invalid_pipeline_config_names_the_problem(tmp_path: Path, yaml_text: str, expected: str) -> None:
    path = tmp_path / "pipeline.yml"
    path.write_text(yaml_text)
    with pytest.raises(ConfigError, match=expected) as raised:
        load_pipeline_config(path)
    assert str(path) in str(raised.value)


def test_unknown_detector_lists_the_configured_ones(tmp_path: Path) -> None:
    path = tmp_path / "pipeline.yml"
    path.write_text("detectors:\n  - name: alpha\n    query: up\n")
    with pytest.raises(ConfigError, match="alpha"):
        load_pipeline_config(path).detector("beta")


def test_shipped_demo_config_is_valid() -> None:
    config = load_pipeline_config(REPO_ROOT / "slo-pipeline.yml")
    assert len(config.detectors) >= 3


def test_configuration_reference_matches_the_code() -> None:
    committed = (REPO_ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert committed == render(), "regenerate: python -m slo_pipeline.config_docs > docs/configuration.md"
