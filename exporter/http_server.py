"""HTTP side of the exporter: `/metrics` from the cache, `/healthz`, `/-/ready`. Never scores.

A scrape only concatenates the anomaly page rendered by the last cycle with the (small) self
metrics, so it costs the same whether Prometheus or MLflow are up or down, and a slow cycle can
never make a scrape time out.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from exporter.exposition import CONTENT_TYPE
from slo_pipeline.adapters.bounded_http import (
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_SOCKET_TIMEOUT_SECONDS,
    BoundedThreadingHTTPServer,
)
from slo_pipeline.adapters.metrics_http import LANDING_CONTENT_TYPE, landing_page

log = logging.getLogger(__name__)


class MetricsPage:
    """The anomaly text of the last cycle (swapped as one reference) plus live self-metrics."""

    def __init__(self, render_self_metrics: Callable[[], bytes]) -> None:
        self._render_self_metrics = render_self_metrics
        self._anomaly_body = b""

    def publish(self, anomaly_text: str) -> None:
        # Encoded once per cycle, not once per scrape; assigning one bytes object is atomic.
        self._anomaly_body = anomaly_text.encode("utf-8")

    def body(self) -> bytes:
        return self._anomaly_body + self._render_self_metrics()


def parse_listen(listen: str) -> tuple[str, int]:
    """`HOST:PORT` (or `[::1]:PORT`) to a bind address; port 0 picks a free one."""
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"--listen must look like HOST:PORT, got {listen!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def start_http_server(
    listen: str,
    page: MetricsPage,
    *,
    is_ready: Callable[[], bool],
    is_healthy: Callable[[], bool],
    socket_timeout_seconds: float = DEFAULT_SOCKET_TIMEOUT_SECONDS,
    max_connections: int = DEFAULT_MAX_CONNECTIONS,
) -> ThreadingHTTPServer:
    """Bind `listen` and serve in a daemon thread; stop with `server.shutdown(); server.server_close()`."""
    address = parse_listen(listen)
    landing = landing_page(
        "slo-pipeline exporter",
        [
            ("/metrics", "anomaly scores and the exporter's own metrics"),
            ("/healthz", "liveness: 200 while the scoring loop runs"),
            ("/-/ready", "readiness: 200 once the first scoring cycle finished"),
        ],
        "Scores every detector's series with its champion model and publishes anomaly_score.",
    )

    class Handler(BaseHTTPRequestHandler):
        server_version = "slo-pipeline-exporter"

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/":
                self._answer(200, landing, LANDING_CONTENT_TYPE)
            elif path == "/metrics":
                self._answer(200, page.body(), CONTENT_TYPE)
            elif path == "/healthz":
                ok = is_healthy()
                self._answer(200 if ok else 503, b"ok\n" if ok else b"scoring loop is not running\n")
            elif path == "/-/ready":
                ok = is_ready()
                self._answer(200 if ok else 503, b"ready\n" if ok else b"first scoring cycle not finished\n")
            else:
                self._answer(404, b"not found: try /, /metrics, /healthz or /-/ready\n")

        def _answer(self, status: int, body: bytes, content_type: str = "text/plain; charset=utf-8") -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            log.debug("%s %s", self.address_string(), format % args)

    try:
        server = BoundedThreadingHTTPServer(
            address, Handler, socket_timeout_seconds=socket_timeout_seconds, max_connections=max_connections
        )
    except OSError as err:
        raise OSError(f"exporter could not listen on {listen!r}: {err}") from err
    threading.Thread(target=server.serve_forever, name="exporter-http", daemon=True).start()
    return server
