"""The `slo-pipeline` command as users run it (a subprocess): expected failures are one line and
exit 2, never a traceback; `--version`; `--log-format json`; examples in --help; progress bars on
a terminal (a pseudo-terminal here) and none in a pipe; `train --jobs` trains detectors in
parallel against a real Prometheus and MLflow."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import struct
import subprocess
import sys
import termios
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

import pytest
import yaml

from slo_pipeline.devstack import launch
from tests.fixtures.simulated import simulated_service

pytestmark = pytest.mark.integration

CLI = [sys.executable, "-m", "slo_pipeline.cli"]


def run(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        cwd=cwd,
        timeout=120,
        check=False,
    )


def run_on_terminal(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    """Run with stderr on a pseudo-terminal (what a user's shell gives it); stdout is a pipe."""
    leader, follower = pty.openpty()
    # A terminal 120 columns wide (a fresh pty has 0, where a bar has no room).
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    process = subprocess.Popen(
        [*CLI, *args], stdout=subprocess.PIPE, stderr=follower, env={**os.environ, **env}, text=True
    )
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the child closed the terminal (EIO)
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    stdout = process.stdout.read() if process.stdout else ""
    return process.wait(timeout=300), stdout, b"".join(chunks).decode(errors="replace")


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def dead_url() -> str:
    return f"http://127.0.0.1:{launch.free_port()}"


@pytest.mark.parametrize(
    ("case", "args", "env", "named"),
    [
        ("bad YAML", ["train"], {"SLO_PIPELINE_CONFIG": "{bad}"}, "is not valid YAML"),
        ("invalid field", ["train"], {"SLO_PIPELINE_CONFIG": "{invalid}"}, "step_seconds"),
        ("bad setting", ["db", "migrate"], {"SLO_PIPELINE_EXPORTER_INTERVAL": "soon"}, "EXPORTER_INTERVAL"),
        (
            "missing database",
            ["db", "migrate"],
            {"DATABASE_URL": "{dead_pg}"},
            "cannot connect to PostgreSQL",
        ),
        (
            "dead MLflow",
            ["model", "list", "demo_latency_p95"],
            {"MLFLOW_TRACKING_URI": "{dead}", "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"},
            "127.0.0.1",
        ),
        (
            "dead Prometheus",
            ["train"],
            {"PROMETHEUS_URL": "{dead}", "SLO_PIPELINE_CONFIG": "{good}"},
            "Prometheus",
        ),
        ("bad argument", ["train", "--jobs", "many"], {}, "invalid int value"),
        ("unknown command", ["trian"], {}, "invalid choice"),
    ],
)
def test_expected_failures_are_one_line_and_exit_2(
    tmp_path: Path, case: str, args: list[str], env: dict[str, str], named: str
) -> None:
    files = {
        "{bad}": write(tmp_path / "bad.yml", "detectors:\n  - name: x\n    query: [unclosed\n"),
        "{invalid}": write(
            tmp_path / "invalid.yml", "detectors:\n  - name: x\n    query: up\n    step_seconds: -5\n"
        ),
        "{good}": write(tmp_path / "good.yml", "detectors:\n  - name: x\n    query: up\n"),
    }
    placeholders = {
        **{key: str(path) for key, path in files.items()},
        "{dead}": dead_url(),
        "{dead_pg}": f"postgresql://postgres@127.0.0.1:{launch.free_port()}/nothing",
    }
    resolved = {name: placeholders.get(value, value) for name, value in env.items()}
    completed = run(*args, env=resolved, cwd=tmp_path)
    lines = completed.stderr.strip().splitlines()
    assert completed.returncode == 2, (case, completed.stderr)
    assert "Traceback" not in completed.stderr, (case, completed.stderr)
    problem = [line for line in lines if " WARNING " not in line and " INFO " not in line]
    assert len(problem) == 1, (case, completed.stderr)
    assert named in problem[0], (case, problem[0])


def test_version() -> None:
    completed = run("--version")
    assert completed.returncode == 0
    assert completed.stdout.strip() == f"slo-pipeline {metadata.version('slo-pipeline')}"


def test_log_format_json(tmp_path: Path) -> None:
    completed = run(
        "--log-format", "json", "simulator", "history", "--out", str(tmp_path / "h.om"), "--days", "0.01"
    )
    assert completed.returncode == 0, completed.stderr
    records = [json.loads(line) for line in completed.stderr.splitlines()]
    assert records and all({"time", "level", "logger", "message"} <= set(record) for record in records)
    assert any("wrote 0.0 days of history" in record["message"] for record in records)


@pytest.mark.parametrize("command", [[], ["demo"], ["train"], ["exporter"], ["worker"], ["backtest"]])
def test_main_commands_show_examples(command: list[str]) -> None:
    completed = run(*command, "--help")
    assert completed.returncode == 0
    assert "examples:\n  slo-pipeline " in completed.stdout


def test_history_progress_on_a_terminal_only(tmp_path: Path) -> None:
    args = ["simulator", "history", "--out", str(tmp_path / "h.om"), "--days", "0.01"]
    code, _, terminal = run_on_terminal(*args, env={})
    assert code == 0, terminal
    assert "history" in terminal and "3/3" in terminal and "written" in terminal
    piped = run(*args)
    assert piped.returncode == 0 and "3/3" not in piped.stderr


DETECTORS = ("cli_request_rate", "cli_error_ratio")
PIPELINE = {
    "detectors": [
        {
            "name": DETECTORS[0],
            "query": "sum by (route) (rate(demo_http_requests_total[5m]))",
            "step_seconds": 60,
            "training_window_seconds": 86400,
            "n_estimators": 50,
        },
        {
            "name": DETECTORS[1],
            "query": 'sum by (route) (rate(demo_http_requests_total{code=~"5.."}[5m])) '
            "/ sum by (route) (rate(demo_http_requests_total[5m]))",
            "step_seconds": 60,
            "training_window_seconds": 86400,
            "n_estimators": 50,
        },
    ]
}


def test_train_in_parallel_shows_progress_and_registers_every_detector(
    tmp_path: Path, database_url: str, prometheus_factory: Callable[..., launch.ManagedProcess]
) -> None:
    service = simulated_service(
        tmp_path,
        database_url=database_url,
        prometheus_factory=prometheus_factory,
        pipeline=PIPELINE,
        days=1.2,
    )
    settings = service.settings
    env = {
        "PROMETHEUS_URL": settings.prometheus_url,
        "DATABASE_URL": settings.database_url,
        "MLFLOW_TRACKING_URI": settings.mlflow_tracking_uri,
        "SLO_PIPELINE_MLFLOW_ARTIFACT_ROOT": settings.mlflow_artifact_root,
        "SLO_PIPELINE_DATA_LAKE": settings.data_lake,
        "SLO_PIPELINE_CONFIG": str(write(tmp_path / "pipeline.yml", yaml.safe_dump(PIPELINE))),
    }
    code, stdout, terminal = run_on_terminal("train", "--jobs", "2", env=env)
    assert code == 0, terminal
    results = {json.loads(line)["detector"]: json.loads(line) for line in stdout.splitlines() if line}
    assert set(results) == set(DETECTORS), stdout
    assert all(result["version"] == "1" and result["run_id"] for result in results.values())
    assert "training" in terminal and "2/2" in terminal, terminal

    from slo_pipeline.adapters.registry import list_versions

    for name in DETECTORS:
        assert [row["version"] for row in list_versions(settings, name)] == ["1"]
