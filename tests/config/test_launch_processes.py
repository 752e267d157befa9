"""launch.py's process handling: readiness, log tails on failure, and stopping whole process groups."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from slo_pipeline.devstack import launch
from tests.fixtures.waiting import wait_until


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
    child = int(
        wait_until(
            lambda: pid_file.exists() and pid_file.read_text().strip(),
            timeout=10,
            interval=0.05,
            describe="the child to start (its pid file)",
        )
    )
    assert process.url == "" and process.is_running() and _alive(child)

    process.stop(timeout=5)

    assert not process.is_running()
    wait_until(
        lambda: not _alive(child), timeout=5, interval=0.05, describe=f"child {child} to die after stop()"
    )


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
    # "exited before answering": the death was noticed, not the readiness timeout run out.
    with pytest.raises(launch.LaunchError, match=r"(?s)exited before answering.*boom: no config"):
        launch.start_service(
            "doomed",
            lambda _port: ["sh", "-c", "echo 'boom: no config' >&2; exit 3"],
            port=None,
            log_path=tmp_path / "doomed.log",
            ready_path="/healthz",
        )


def test_wait_for_http_times_out_with_the_reason() -> None:
    with pytest.raises(TimeoutError, match="did not answer HTTP 200"):
        launch.wait_for_http(f"http://127.0.0.1:{launch.free_port()}/", timeout=0.5)


def test_backfill_reports_promtool_errors(tmp_path: Path) -> None:
    broken = tmp_path / "broken.om"
    broken.write_text("this is not openmetrics\n")
    with pytest.raises(launch.LaunchError, match="promtool could not backfill"):
        launch.backfill_openmetrics(broken, tmp_path / "tsdb")
