"""Cumulative totals of the simulated service and their text renderings (pure, no I/O).

Two formats share one set of names and label values, so backfilled history and live scrapes end
up as the very same Prometheus series:
- Prometheus text format 0.0.4 for the live `/metrics` (what `promtool check metrics` lints);
- OpenMetrics with timestamps for `promtool tsdb create-blocks-from openmetrics`, where a counter
  family is named without `_total` (its samples keep it) and the file ends with `# EOF`.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from slo_pipeline.devstack.simulator.model import (
    DEFAULT_ROUTES,
    LATENCY_BUCKETS,
    STATUS_CODES,
    IntervalSample,
    RouteProfile,
)

REQUESTS_FAMILY = "demo_http_requests"  # samples: demo_http_requests_total
REQUESTS_HELP = "Requests served by the simulated service, by route and HTTP status code."
DURATION_FAMILY = "demo_http_request_duration_seconds"
DURATION_HELP = "Time the simulated service took to answer a request."


def format_le(bound: float) -> str:
    """Bucket bound as Python's prometheus_client writes it (`0.5`, `1.0`, `+Inf`), in both formats."""
    return "+Inf" if bound == float("inf") else repr(float(bound))


def escape_label_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def render_labels(labels: Mapping[str, str]) -> str:
    return ",".join(f'{name}="{escape_label_value(value)}"' for name, value in labels.items())


@dataclass
class Totals:
    """Counter values since the service started: requests [routes, codes], buckets [routes, buckets+1]."""

    requests: np.ndarray
    bucket_counts: np.ndarray  # per bucket, not cumulative over `le`
    duration_sum: np.ndarray

    @classmethod
    def zero(cls, routes: Sequence[RouteProfile] = DEFAULT_ROUTES, n_buckets: int = len(LATENCY_BUCKETS)):
        n_routes = len(routes)
        return cls(
            requests=np.zeros((n_routes, len(STATUS_CODES)), dtype=np.int64),
            bucket_counts=np.zeros((n_routes, n_buckets + 1), dtype=np.int64),
            duration_sum=np.zeros(n_routes, dtype=float),
        )

    def add(self, sample: IntervalSample) -> None:
        self.requests += sample.requests.sum(axis=-1)
        self.bucket_counts += sample.bucket_counts.sum(axis=-1)
        self.duration_sum += sample.duration_sum.sum(axis=-1)


def render_text(
    totals: Totals,
    *,
    routes: Sequence[RouteProfile] = DEFAULT_ROUTES,
    buckets: Sequence[float] = LATENCY_BUCKETS,
) -> str:
    """Prometheus text exposition (version 0.0.4) of the totals."""
    lines = [
        f"# HELP {REQUESTS_FAMILY}_total {REQUESTS_HELP}",
        f"# TYPE {REQUESTS_FAMILY}_total counter",
    ]
    for r, profile in enumerate(routes):
        for c, code in enumerate(STATUS_CODES):
            labels = render_labels({"route": profile.route, "code": code})
            lines.append(f"{REQUESTS_FAMILY}_total{{{labels}}} {int(totals.requests[r, c])}")
    lines += [f"# HELP {DURATION_FAMILY} {DURATION_HELP}", f"# TYPE {DURATION_FAMILY} histogram"]
    bounds = [*buckets, float("inf")]
    for r, profile in enumerate(routes):
        cumulative = np.cumsum(totals.bucket_counts[r])
        for bound, count in zip(bounds, cumulative, strict=True):
            labels = render_labels({"route": profile.route, "le": format_le(bound)})
            lines.append(f"{DURATION_FAMILY}_bucket{{{labels}}} {int(count)}")
        route_label = render_labels({"route": profile.route})
        lines.append(f"{DURATION_FAMILY}_sum{{{route_label}}} {float(totals.duration_sum[r])!r}")
        lines.append(f"{DURATION_FAMILY}_count{{{route_label}}} {int(cumulative[-1])}")
    return "\n".join(lines) + "\n"


def _point_lines(name_and_labels: str, values: Iterable[object], timestamps: Sequence[str]) -> list[str]:
    return [f"{name_and_labels} {value} {ts}" for value, ts in zip(values, timestamps, strict=True)]


def _series_lines(name_and_labels: str, values: Iterable[object], timestamps: Sequence[str]) -> str:
    return "\n".join(_point_lines(name_and_labels, values, timestamps))


def render_openmetrics_history(
    timestamps: np.ndarray,
    sample: IntervalSample,
    *,
    extra_labels: Mapping[str, str] | None = None,
    routes: Sequence[RouteProfile] = DEFAULT_ROUTES,
    buckets: Sequence[float] = LATENCY_BUCKETS,
) -> str:
    """OpenMetrics text with one timestamped point per interval end, counters cumulative from 0.

    Counter series are written as one time-ordered run each; histogram points as groups (see below).
    """
    extra = dict(extra_labels or {})
    stamps = [f"{t:.3f}" for t in timestamps]
    parts = [f"# TYPE {REQUESTS_FAMILY} counter", f"# HELP {REQUESTS_FAMILY} {REQUESTS_HELP}"]
    requests = np.cumsum(sample.requests, axis=-1)
    for r, profile in enumerate(routes):
        for c, code in enumerate(STATUS_CODES):
            labels = render_labels({**extra, "route": profile.route, "code": code})
            parts.append(_series_lines(f"{REQUESTS_FAMILY}_total{{{labels}}}", requests[r, c], stamps))
    parts += [
        f"# TYPE {DURATION_FAMILY} histogram",
        f"# UNIT {DURATION_FAMILY} seconds",
        f"# HELP {DURATION_FAMILY} {DURATION_HELP}",
    ]
    # Cumulative over time (counters), then over `le` (histogram buckets).
    bucket_totals = np.cumsum(np.cumsum(sample.bucket_counts, axis=-1), axis=1)
    sums = np.cumsum(sample.duration_sum, axis=-1)
    bounds = [*buckets, float("inf")]
    for r, profile in enumerate(routes):
        # OpenMetrics groups a histogram point: all buckets, count and sum of one route at one
        # timestamp sit together, and the groups follow each other in time order.
        series: list[list[str]] = []
        for b, bound in enumerate(bounds):
            labels = render_labels({**extra, "route": profile.route, "le": format_le(bound)})
            series.append(_point_lines(f"{DURATION_FAMILY}_bucket{{{labels}}}", bucket_totals[r, b], stamps))
        route_labels = render_labels({**extra, "route": profile.route})
        series.append(
            _point_lines(f"{DURATION_FAMILY}_count{{{route_labels}}}", bucket_totals[r, -1], stamps)
        )
        sum_values = [f"{value:.6f}" for value in sums[r]]
        series.append(_point_lines(f"{DURATION_FAMILY}_sum{{{route_labels}}}", sum_values, stamps))
        parts.append("\n".join(itertools.chain.from_iterable(zip(*series, strict=True))))
    parts.append("# EOF")
    return "\n".join(parts) + "\n"
