"""launch.recording_rule_stages: recording rules split by what they read, for promtool's rule backfill.

`promtool tsdb create-blocks-from rules` evaluates every rule against a Prometheus, so a rule that
reads another recording rule must be backfilled after that rule's blocks are loaded.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from slo_pipeline.devstack import launch

DEMO_SLO_RULES = launch.RULES_DIR / "slo" / "demo.rules.yml"


def records(path: Path) -> list[str]:
    groups = yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]
    return [rule["record"] for group in groups for rule in group["rules"] if "record" in rule]


def test_generated_slo_rules_are_staged_by_dependency_depth(tmp_path: Path) -> None:
    stages = launch.recording_rule_stages([DEMO_SLO_RULES], tmp_path)
    assert [path.name for path in stages] == [f"level-{n}.rules.yml" for n in (1, 2, 3, 4)]
    level = [set(records(path)) for path in stages]
    # Raw series only: the window ratios, the event helpers and the constants.
    assert {"slo:sli_error:ratio_rate5m", "slo:sli_error:ratio_rate3d", "slo:error_budget:ratio"} <= level[0]
    assert {"slo:sli_error_events:rate5m", "slo:time_period:days", "sloth_slo_info"} <= level[0]
    # Read level 1: the burn rate and the period ratios (from the 5m event helpers).
    periods = {f"slo:sli_error:ratio_rate{period}" for period in ("30d", "28d", "7d")}
    assert level[1] == {"slo:current_burn_rate:ratio", *periods}
    assert level[2] == {"slo:period_burn_rate:ratio"}
    assert level[3] == {"slo:period_error_budget_remaining:ratio"}
    # Every recording rule once (three SLOs record the same names), no alerting rule.
    staged = [record for path in stages for record in records(path)]
    assert sorted(staged) == sorted(records(DEMO_SLO_RULES))
    assert "alert:" not in "".join(path.read_text(encoding="utf-8") for path in stages)


def test_staged_files_are_valid_rule_files_and_keep_group_intervals(tmp_path: Path) -> None:
    source = tmp_path / "source.yml"
    source.write_text(
        yaml.safe_dump(
            {
                "groups": [
                    {"name": "g", "interval": "30s", "rules": [{"record": "a:x", "expr": "sum(up)"}]},
                    {
                        "name": "h",
                        "rules": [{"record": "b:x", "expr": "a:x * 2"}, {"alert": "A", "expr": "b:x > 1"}],
                    },
                ]
            }
        ),
        encoding="utf-8",
    )
    first, second = launch.recording_rule_stages([source], tmp_path / "stages")
    assert yaml.safe_load(first.read_text())["groups"] == [
        {"name": "source.yml:g", "interval": "30s", "rules": [{"record": "a:x", "expr": "sum(up)"}]}
    ]
    assert records(second) == ["b:x"]
    promtool = shutil.which("promtool")
    assert promtool is not None, "promtool is required (Debian package 'prometheus')"
    checked = subprocess.run(
        [promtool, "check", "rules", str(first), str(second)], capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_a_name_inside_a_longer_name_is_not_a_dependency(tmp_path: Path) -> None:
    source = tmp_path / "source.yml"
    rules = [{"record": "a:x", "expr": "sum(up)"}, {"record": "b", "expr": "sum(a:x_total) + sum(job:a:x)"}]
    source.write_text(yaml.safe_dump({"groups": [{"name": "g", "rules": rules}]}), encoding="utf-8")
    (only,) = launch.recording_rule_stages([source], tmp_path / "stages")
    assert records(only) == ["a:x", "b"]


def test_rules_reading_each_other_in_a_cycle_are_refused(tmp_path: Path) -> None:
    source = tmp_path / "source.yml"
    rules = [{"record": "a:x", "expr": "b:x + 1"}, {"record": "b:x", "expr": "a:x + 1"}]
    source.write_text(yaml.safe_dump({"groups": [{"name": "g", "rules": rules}]}), encoding="utf-8")
    with pytest.raises(launch.LaunchError, match="cycle: a:x -> b:x -> a:x"):
        launch.recording_rule_stages([source], tmp_path / "stages")
