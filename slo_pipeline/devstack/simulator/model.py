"""The traffic model of the simulated service: pure numpy, no clock, no I/O.

The live service and the history generator both draw their counts from `sample_intervals`, so a
`rate()` over live scrapes and over backfilled history describe the same service. Per route:
request rate with a daily cycle, a small 5xx ratio that is noisy but never flat zero, 4xx client
errors that an SLO should ignore, and lognormal latencies counted into histogram buckets.
Incidents change exactly one signal each, so tests can tell which detector should notice.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np

SECONDS_PER_DAY = 86_400.0
# The service's busiest hour (UTC); the quietest is twelve hours later.
PEAK_HOUR_UTC = 15.0
STATUS_CODES = ("200", "404", "500")
SERVER_ERROR_CODE_INDEX = 2
# Upper bounds in seconds; +Inf is implicit. Dense around the routes' medians so a latency spike
# moves counts between buckets that SLO queries (e.g. le="0.5") look at.
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass(frozen=True)
class RouteProfile:
    route: str
    requests_per_second: float
    latency_median_seconds: float
    latency_sigma: float
    server_error_ratio: float
    client_error_ratio: float = 0.01


# Checkout fails least: its 99.9 %/7d SLO in examples/slos.yml must be healthy at baseline
# (0.04 % errors burns 0.4x its budget), so the demo pages only on injected incidents.
DEFAULT_ROUTES = (
    RouteProfile("/api/checkout", 6.0, 0.18, 0.45, 0.0004),
    RouteProfile("/api/search", 15.0, 0.06, 0.55, 0.004),
    RouteProfile("/api/login", 3.0, 0.09, 0.35, 0.006),
)


@dataclass(frozen=True)
class IncidentKind:
    name: str
    default_magnitude: float
    min_magnitude: float
    max_magnitude: float
    meaning: str


INCIDENT_KINDS: Mapping[str, IncidentKind] = {
    kind.name: kind
    for kind in (
        IncidentKind("latency_spike", 5.0, 1.0, 1000.0, "multiplies the latency median"),
        IncidentKind("error_burst", 0.25, 0.0, 1.0, "share of requests answered with 5xx"),
        IncidentKind("traffic_drop", 0.9, 0.0, 1.0, "share of the request rate that disappears"),
    )
}
MAX_INCIDENT_SECONDS = 7 * SECONDS_PER_DAY


@dataclass(frozen=True)
class Incident:
    kind: str
    start: float
    duration_seconds: float
    magnitude: float
    route: str | None = None  # None: every route

    @property
    def end(self) -> float:
        return self.start + self.duration_seconds

    def is_active(self, now: float) -> bool:
        return self.start <= now < self.end

    def to_json(self, now: float | None = None) -> dict[str, object]:
        document: dict[str, object] = asdict(self)
        document["end"] = self.end
        if now is not None:
            document["active"] = self.is_active(now)
        return document


class IncidentError(ValueError):
    """An incident request that cannot be simulated; the message says which field and why."""


def parse_incident(
    payload: object, *, start: float, routes: Sequence[RouteProfile] = DEFAULT_ROUTES
) -> Incident:
    """Validate `{"kind", "duration_seconds", "magnitude"?, "route"?}` into an Incident at `start`."""
    if not isinstance(payload, Mapping):
        raise IncidentError("incident must be a JSON object")
    unknown = sorted(set(payload) - {"kind", "duration_seconds", "magnitude", "route"})
    if unknown:
        raise IncidentError(f"unknown incident fields: {unknown}")
    kind_name = payload.get("kind")
    if kind_name not in INCIDENT_KINDS:
        raise IncidentError(f"kind must be one of {sorted(INCIDENT_KINDS)}, got {kind_name!r}")
    kind = INCIDENT_KINDS[str(kind_name)]
    duration = _number(payload, "duration_seconds")
    if duration is None or not 0 < duration <= MAX_INCIDENT_SECONDS:
        raise IncidentError(f"duration_seconds must be a number in (0, {MAX_INCIDENT_SECONDS:.0f}]")
    magnitude = _number(payload, "magnitude")
    if magnitude is None:
        magnitude = kind.default_magnitude
    if not kind.min_magnitude < magnitude <= kind.max_magnitude:
        raise IncidentError(
            f"magnitude of {kind.name} ({kind.meaning}) must be in "
            f"({kind.min_magnitude:g}, {kind.max_magnitude:g}], got {magnitude:g}"
        )
    route = payload.get("route")
    known_routes = [profile.route for profile in routes]
    if route is not None and route not in known_routes:
        raise IncidentError(f"route must be one of {known_routes} or absent, got {route!r}")
    return Incident(kind.name, float(start), duration, magnitude, route)


def _number(payload: Mapping[str, object], key: str) -> float | None:
    value = payload.get(key)
    if value is None:
        return None
    # bool is an int in Python, but `true` is never a meaningful duration.
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise IncidentError(f"{key} must be a finite number, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class IntervalSample:
    """What happened in each interval: shapes [routes, codes, T], [routes, buckets+1, T], [routes, T].

    `bucket_counts` are per bucket (not cumulative); the last one is above the largest bound.
    """

    requests: np.ndarray
    bucket_counts: np.ndarray
    duration_sum: np.ndarray


def daily_cycle(times: np.ndarray, amplitude: float = 0.6) -> np.ndarray:
    """Traffic multiplier in [1 - amplitude, 1 + amplitude], peaking at PEAK_HOUR_UTC."""
    hours = (times % SECONDS_PER_DAY) / 3600.0
    return 1.0 + amplitude * np.cos(2.0 * np.pi * (hours - PEAK_HOUR_UTC) / 24.0)


def incident_overlap(incident: Incident, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Share of each interval covered by the incident, in [0, 1]."""
    covered = np.minimum(ends, incident.end) - np.maximum(starts, incident.start)
    return np.clip(covered / np.maximum(ends - starts, 1e-9), 0.0, 1.0)


_erf = np.frompyfunc(math.erf, 1, 1)


def _lognormal_cdf(bound: float, median: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    z = (math.log(bound) - np.log(median)) / (sigma * math.sqrt(2.0))
    return 0.5 * (1.0 + _erf(z).astype(float))


def sample_intervals(
    starts: np.ndarray,
    ends: np.ndarray,
    *,
    incidents: Sequence[Incident] = (),
    rng: np.random.Generator,
    routes: Sequence[RouteProfile] = DEFAULT_ROUTES,
    buckets: Sequence[float] = LATENCY_BUCKETS,
) -> IntervalSample:
    """Draw request, status and latency counts for each interval [starts[i], ends[i])."""
    starts = np.asarray(starts, dtype=float)
    ends = np.asarray(ends, dtype=float)
    n_routes, n_steps = len(routes), len(starts)
    shape = (n_routes, n_steps)
    seconds = np.maximum(ends - starts, 0.0)

    traffic = np.ones(shape)
    latency = np.ones(shape)
    burst_share = np.zeros(shape)
    burst_ratio = np.zeros(shape)
    for incident in incidents:
        overlap = incident_overlap(incident, starts, ends)
        for r, profile in enumerate(routes):
            if incident.route is not None and incident.route != profile.route:
                continue
            if incident.kind == "traffic_drop":
                traffic[r] *= 1.0 - incident.magnitude * overlap
            elif incident.kind == "latency_spike":
                latency[r] *= 1.0 + (incident.magnitude - 1.0) * overlap
            elif incident.kind == "error_burst":
                burst_share[r] = np.maximum(burst_share[r], overlap)
                burst_ratio[r] = np.where(overlap > 0, incident.magnitude, burst_ratio[r])

    base_rps = np.array([p.requests_per_second for p in routes])[:, None]
    # Small multiplicative noise: real traffic is never a perfect sine.
    rps = base_rps * daily_cycle((starts + ends) / 2.0)[None, :] * traffic * rng.lognormal(0.0, 0.05, shape)
    total = rng.poisson(rps * seconds[None, :])

    base_error = np.array([p.server_error_ratio for p in routes])[:, None]
    # Noise with sigma 0.35 keeps the error ratio a wiggly, never-flat line around its baseline.
    server_error = base_error * rng.lognormal(-(0.35**2) / 2, 0.35, shape)
    server_error = np.clip((1.0 - burst_share) * server_error + burst_share * burst_ratio, 0.0, 1.0)
    client_error = np.array([p.client_error_ratio for p in routes])[:, None] * np.ones(shape)
    client_error = np.minimum(client_error, 1.0 - server_error)
    code_probabilities = np.stack([1.0 - server_error - client_error, client_error, server_error], axis=-1)
    requests = rng.multinomial(total, np.clip(code_probabilities, 0.0, 1.0)).transpose(0, 2, 1)

    median = np.array([p.latency_median_seconds for p in routes])[:, None] * latency
    median = median * rng.lognormal(0.0, 0.05, shape)
    sigma = np.array([p.latency_sigma for p in routes])[:, None] * np.ones(shape)
    cdf = np.stack([_lognormal_cdf(bound, median, sigma) for bound in buckets], axis=-1)
    per_bucket = np.diff(cdf, axis=-1, prepend=0.0, append=1.0)
    bucket_counts = rng.multinomial(total, np.clip(per_bucket, 0.0, 1.0)).transpose(0, 2, 1)
    mean_latency = median * np.exp(sigma**2 / 2.0)
    duration_sum = total * mean_latency * rng.lognormal(0.0, 0.02, shape)
    return IntervalSample(requests=requests, bucket_counts=bucket_counts, duration_sum=duration_sum)
