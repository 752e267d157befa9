"""The shipped rules also load in vmalert (VictoriaMetrics' ruler, Debian's `victoria-metrics`).

Debian's vmalert (1.79) predates `keep_firing_for` and refuses a rule that has it, so the check
drops that one field first: on vmalert an alert stops firing as soon as its expression does
(docs/scaling.md says so). Everything else (expressions through the MetricsQL parser, templates,
labels) is checked as written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.config.promtools import RULE_FILES, run_tool

UNSUPPORTED_BY_DEBIAN_VMALERT = ("keep_firing_for",)


def without_unsupported_fields(document: dict[str, Any]) -> dict[str, Any]:
    for group in document.get("groups") or []:
        for rule in group.get("rules") or []:
            for field in UNSUPPORTED_BY_DEBIAN_VMALERT:
                rule.pop(field, None)
    return document


def vmalert_dry_run(rule_file: Path) -> tuple[int, str]:
    completed = run_tool("vmalert", f"-rule={rule_file}", "-dryRun", "-loggerLevel=ERROR")
    return completed.returncode, completed.stdout + completed.stderr


@pytest.mark.parametrize("rule_file", RULE_FILES, ids=lambda path: path.name)
def test_every_rule_file_passes_vmalert_dry_run(rule_file: Path, tmp_path: Path) -> None:
    document = without_unsupported_fields(yaml.safe_load(rule_file.read_text(encoding="utf-8")))
    checked = tmp_path / rule_file.name
    checked.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    code, output = vmalert_dry_run(checked)
    assert code == 0, f"vmalert -dryRun rejected {rule_file.name}:\n{output}"


def test_vmalert_dry_run_rejects_a_broken_expression(tmp_path: Path) -> None:
    broken = tmp_path / "broken.rules.yml"
    broken.write_text(
        "groups:\n  - name: broken\n    rules:\n      - alert: Broken\n        expr: sum(rate(x[5m])\n",
        encoding="utf-8",
    )
    code, output = vmalert_dry_run(broken)
    assert code != 0 and "Broken" in output


def test_debian_vmalert_still_lacks_keep_firing_for(tmp_path: Path) -> None:
    """When this fails, Debian's vmalert learnt keep_firing_for: stop dropping it above."""
    rule = tmp_path / "keep.rules.yml"
    rule.write_text(
        "groups:\n  - name: keep\n    rules:\n      - alert: Keep\n        expr: up == 0\n"
        "        keep_firing_for: 5m\n",
        encoding="utf-8",
    )
    code, output = vmalert_dry_run(rule)
    assert code != 0 and "keep_firing_for" in output
