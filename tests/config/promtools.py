"""Run promtool/amtool for the config tests; a missing binary fails the test (never a skip)."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from tests.fixtures.paths import REPO_ROOT

RULES_DIR = REPO_ROOT / "rules"
RULE_TEST_FILES = sorted((RULES_DIR / "tests").glob("*.yml"))
# Hand-written rules/*.yml and generated rules/slo/*.yml; rules/tests holds promtool test files.
RULE_FILES = sorted(p for p in RULES_DIR.rglob("*.yml") if "tests" not in p.relative_to(RULES_DIR).parts)


def run_tool(tool: str, *args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    binary = shutil.which(tool)
    assert binary is not None, f"{tool} is not on PATH (Debian: prometheus / prometheus-alertmanager)"
    # A hang guard, not a speed check: the longest rule unit test (slo-demo-guards, weeks of
    # simulated series) took over 120 s on this 2-core machine under load.
    return subprocess.run(
        [binary, *map(str, args)], capture_output=True, text=True, check=False, cwd=cwd, timeout=600
    )


def assert_ok(completed: subprocess.CompletedProcess[str], what: str) -> str:
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, f"{what} failed (exit {completed.returncode}):\n{output}"
    return output


def routed_receiver(config: Path, labels: Sequence[str]) -> str:
    output = assert_ok(
        run_tool("amtool", "config", "routes", "test", f"--config.file={config}", *labels),
        f"amtool routes test {labels}",
    )
    return output.strip().splitlines()[0]
