"""An in-memory range-query backend for the incremental-fetch unit tests.

It answers `(query, start, end, step)` the way Prometheus evaluates a plain selector at each grid
instant: the latest sample at or before the instant within the lookback delta, nothing after a
staleness marker, series sorted by label set, values as Prometheus formats them (so the real
`align_answer` parses them). Samples become visible at their `visible_at` time (a scrape or rule
evaluation that lands late), compared with `now`. The same behaviours are checked against a real
Prometheus in tests/integration/test_exporter_incremental_fetch.py.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from dataclasses import dataclass, field

import numpy as np

from slo_pipeline.adapters.prometheus import LabelKey, RangeAnswer, align_answer, label_key, step_grid

STALE = None  # a staleness marker instead of a value


@dataclass
class FakeSeries:
    labels: dict[str, str]
    times: list[float] = field(default_factory=list)
    values: list[float | None] = field(default_factory=list)
    visible_at: list[float] = field(default_factory=list)


def format_value(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


class FakePrometheus:
    def __init__(self, lookback_seconds: float = 300.0) -> None:
        self.lookback_seconds = lookback_seconds
        self.series: dict[LabelKey, FakeSeries] = {}
        self.now = 0.0  # only samples visible by then are answered
        self.requests: list[tuple[str, float, float, int]] = []
        self.failing = False
        self.reverse_order = False  # a backend that does not sort its answer

    def add(
        self, labels: dict[str, str], time: float, value: float | None, *, visible_at: float | None = None
    ) -> None:
        """A sample (or a staleness marker: value STALE); in time order per series, as Prometheus
        requires. It becomes visible at `visible_at` (default: its own time)."""
        series = self.series.setdefault(label_key(labels), FakeSeries(dict(labels)))
        if series.times and time <= series.times[-1]:
            raise ValueError(f"out-of-order sample at {time} for {labels}")
        visible = time if visible_at is None else visible_at
        # Within a series, samples become visible in order (one appender per target).
        if series.visible_at:
            visible = max(visible, series.visible_at[-1])
        series.times.append(time)
        series.values.append(value)
        series.visible_at.append(visible)

    def answer(self, query: str, start: float, end: float, step: int) -> RangeAnswer:
        self.requests.append((query, start, end, step))
        if self.failing:
            raise ConnectionError(f"could not run query {query!r}: connection refused")
        grid = step_grid(start, end, step)
        results = []
        for key in sorted(self.series):
            series = self.series[key]
            if series.labels.get("__name__") != query:
                continue
            points = self._points(series, grid)
            if points:
                results.append({"metric": dict(series.labels), "values": points})
        if self.reverse_order:
            results.reverse()
        return align_answer([results], grid)

    def _points(self, series: FakeSeries, grid: np.ndarray) -> list[list[object]]:
        visible = [i for i, at in enumerate(series.visible_at) if at <= self.now]
        times = [series.times[i] for i in visible]
        points: list[list[object]] = []
        for instant in grid.tolist():
            index = bisect_right(times, instant) - 1
            if index < 0 or instant - times[index] >= self.lookback_seconds:
                continue
            value = series.values[visible[index]]
            if value is STALE:
                continue
            points.append([instant, format_value(value)])
        return points
