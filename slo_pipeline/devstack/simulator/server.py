"""The live simulated service: counters that advance with wall time, incidents on demand.

Nothing is counted per request: on every scrape the service draws the counts the traffic model
expects for the time since the previous scrape (in steps of at most `max_step_seconds`, so the
daily cycle and incidents are followed as closely as in the generated history).
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from typing import Any

import numpy as np

from slo_pipeline.adapters.bounded_http import BoundedThreadingHTTPServer
from slo_pipeline.adapters.metrics_http import LANDING_CONTENT_TYPE, landing_page
from slo_pipeline.devstack.simulator.exposition import Totals, render_labels, render_text
from slo_pipeline.devstack.simulator.model import (
    DEFAULT_ROUTES,
    INCIDENT_KINDS,
    Incident,
    IncidentError,
    RouteProfile,
    parse_incident,
    sample_intervals,
)

logger = logging.getLogger(__name__)

METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
MAX_BODY_BYTES = 64 * 1024
MAX_REMEMBERED_INCIDENTS = 1000
INCIDENT_ACTIVE_HELP = "1 while an injected incident of this kind is active (the ground truth for tests)."


class SimulatedService:
    """Thread-safe state of the live service; `clock` is injectable so tests control time."""

    def __init__(
        self,
        *,
        seed: int | None = None,
        clock: Callable[[], float] = time.time,
        routes: Sequence[RouteProfile] = DEFAULT_ROUTES,
        max_step_seconds: float = 15.0,
        counting_since: float | None = None,
    ) -> None:
        """`counting_since`: the time traffic is counted from (default: now). The demo passes
        the end of the backfilled history, so the first scrape also counts the requests of the
        gap between history and live scraping; otherwise every rate() over that gap would show
        a dip that no real service has (measured: -25 % for five minutes)."""
        self._clock = clock
        self._routes = tuple(routes)
        self._rng = np.random.default_rng(seed)
        self._max_step = max_step_seconds
        self._lock = threading.Lock()
        self._totals = Totals.zero(self._routes)
        now = clock()
        if counting_since is not None and not counting_since <= now:
            raise ValueError(f"counting_since ({counting_since}) must not be in the future (now {now})")
        self._last_advance = now if counting_since is None else counting_since
        self._incidents: list[Incident] = []

    @property
    def routes(self) -> tuple[RouteProfile, ...]:
        return self._routes

    def _advance_locked(self, now: float) -> None:
        if now <= self._last_advance:
            return
        steps = max(1, int(np.ceil((now - self._last_advance) / self._max_step)))
        edges = np.linspace(self._last_advance, now, steps + 1)
        relevant = [incident for incident in self._incidents if incident.end > self._last_advance]
        sample = sample_intervals(
            edges[:-1], edges[1:], incidents=relevant, rng=self._rng, routes=self._routes
        )
        self._totals.add(sample)
        self._last_advance = now

    def metrics_text(self) -> str:
        with self._lock:
            now = self._clock()
            self._advance_locked(now)
            text = render_text(self._totals, routes=self._routes)
            active_kinds = {incident.kind for incident in self._incidents if incident.is_active(now)}
        lines = [
            f"# HELP demo_simulator_incident_active {INCIDENT_ACTIVE_HELP}",
            "# TYPE demo_simulator_incident_active gauge",
        ]
        for kind in sorted(INCIDENT_KINDS):
            labels = render_labels({"kind": kind})
            lines.append(f"demo_simulator_incident_active{{{labels}}} {int(kind in active_kinds)}")
        return text + "\n".join(lines) + "\n"

    def start_incident(self, payload: object) -> Incident:
        """Validate and start an incident now; raises IncidentError on bad input."""
        with self._lock:
            now = self._clock()
            incident = parse_incident(payload, start=now, routes=self._routes)
            # Counts up to now follow the old conditions; the incident applies from here on.
            self._advance_locked(now)
            self._incidents.append(incident)
            # Bounded history: a demo with --auto-incident-every may run for weeks.
            del self._incidents[:-MAX_REMEMBERED_INCIDENTS]
        logger.info("incident started: %s", incident)
        return incident

    def incidents_json(self) -> dict[str, list[dict[str, object]]]:
        with self._lock:
            now = self._clock()
            documents = [incident.to_json(now) for incident in self._incidents]
        return {
            "active": [d for d in documents if d["active"]],
            "past": [d for d in documents if not d["active"]],
        }


def _landing_page() -> bytes:
    return landing_page(
        "slo-pipeline simulator",
        [
            ("/metrics", "the simulated service's request counters and latency histogram"),
            ("/healthz", "liveness"),
            ("/incidents", "injected incidents (POST a JSON body to start one)"),
        ],
        "A service with a daily traffic cycle and injectable incidents, for the demo and the tests.",
    )


class SimulatorHandler(BaseHTTPRequestHandler):
    server: SimulatorHTTPServer

    def do_GET(self) -> None:
        service = self.server.service
        if self.path == "/":
            self._send(HTTPStatus.OK, _landing_page(), LANDING_CONTENT_TYPE)
        elif self.path == "/metrics":
            self._send(HTTPStatus.OK, service.metrics_text().encode("utf-8"), METRICS_CONTENT_TYPE)
        elif self.path == "/healthz":
            self._send_json(HTTPStatus.OK, {"status": "ok"})
        elif self.path == "/incidents":
            self._send_json(HTTPStatus.OK, service.incidents_json())
        else:
            self._send_json(HTTPStatus.NOT_FOUND, {"error": f"no such path {self.path!r}"})

    def do_POST(self) -> None:
        if self.path != "/incidents":
            self._send_json(HTTPStatus.NOT_FOUND, {"error": f"no such path {self.path!r}"})
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
            if length < 0:
                raise ValueError(length)
        except ValueError:
            # A negative length would make rfile.read() wait for the client to hang up.
            self._send_json(HTTPStatus.BAD_REQUEST, {"error": "Content-Length must be a whole number >= 0"})
            return
        if length > MAX_BODY_BYTES:
            too_large = {"error": f"body over {MAX_BODY_BYTES} bytes"}
            self._send_json(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, too_large)
            return
        body = self.rfile.read(length)
        try:
            payload = json.loads(body or b"null")
        except (ValueError, UnicodeDecodeError) as err:
            self._send_json(HTTPStatus.BAD_REQUEST, {"error": f"body is not valid JSON: {err}"})
            return
        try:
            incident = self.server.service.start_incident(payload)
        except IncidentError as err:
            self._send_json(HTTPStatus.BAD_REQUEST, {"error": str(err)})
            return
        self._send_json(HTTPStatus.ACCEPTED, incident.to_json(incident.start))

    def _send_json(self, status: HTTPStatus, document: object) -> None:
        self._send(status, json.dumps(document).encode("utf-8"), "application/json")

    def _send(self, status: HTTPStatus, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        # Scrapes every few seconds would drown the log; keep access lines at DEBUG.
        logger.debug("%s %s", self.address_string(), format % args)


class SimulatorHTTPServer(BoundedThreadingHTTPServer):
    def __init__(self, address: tuple[str, int], service: SimulatedService, **limits: Any) -> None:
        super().__init__(address, SimulatorHandler, **limits)
        self.service = service


def make_server(
    service: SimulatedService, host: str = "127.0.0.1", port: int = 0, **limits: Any
) -> SimulatorHTTPServer:
    """Bind (port 0 picks a free one: read `server.server_address`); call `serve_forever()` to run.
    `limits`: socket_timeout_seconds, max_connections (slo_pipeline.adapters.bounded_http)."""
    return SimulatorHTTPServer((host, port), service, **limits)


def random_incident_payload(rng: random.Random, every_seconds: float) -> dict[str, object]:
    """An incident of a random kind lasting half the gap, so auto incidents never overlap."""
    return {"kind": rng.choice(sorted(INCIDENT_KINDS)), "duration_seconds": every_seconds / 2}


def run_auto_incidents(
    service: SimulatedService, every_seconds: float, stop: threading.Event, seed: int | None = None
) -> None:
    """Start a random incident every `every_seconds` until `stop` is set (run it in a thread)."""
    rng = random.Random(seed)
    while not stop.wait(every_seconds):
        service.start_incident(random_incident_payload(rng, every_seconds))
