"""The simulator's history, backfilled with promtool, and its live service, scraped by a real
Prometheus, describe the same traffic: `rate()` over either matches the model."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import requests

from slo_pipeline.devstack import launch
from slo_pipeline.devstack.simulator.history import write_history
from slo_pipeline.devstack.simulator.model import DEFAULT_ROUTES, Incident, daily_cycle
from tests.fixtures.services import prometheus_query
from tests.fixtures.waiting import wait_until

pytestmark = pytest.mark.integration

TOTAL_RPS = sum(route.requests_per_second for route in DEFAULT_ROUTES)
STEP = 15.0


def _expected_rps(at: float) -> float:
    return TOTAL_RPS * float(daily_cycle(np.array([at]))[0])


def _scalar(prometheus: launch.ManagedProcess, promql: str, at: float | None = None) -> float | None:
    params = {} if at is None else {"time": at}
    result = prometheus_query(prometheus, promql, **params)
    return float(result[0]["value"][1]) if result else None


def _start_simulator(
    port: int, log_path: Path, processes: list[launch.ManagedProcess]
) -> launch.ManagedProcess:
    with log_path.open("wb") as log:
        popen = subprocess.Popen(
            [sys.executable, "-m", "slo_pipeline.cli", "simulator", "serve", "--listen", f"127.0.0.1:{port}"],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    simulator = launch.ManagedProcess("simulator", popen, port, log_path)
    processes.append(simulator)
    launch.wait_for_http(f"{simulator.url}/healthz", timeout=20)
    return simulator


def test_history_and_live_rates_match_the_model(
    tmp_path: Path,
    prometheus_factory: Callable[..., launch.ManagedProcess],
    managed_processes: list[launch.ManagedProcess],
) -> None:
    port = launch.free_port()
    instance = f"127.0.0.1:{port}"
    end = time.time() // STEP * STEP - 60
    start = end - 6 * 3600
    burst = Incident("error_burst", start=end - 2 * 3600, duration_seconds=1800, magnitude=0.3)
    history = tmp_path / "history.om"
    # Same job/instance labels Prometheus will give the live scrapes: one continuous series set.
    write_history(
        history, start=start, end=end, incidents=[burst], labels={"job": "demo-service", "instance": instance}
    )
    data_dir = tmp_path / "tsdb"
    launch.backfill_openmetrics(history, data_dir)

    simulator = _start_simulator(port, tmp_path / "simulator.log", managed_processes)
    prometheus = prometheus_factory(scrape_targets={"demo-service": [instance]}, data_dir=data_dir)

    # Backfilled traffic: the 5-minute rate three hours ago is what the model expects then.
    three_hours_ago = end - 3 * 3600
    history_rps = _scalar(
        prometheus, 'sum(rate(demo_http_requests_total{job="demo-service"}[5m]))', three_hours_ago
    )
    assert history_rps == pytest.approx(_expected_rps(three_hours_ago), rel=0.1)

    # The incident in the history is visible to PromQL, and only while it lasted.
    error_ratio = (
        'sum(rate(demo_http_requests_total{job="demo-service",code="500"}[10m]))'
        ' / sum(rate(demo_http_requests_total{job="demo-service"}[10m]))'
    )
    assert _scalar(prometheus, error_ratio, burst.start + 1200) == pytest.approx(0.3, abs=0.04)
    assert _scalar(prometheus, error_ratio, burst.start - 1200) < 0.02

    # Live traffic: once Prometheus holds ~12 s of scrapes, the live rate matches the model too.
    live = f'demo_http_requests_total{{instance="{instance}",route="/api/search",code="200"}}'
    wait_until(
        lambda: _scalar(prometheus, f"count_over_time({live}[15s])") or 0,
        timeout=60,
        interval=0.5,
        describe="Prometheus to hold 12 scrapes of the simulator",
        until=lambda scrapes: scrapes >= 12,
        still_alive=simulator.is_running,
        detail=lambda: f"simulator log:\n{simulator.log_tail()}\nprometheus log:\n{prometheus.log_tail()}",
    )
    live_rps = _scalar(prometheus, f'sum(rate(demo_http_requests_total{{instance="{instance}"}}[12s]))')
    assert live_rps == pytest.approx(_expected_rps(time.time()), rel=0.35)

    # The live exposition that Prometheus scraped is lint-clean.
    scraped = requests.get(f"{simulator.url}/metrics", timeout=5).text
    lint = subprocess.run(["promtool", "check", "metrics"], input=scraped, capture_output=True, text=True)
    assert lint.returncode == 0 and not (lint.stdout + lint.stderr), lint.stdout + lint.stderr
