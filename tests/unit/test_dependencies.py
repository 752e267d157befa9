"""The exporter, webhook, worker and CLI run without the `ui` extra (Streamlit), so their images
can leave it out; `make` installs it for the demo and the tests."""

from __future__ import annotations

import subprocess
import sys
import tomllib

from tests.fixtures.paths import REPO_ROOT

SERVICE_IMPORTS = """
import sys
from slo_pipeline.cli import build_parser
build_parser()  # registers every command, the UI's user management included
import exporter.service, webhook.app, worker.runner, slo_pipeline.orchestration.retrain
loaded = sorted(m for m in sys.modules if m.split(".")[0] in {"streamlit", "altair", "authlib"})
print(loaded)
raise SystemExit(1 if loaded else 0)
"""


def test_services_and_the_cli_do_not_import_the_ui_extra() -> None:
    completed = subprocess.run([sys.executable, "-c", SERVICE_IMPORTS], capture_output=True, text=True)
    assert completed.returncode == 0, completed.stdout + completed.stderr


def test_ui_packages_are_an_extra_that_make_installs() -> None:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    names = {requirement.split("==")[0] for requirement in project["dependencies"]}
    ui = {requirement.split("==")[0] for requirement in project["optional-dependencies"]["ui"]}
    assert {"streamlit", "altair", "authlib"} <= ui
    assert not ui & names
    assert all("==" in r for extra in project["optional-dependencies"].values() for r in extra)
    assert '-e ".[dev,ui]"' in (REPO_ROOT / "Makefile").read_text(encoding="utf-8")
