"""launch.py's process handling: readiness, log tails on failure, and stopping whole process groups."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from slo_pipeline.devstack import launch


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); only "not yet reaped by init" counts as gone here.
    status = Path(f"/proc/{pid}/stat")
    return status.exists() and status.read_text().split()[2] != "Z"


def test_stop_kills_the_children_too(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    process = launch.start_service(
        "parent",
        lambda _port: ["sh", "-c", f"sleep 300 & echo $! > {pid_file}; wait"],
        port=None,
        log_path=tmp_path / "parent.log",
        ready_path=None,
    )
    deadline = time.monotonic() + 10
    while not pid_file.exists() or not pid_file.read_text().strip():
        assert time.monotonic() < deadline, "the child never started"
        time.sleep(0.05)
    child = int(pid_file.read_text())
    assert process.url == "" and process.is_running() and _alive(child)

    process.stop(timeout=5)

    assert not process.is_running()
    deadline = time.monotonic() + 5
    while _alive(child):
        assert time.monotonic() < deadline, f"child {child} outlived stop()"
        time.sleep(0.05)


def test_http_service_is_ready_on_a_free_port_and_stops(tmp_path: Path) -> None:
    with launch.start_service(
        "http",
        lambda port: [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port)],
        port=None,
        log_path=tmp_path / "http.log",
        ready_path="/",
        cwd=tmp_path,
    ) as process:
        assert process.port > 0 and process.url == f"http://127.0.0.1:{process.port}"
        launch.wait_for_http(process.url + "/", timeout=5)
    assert not process.is_running()


def test_a_service_that_dies_fails_fast_with_its_log(tmp_path: Path) -> None:
    began = time.monotonic()
    with pytest.raises(launch.LaunchError, match="boom: no config"):
        launch.start_service(
            "doomed",
            lambda _port: ["sh", "-c", "echo 'boom: no config' >&2; exit 3"],
            port=None,
            log_path=tmp_path / "doomed.log",
            ready_path="/healthz",
        )
    assert time.monotonic() - began < 10  # did not wait for the full readiness timeout


def test_wait_for_http_times_out_with_the_reason() -> None:
    with pytest.raises(TimeoutError, match="did not answer HTTP 200"):
        launch.wait_for_http(f"http://127.0.0.1:{launch.free_port()}/", timeout=0.5)


def test_backfill_reports_promtool_errors(tmp_path: Path) -> None:
    broken = tmp_path / "broken.om"
    broken.write_text("this is not openmetrics\n")
    with pytest.raises(launch.LaunchError, match="promtool could not backfill"):
        launch.backfill_openmetrics(broken, tmp_path / "tsdb")
