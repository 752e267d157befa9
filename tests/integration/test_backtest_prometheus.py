"""`slo-pipeline backtest` mode (b): a configured detector over a time range of a real Prometheus.

Prometheus 2.42 runs on a free loopback port with a temporary TSDB holding three days of a
synthetic latency gauge (four routes, one-minute samples, backfilled with promtool) and a
one-hour latency spike on one route. The same history, written straight from the generator to a
CSV file, goes through mode (a); both must reach the same replay with the same inputs.
"""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from slo_pipeline.cli import main
from slo_pipeline.devstack import launch
from slo_pipeline.offline.backtest import cli_run
from slo_pipeline.offline.backtest.prometheus_range import format_time

pytestmark = pytest.mark.integration

METRIC = "backtest_it_latency_seconds"
DETECTOR = "checkout_latency"
MULTIVARIATE = "latency_vs_yesterday"  # two signals: the latency and itself one day earlier
STEP = 60
N_STEPS = 3 * 1440
END = 1_700_006_400  # 2023-11-15T00:00:00Z, a multiple of the step: samples sit on the query grid
ROUTES = ("cart", "checkout", "login", "search")  # Prometheus returns series sorted by labels
ANOMALY_ROUTE = 1
ANOMALY = range(3300, 3360)  # one hour of day three
CALM_ALARMS_MAX = 2  # budget 1/week over ~2.5 scored days, with room for forest randomness


def sample_times() -> np.ndarray:
    return END - STEP * np.arange(N_STEPS - 1, -1, -1, dtype=np.int64)


def history() -> np.ndarray:
    """[N_STEPS, routes] latencies in seconds: a daily cycle, noise, and the spike on checkout."""
    rng = np.random.default_rng(7)
    t = np.arange(N_STEPS)
    base = np.array([0.12, 0.25, 0.08, 0.18])
    cycle = 1 + 0.2 * np.sin(2 * np.pi * t / 1440)[:, None]
    values = base * cycle + rng.normal(0, 0.004, size=(N_STEPS, len(ROUTES)))
    values[ANOMALY, ANOMALY_ROUTE] += 0.3
    return np.round(values, 6)


def write_openmetrics(path: Path, values: np.ndarray) -> None:
    lines = [f"# HELP {METRIC} Synthetic p95 latency per route.", f"# TYPE {METRIC} gauge"]
    for column, route in enumerate(ROUTES):
        for at, value in zip(sample_times().tolist(), values[:, column].tolist(), strict=True):
            lines.append(f'{METRIC}{{job="shop",route="{route}"}} {value!r} {at}')
    lines.append("# EOF")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("backtest-prometheus")


@pytest.fixture(scope="module")
def prometheus(folder: Path) -> Iterator[launch.ManagedProcess]:
    openmetrics = folder / "history.om"
    write_openmetrics(openmetrics, history())
    launch.backfill_openmetrics(openmetrics, folder / "tsdb")
    config = launch.write_prometheus_config(
        folder / "prometheus.yml", scrape_targets={}, alertmanager_url=None, rule_files=[]
    )
    process = launch.start_prometheus(config_file=config, data_dir=folder / "tsdb")
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def pipeline_config(folder: Path) -> Path:
    path = folder / "slo-pipeline.yml"
    path.write_text(
        f"""detectors:
  - name: {DETECTOR}
    query: {METRIC}{{job="shop"}}
    step_seconds: {STEP}
    false_alarms_per_week: 1
    n_estimators: 50
  - name: {MULTIVARIATE}
    signals:
      - name: latency
        query: {METRIC}{{job="shop"}}
      - name: yesterday
        query: {METRIC}{{job="shop"}} offset 1d
    step_seconds: {STEP}
    false_alarms_per_week: 1
    n_estimators: 50
""",
        encoding="utf-8",
    )
    return path


def _detector_args(config: Path) -> list[str]:
    return ["--config", str(config), "--detector", DETECTOR]


@dataclass
class Run:
    """One command run: exit code, stdout, and what reached `run_backtest` and came back."""

    code: int
    stdout: str
    replay_inputs: list[dict[str, Any]]


def run_backtest_command(args: list[str], config: Path) -> Run:
    """`main(["backtest", ...])` in-process, recording every call of the shared replay entry point."""
    calls: list[dict[str, Any]] = []
    original = cli_run.run_backtest

    def spy(values: np.ndarray, detector: Any, plan: Any, rule: Any, **kwargs: Any) -> Any:
        outcome = original(values, detector, plan, rule, **kwargs)
        inputs = {"values": values.copy(), "detector": detector, "plan": plan, "rule": rule}
        calls.append({**inputs, "seed": kwargs.get("seed"), "outcome": outcome})
        return outcome

    argv = ["backtest", *args, *_detector_args(config), "--seed", "0", "--quiet"]
    stdout = io.StringIO()
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(stdout):
        patch.setattr(cli_run, "run_backtest", spy)
        code = main(argv)
    return Run(code=code, stdout=stdout.getvalue(), replay_inputs=calls)


def anomaly_window() -> tuple[str, str]:
    """The labelled window: from 20 minutes before the spike to an hour after it."""
    times = sample_times()
    return format_time(times[ANOMALY.start - 20]), format_time(times[ANOMALY.stop + 60])


@pytest.fixture(scope="module")
def mode_b(
    prometheus: launch.ManagedProcess, pipeline_config: Path, folder: Path
) -> tuple[Run, pd.DataFrame]:
    labels = folder / "windows.json"
    labels.write_text(json.dumps({f'{DETECTOR}{{route="checkout"}}': [list(anomaly_window())]}))
    output = folder / "scored-b.csv"
    args = ["--prometheus-url", prometheus.url, "--start", format_time(sample_times()[0])]
    args += ["--end", format_time(END), "--output", str(output), "--labels", str(labels)]
    run = run_backtest_command(args, pipeline_config)
    assert run.code == 0
    # round_trip: the values column must compare exactly with what was backfilled.
    return run, pd.read_csv(output, float_precision="round_trip", keep_default_na=False, na_values=[""])


def test_every_step_of_every_series_is_scored_with_its_labels(mode_b: tuple[Run, pd.DataFrame]) -> None:
    _, scored = mode_b
    assert list(scored.columns) == [
        "timestamp",
        "series",
        "__name__",
        "job",
        "route",
        "value",
        "anomaly_score",
        "anomaly_tail_probability",
        "alarm",
        "firing",
        "scored",
        "driver",
    ]
    assert len(scored) == N_STEPS * len(ROUTES)
    expected_times = [format_time(t) for t in sample_times()]
    values = history()
    for k, route in enumerate(ROUTES):
        rows = scored[scored["route"] == route]
        assert rows["series"].unique().tolist() == [f'{METRIC}{{job="shop",route="{route}"}}']
        assert rows["timestamp"].tolist() == expected_times
        np.testing.assert_array_equal(rows["value"].to_numpy(), values[:, k])
        # The first model sees the first 15 % (at most 750 rows); from a day on, all is scored.
        assert (rows["scored"].to_numpy()[:648] == 0).all()
        assert (rows["scored"].to_numpy()[1440:] == 1).all()
    assert scored["anomaly_tail_probability"].between(0, 1).all()
    assert (scored["anomaly_score"] >= 0).all()


def test_the_spike_raises_an_alarm_inside_it_and_calm_series_stay_quiet(
    mode_b: tuple[Run, pd.DataFrame],
) -> None:
    run, scored = mode_b
    for k, route in enumerate(ROUTES):
        alarms = np.flatnonzero(scored.loc[scored["route"] == route, "alarm"].to_numpy())
        if k == ANOMALY_ROUTE:
            inside = [a for a in alarms if a in ANOMALY]
            assert len(inside) == 1, f"alarms of {route}: {alarms.tolist()}"
            assert inside[0] < ANOMALY.start + 10  # within minutes, as the alert rule allows
            assert sum(a not in ANOMALY for a in alarms) <= CALM_ALARMS_MAX
        else:
            assert len(alarms) <= CALM_ALARMS_MAX, f"alarms of {route}: {alarms.tolist()}"
    # The labelled window is matched to the checkout series only; others have none.
    table = {line.split()[0]: line.split() for line in run.stdout.splitlines() if line.strip()}
    checkout = table[f'{METRIC}{{job="shop",route="checkout"}}']
    assert checkout[1:3] == ["1", "1"]  # one window, hit
    for route in ("cart", "login", "search"):
        assert table[f'{METRIC}{{job="shop",route="{route}"}}'][1:3] == ["0", "0"]
    assert table["TOTAL"][1:3] == ["1", "1"]
    assert "series" in run.stdout.splitlines()[0]


def test_mode_b_equals_mode_a_on_the_same_history_exported_to_csv(
    mode_b: tuple[Run, pd.DataFrame], pipeline_config: Path, folder: Path
) -> None:
    run_b, scored_b = mode_b
    selectors = scored_b["series"].unique().tolist()
    # Written from the generator, not from Prometheus: the fetch itself is under test too.
    csv_path = folder / "exported.csv"
    frame = pd.DataFrame(history(), columns=selectors)
    frame.insert(0, "timestamp", [format_time(t) for t in sample_times()])
    frame.to_csv(csv_path, index=False)
    output_a = folder / "scored-a.csv"
    run_a = run_backtest_command(["--input", str(csv_path), "--output", str(output_a)], pipeline_config)
    assert run_a.code == 0

    # The same replay entry point, called once per mode with identical inputs and settings ...
    (call_a,), (call_b,) = run_a.replay_inputs, run_b.replay_inputs
    np.testing.assert_array_equal(call_a["values"], call_b["values"])
    for key in ("detector", "plan", "rule", "seed"):
        assert call_a[key] == call_b[key], key
    assert call_b["detector"].step_seconds == STEP and call_b["detector"].n_estimators == 50
    # ... gives identical results, and both writers report them.
    outcome_a, outcome_b = call_a["outcome"], call_b["outcome"]
    for field in ("tail_probability", "anomaly_score", "firing", "alarm"):
        np.testing.assert_array_equal(getattr(outcome_a, field), getattr(outcome_b, field), err_msg=field)
    scored_a = pd.read_csv(output_a)
    for selector in selectors:
        rows_b = scored_b[scored_b["series"] == selector]
        for column in ("anomaly_score", "anomaly_tail_probability"):
            # Mode (a) writes 6 significant digits, mode (b) full precision.
            np.testing.assert_allclose(
                scored_a[f"{column}_{selector}"], rows_b[column], rtol=1e-5, atol=1e-12
            )
        for column in ("alarm", "firing", "scored"):
            assert scored_a[f"{column}_{selector}"].tolist() == rows_b[column].tolist()


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "slo_pipeline.cli", "backtest", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_unreachable_prometheus_is_exit_2_with_one_line_naming_url_and_query(pipeline_config: Path) -> None:
    url = f"http://127.0.0.1:{launch.free_port()}"  # nobody listens there
    # A relative start on the command line: the fetch of the first chunk fails.
    result = _cli("--prometheus-url", url, *_detector_args(pipeline_config), "--start", "now-1h", "--quiet")
    assert result.returncode == 2, result.stderr
    query = f'{METRIC}{{job="shop"}}'
    assert result.stderr.strip().splitlines() == [
        f"backtest: cannot reach Prometheus at '{url}' to run query '{query}': Connection refused"
    ]


def test_rejected_query_is_exit_2_with_one_line_naming_url_and_query(
    prometheus: launch.ManagedProcess, pipeline_config: Path
) -> None:
    query = f"rate({METRIC}[5m]"
    args = ["--query", query, "--start", "2023-11-14T00:00:00Z", "--end", "2023-11-14T06:00:00Z", "--quiet"]
    result = _cli("--prometheus-url", prometheus.url, *_detector_args(pipeline_config), *args)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert lines[0].startswith(f"backtest: Prometheus at '{prometheus.url}' rejected query '{query}'")
    assert "parse error" in lines[0]


def test_a_query_without_series_is_exit_2_naming_the_range(
    prometheus: launch.ManagedProcess, pipeline_config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["--prometheus-url", prometheus.url, "--query", 'up{job="nothing"}']
    args += ["--start", "2023-11-14T00:00:00Z", "--end", "2023-11-14T06:00:00Z"]
    assert run_backtest_command(args, pipeline_config).code == 2
    assert (
        "returned no series between 2023-11-14T00:00:00Z and 2023-11-14T06:00:00Z" in capsys.readouterr().err
    )


def test_a_multivariate_detector_is_fetched_joined_and_blamed_on_the_signal_that_moved(
    prometheus: launch.ManagedProcess, pipeline_config: Path, folder: Path
) -> None:
    output = folder / "scored-multivariate.csv"
    args = ["backtest", "--prometheus-url", prometheus.url, "--start", format_time(sample_times()[0])]
    args += ["--end", format_time(END), "--output", str(output), "--config", str(pipeline_config)]
    assert main([*args, "--detector", MULTIVARIATE, "--seed", "0", "--quiet"]) == 0
    scored = pd.read_csv(output, float_precision="round_trip", keep_default_na=False, na_values=[""])
    # One row per step per route, labelled by the joined label set (no __name__), both signals.
    assert "__name__" not in scored.columns
    assert {"value_latency", "value_yesterday", "driver"} <= set(scored.columns)
    assert len(scored) == N_STEPS * len(ROUTES)
    values = history()
    checkout = scored[scored["route"] == ROUTES[ANOMALY_ROUTE]]
    np.testing.assert_array_equal(checkout["value_latency"].to_numpy(), values[:, ANOMALY_ROUTE])
    np.testing.assert_array_equal(
        checkout["value_yesterday"].to_numpy()[1440:], values[:-1440, ANOMALY_ROUTE]
    )
    alarms = np.flatnonzero(checkout["alarm"].to_numpy())
    assert any(a in ANOMALY for a in alarms), alarms.tolist()
    # Today's latency moved, yesterday's did not: the first half hour of the spike blames it. (Later
    # the long window has absorbed part of the shift, the evidence is weaker, and with only two
    # signals the blame for their disagreement may go either way; docs/detection.md.)
    spike = checkout.iloc[ANOMALY.start : ANOMALY.start + 30]
    drivers = set(spike.loc[spike["anomaly_score"] >= 1, "driver"])
    assert drivers and all(name.startswith("latency:") for name in drivers), drivers
