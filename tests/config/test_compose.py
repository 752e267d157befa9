"""docker-compose.yml cannot run here (no Docker engine); these check what reading can check."""

from __future__ import annotations

from itertools import takewhile
from pathlib import Path

import pytest
import yaml

from slo_pipeline.cli import main

COMPOSE = Path(__file__).resolve().parents[2] / "docker-compose.yml"


def _services() -> dict[str, dict]:
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))["services"]


def _dependencies(services: dict[str, dict], name: str) -> set[str]:
    direct = services[name].get("depends_on") or {}
    found = set(direct)
    for dependency in direct:
        found |= _dependencies(services, dependency)
    return found


def test_monitoring_does_not_wait_for_the_database() -> None:
    """Prometheus and Alertmanager must come up (and alert) when PostgreSQL is down."""
    services = _services()
    for name in ("prometheus", "alertmanager"):
        assert not {"postgres", "migrate"} & _dependencies(services, name), name


def test_the_sync_is_the_only_writer_of_the_generated_rules() -> None:
    services = _services()
    mounts = {
        name: [v for v in service.get("volumes", []) if str(v).startswith("slo-rules:")]
        for name, service in services.items()
    }
    assert mounts["slo-sync"] == ["slo-rules:/slo-rules"]
    assert mounts["prometheus"] == ["slo-rules:/etc/prometheus/rules/slo:ro"]
    assert all(not m for name, m in mounts.items() if name not in {"slo-sync", "prometheus"})


@pytest.mark.parametrize("name", ["exporter", "webhook", "worker", "slo-sync", "lake-sync", "migrate"])
def test_every_app_command_is_a_real_subcommand(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    command = _services()[name]["command"]
    with pytest.raises(SystemExit) as exit_info:
        main([*takewhile(lambda part: not part.startswith("-"), command), "--help"])
    assert exit_info.value.code == 0
    assert "usage:" in capsys.readouterr().out
