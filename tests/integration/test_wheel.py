"""The package as users install it: a wheel in a fresh virtualenv, used outside any checkout.

Migrations, the shipped rules and default configs are package data; a command that still read
the repository at run time would fail here, because the venv and its working folder hold no
checkout and nothing of the developer's editable install.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.fixtures.database import fetch_all
from tests.fixtures.paths import REPO_ROOT

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """`bin/` of a new venv with the freshly built wheel (and its pinned dependencies) installed."""
    root = tmp_path_factory.mktemp("wheel")
    wheels = root / "wheels"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--wheel-dir",
            str(wheels),
            str(REPO_ROOT),
        ],
        check=True,
        cwd=root,
    )
    (wheel,) = wheels.glob("slo_pipeline-*.whl")
    env_dir = root / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    pip = [str(env_dir / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, str(wheel)], check=True, cwd=root)
    yield env_dir / "bin"
    shutil.rmtree(root, ignore_errors=True)


def run(
    bin_dir: Path, cwd: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    clean["PATH"] = f"{bin_dir}{os.pathsep}{clean.get('PATH', '')}"
    return subprocess.run(
        [str(bin_dir / "slo-pipeline"), *args],
        cwd=cwd,
        env={**clean, **(env or {})},
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_the_wheel_is_what_runs(installed: Path, tmp_path: Path) -> None:
    where = subprocess.run(
        [
            str(installed / "python"),
            "-c",
            "import slo_pipeline, slo_pipeline.resources as r; "
            "print(slo_pipeline.__file__); print(r.shipped_folder('sql'))",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    site_packages = str(installed.parent / "lib")
    assert all(path.startswith(site_packages) for path in where), where
    assert not any(path.startswith(str(REPO_ROOT)) for path in where), where


def test_db_migrate_applies_the_packaged_migrations(
    installed: Path, tmp_path: Path, empty_database_url: str
) -> None:
    result = run(installed, tmp_path, "db", "migrate", env={"DATABASE_URL": empty_database_url})
    assert result.returncode == 0, result.stderr
    applied = {row[0] for row in fetch_all(empty_database_url, "SELECT version FROM schema_migrations")}
    shipped = {path.stem for path in (REPO_ROOT / "sql").glob("*.sql")}
    assert applied == shipped
    tables = {row[0] for row in fetch_all(empty_database_url, "SELECT tablename FROM pg_tables")}
    assert {"incidents", "retrain_jobs", "slos"} <= tables


def test_rules_render_writes_checked_rule_files(installed: Path, tmp_path: Path) -> None:
    spec = tmp_path / "slos.yml"
    shutil.copy(REPO_ROOT / "examples" / "slos.yml", spec)
    out = tmp_path / "rendered"
    result = run(installed, tmp_path, "rules", "render", "-f", str(spec), "--out", str(out))
    assert result.returncode == 0, result.stderr
    rendered = sorted(p.name for p in out.glob("*.yml"))
    assert rendered, result.stdout
    # The same bytes the checkout's generator commits for the example.
    for name in rendered:
        assert (out / name).read_text() == (REPO_ROOT / "rules" / "slo" / name).read_text(), name


def test_backtest_runs_from_another_directory(installed: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    steps = 900
    values = 50 + 5 * np.sin(np.arange(steps) / 40) + rng.normal(0, 1, steps)
    values[700:710] += 60  # a spike the detector must flag
    timestamps = pd.date_range("2024-05-01", periods=steps, freq="5min").strftime("%Y-%m-%d %H:%M:%S")
    pd.DataFrame({"timestamp": timestamps, "value": values}).to_csv(tmp_path / "series.csv", index=False)

    result = run(
        installed, tmp_path, "backtest", "--input", "series.csv", "--output", "scored.csv", "--quiet"
    )

    assert result.returncode == 0, result.stderr
    scored = pd.read_csv(tmp_path / "scored.csv")
    assert len(scored) == steps
    assert scored["anomaly_score"].iloc[700:712].max() > 1.0
