"""The live text exposition and the OpenMetrics history: valid, cumulative, and the same series."""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families as parse_text

from slo_pipeline.devstack.simulator.exposition import Totals, render_text
from slo_pipeline.devstack.simulator.history import write_history
from slo_pipeline.devstack.simulator.model import Incident, sample_intervals


def _totals(seconds: float = 600.0) -> Totals:
    starts = np.arange(0.0, seconds, 15.0)
    totals = Totals.zero()
    totals.add(sample_intervals(starts, starts + 15.0, rng=np.random.default_rng(0)))
    return totals


def _samples_by_name(text: str) -> dict[str, list]:
    by_name: dict[str, list] = {}
    for family in parse_text(text):
        for sample in family.samples:
            by_name.setdefault(sample.name, []).append(sample)
    return by_name


@dataclass(frozen=True)
class HistoryPoint:
    name: str
    labels: dict[str, str]
    value: float
    timestamp: float


HISTORY_LINE = re.compile(r"^([a-z_]+)\{(.*)\} (\S+) (\S+)$")
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def _history_points(text: str) -> dict[str, list[HistoryPoint]]:
    """A deliberately small reader: prometheus_client's OpenMetrics parser only takes one point
    per series, and promtool (the real consumer) is exercised by the integration test."""
    by_name: dict[str, list[HistoryPoint]] = {}
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        match = HISTORY_LINE.match(line)
        assert match, f"unexpected line {line!r}"
        name, labels, value, timestamp = match.groups()
        point = HistoryPoint(name, dict(LABEL.findall(labels)), float(value), float(timestamp))
        by_name.setdefault(name, []).append(point)
    return by_name


def _backfill(path: Path, tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    assert promtool is not None, "promtool is not on PATH"
    completed = subprocess.run(
        [promtool, "tsdb", "create-blocks-from", "openmetrics", str(path), str(tmp_path / "tsdb")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr


def test_live_exposition_passes_promtool_check_metrics() -> None:
    promtool = shutil.which("promtool")
    assert promtool is not None, "promtool is not on PATH"
    completed = subprocess.run(
        [promtool, "check", "metrics"],
        input=render_text(_totals()),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert completed.stdout + completed.stderr == ""  # not even a lint warning


def test_live_exposition_histogram_is_cumulative_and_matches_request_counts() -> None:
    totals = _totals()
    samples = _samples_by_name(render_text(totals))

    for r, route in enumerate(["/api/checkout", "/api/search", "/api/login"]):
        buckets = [
            s for s in samples["demo_http_request_duration_seconds_bucket"] if s.labels["route"] == route
        ]
        values = [s.value for s in buckets]
        assert values == sorted(values) and buckets[-1].labels["le"] == "+Inf"
        (count,) = [
            s.value for s in samples["demo_http_request_duration_seconds_count"] if s.labels["route"] == route
        ]
        requests = sum(s.value for s in samples["demo_http_requests_total"] if s.labels["route"] == route)
        assert count == values[-1] == requests == totals.requests[r].sum() > 0


def test_history_is_openmetrics_with_cumulative_counters(tmp_path: Path) -> None:
    path = tmp_path / "history.om"
    write_history(path, start=1_000_000.0, end=1_000_000.0 + 3600, step_seconds=60, labels={"job": "demo"})
    text = path.read_text()

    assert text.endswith("# EOF\n")
    _backfill(path, tmp_path)
    samples = _history_points(text)
    checkout_ok = [
        s
        for s in samples["demo_http_requests_total"]
        if s.labels == {"job": "demo", "route": "/api/checkout", "code": "200"}
    ]
    assert [s.timestamp for s in checkout_ok] == [1_000_000 + 60 * i for i in range(1, 61)]
    values = [s.value for s in checkout_ok]
    assert values == sorted(values) and values[0] > 0
    assert {s.labels["le"] for s in samples["demo_http_request_duration_seconds_bucket"]} >= {"0.5", "+Inf"}

    def at_end(name: str, **labels: str) -> float:
        final = 1_000_000 + 3600
        return sum(
            s.value for s in samples[name] if s.timestamp == final and labels.items() <= s.labels.items()
        )

    login_requests = at_end("demo_http_requests_total", route="/api/login")
    assert login_requests > 0
    assert (
        at_end("demo_http_request_duration_seconds_bucket", route="/api/login", le="+Inf") == login_requests
    )
    assert at_end("demo_http_request_duration_seconds_count", route="/api/login") == login_requests


def test_history_and_live_share_series_names_and_le_values(tmp_path: Path) -> None:
    path = tmp_path / "history.om"
    write_history(path, start=0.0, end=600.0, labels={})
    history = _history_points(path.read_text())
    live = _samples_by_name(render_text(_totals()))

    assert set(history) == set(live)
    for name in live:
        assert {tuple(sorted(s.labels.items())) for s in history[name]} == {
            tuple(sorted(s.labels.items())) for s in live[name]
        }


def test_history_shows_its_incidents(tmp_path: Path) -> None:
    path = tmp_path / "history.om"
    burst = Incident("error_burst", start=1800.0, duration_seconds=600.0, magnitude=0.5)
    write_history(path, start=0.0, end=3600.0, step_seconds=60, incidents=[burst], labels={})
    samples = _history_points(path.read_text())["demo_http_requests_total"]

    def errors_between(t0: float, t1: float) -> float:
        def at(t: float) -> float:
            return sum(s.value for s in samples if s.labels["code"] == "500" and s.timestamp == t)

        return at(t1) - at(t0)

    assert errors_between(1800, 2400) > 20 * errors_between(600, 1200)


def test_history_written_until_is_a_prefix_of_the_longer_history(tmp_path: Path) -> None:
    start, end = 1_000_000.0, 1_000_000.0 + 7200
    whole, prefix = tmp_path / "whole.om", tmp_path / "prefix.om"
    write_history(whole, start=start, end=end, step_seconds=60, seed=3, labels={"job": "demo"})
    write_history(
        prefix,
        start=start,
        end=end,
        step_seconds=60,
        seed=3,
        labels={"job": "demo"},
        written_until=start + 1830,
    )

    def points(path: Path) -> set[tuple[str, tuple[tuple[str, str], ...], float, float]]:
        return {
            (name, tuple(sorted(s.labels.items())), s.timestamp, s.value)
            for name, samples in _history_points(path.read_text()).items()
            for s in samples
        }

    kept = points(prefix)
    assert {timestamp for _, _, timestamp, _ in kept} == {start + 60 * i for i in range(1, 31)}
    # The same draws as the two-hour history, not a new half-hour realisation.
    assert kept == {point for point in points(whole) if point[2] <= start + 1830}
    with pytest.raises(ValueError, match="at or before"):
        write_history(prefix, start=start, end=end, step_seconds=60, written_until=start + 30)


def test_a_later_part_of_the_history_continues_the_same_draws(tmp_path: Path) -> None:
    """The demo backfills the history, then (after the slow backfills) the part up to now: the
    second part must be the same realisation, its counters restarting from 0 (a PromQL reset)."""
    start, end = 1_000_000.0, 1_000_000.0 + 7200
    whole, later = tmp_path / "whole.om", tmp_path / "later.om"
    common = {"start": start, "end": end, "step_seconds": 60.0, "seed": 3, "labels": {"job": "demo"}}
    write_history(whole, **common)
    write_history(later, written_after=start + 1830, written_until=start + 3630, **common)

    def increases(path: Path) -> dict[tuple[str, tuple[tuple[str, str], ...]], dict[float, float]]:
        """Per series: timestamp -> increase since the previous point of the file."""
        found: dict[tuple[str, tuple[tuple[str, str], ...]], dict[float, float]] = {}
        for name, samples in _history_points(path.read_text()).items():
            for s in samples:
                found.setdefault((name, tuple(sorted(s.labels.items()))), {})[s.timestamp] = s.value
        return {
            key: {t: v - points.get(t - 60, 0.0) for t, v in sorted(points.items())}
            for key, points in found.items()
        }

    full, part = increases(whole), increases(later)
    assert set(part) == set(full)
    for key, points in part.items():
        assert set(points) == {start + 60 * i for i in range(31, 61)}
        # The first point counts from 0; every increase equals the whole history's.
        assert points == pytest.approx({t: full[key][t] for t in points}), key
    with pytest.raises(ValueError, match="after"):
        write_history(later, written_after=end, **common)
