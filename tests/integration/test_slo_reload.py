"""Generated SLO rules reach a real Prometheus through an atomic install and a (debounced) reload."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import requests

from slo_pipeline.devstack import launch
from slo_pipeline.slo.render import DebouncedReloader, ReloadError, install_rule_files, post_reload
from slo_pipeline.slo.rulegen import render_rule_files
from slo_pipeline.slo.spec import parse_specs
from tests.fixtures.paths import REPO_ROOT
from tests.fixtures.services import prometheus_query
from tests.fixtures.waiting import wait_until

pytestmark = pytest.mark.integration

EXAMPLE = REPO_ROOT / "examples" / "slos.yml"


def loaded_groups(prometheus: launch.ManagedProcess) -> set[str]:
    body = requests.get(f"{prometheus.url}/api/v1/rules", timeout=10).json()
    return {group["name"] for group in body["data"]["groups"]}


def test_rules_are_installed_and_reloaded(
    tmp_path: Path, prometheus_factory: Callable[..., launch.ManagedProcess]
) -> None:
    rules_dir = tmp_path / "rules" / "slo"
    rules_dir.mkdir(parents=True)
    prometheus = prometheus_factory(rule_files=[rules_dir / "*.yml"])
    assert loaded_groups(prometheus) == set()

    slos = parse_specs(EXAMPLE.read_text(encoding="utf-8"))
    result = install_rule_files(render_rule_files(slos), rules_dir)
    assert result.changed
    reloader = DebouncedReloader(prometheus.url, min_interval_seconds=3.0)
    assert reloader.request() is True
    groups = loaded_groups(prometheus)
    assert "sloth-slo-sli-recordings-demo-demo-availability" in groups
    assert "sloth-slo-alerts-demo-demo-latency" in groups
    assert "sloth-slo-alerts-demo-demo-checkout-availability" in groups

    # A second change within the interval is reloaded once the interval is over, not before.
    install_rule_files(render_rule_files([s for s in slos if s.name != "demo-latency"]), rules_dir)
    assert reloader.request() is False
    assert "sloth-slo-alerts-demo-demo-latency" in loaded_groups(prometheus)
    reloader.flush()
    assert reloader.reload_count == 2
    assert "sloth-slo-alerts-demo-demo-latency" not in loaded_groups(prometheus)

    # The metadata rules need no input: Prometheus evaluates them right away (1s interval).
    def objective_recorded() -> bool:
        result = prometheus_query(prometheus, 'slo:objective:ratio{slo="demo-availability"}')
        return bool(result) and result[0]["value"][1] == "0.995"

    wait_until(objective_recorded, timeout=30, describe="slo:objective:ratio to be recorded")


def test_reload_errors_name_the_prometheus(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{launch.free_port()}"  # nothing listens there
    with pytest.raises(ReloadError, match=f"could not reach Prometheus at {url}/-/reload"):
        post_reload(url, timeout_seconds=2)
