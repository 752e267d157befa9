"""HTTP side of the exporter: `/metrics` from the cache, `/healthz`, `/-/ready`. Never scores.

A scrape only concatenates the anomaly page rendered by the last cycle with the (small) self
metrics, so it costs the same whether Prometheus or MLflow are up or down, and a slow cycle can
never make a scrape time out.

A scraper that accepts gzip (Prometheus always does) gets the page gzip-compressed: at 100k
series the page is tens of MB of very repetitive text. The anomaly part is compressed once per
cycle, on the first gzip scrape after it was published, and the compressor's state is kept; each
scrape copies that state and adds only the self metrics, so the answer is one ordinary gzip
stream while the expensive part is never compressed twice.
"""

from __future__ import annotations

import logging
import threading
import zlib
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from exporter.exposition import CONTENT_TYPE
from slo_pipeline.adapters.bounded_http import (
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_SOCKET_TIMEOUT_SECONDS,
    BoundedThreadingHTTPServer,
)
from slo_pipeline.adapters.listen_address import parse_listen
from slo_pipeline.adapters.metrics_http import LANDING_CONTENT_TYPE, landing_page

log = logging.getLogger(__name__)


# zlib level 1: on this text it compresses nearly as well as the default level at a fraction of
# the CPU (benchmarks/bench_exporter.py measures bytes and time at 100k series).
GZIP_LEVEL = 1
_GZIP_WBITS = 16 + zlib.MAX_WBITS  # a gzip header and trailer around the deflate stream


class MetricsPage:
    """The anomaly text of the last cycle (swapped as one reference) plus live self-metrics."""

    def __init__(self, render_self_metrics: Callable[[], bytes]) -> None:
        self._render_self_metrics = render_self_metrics
        self._anomaly_body = b""
        self._lock = threading.Lock()
        # (compressed anomaly part, compressor positioned after it), made on the first gzip scrape.
        self._gzip_state: tuple[bytes, zlib._Compress] | None = None

    def publish(self, anomaly_text: str) -> None:
        # Encoded once per cycle, not once per scrape.
        body = anomaly_text.encode("utf-8")
        with self._lock:
            self._anomaly_body = body
            self._gzip_state = None

    def body(self) -> bytes:
        return self._anomaly_body + self._render_self_metrics()

    def gzip_body(self) -> bytes:
        """`body()` as one gzip stream; the anomaly part is compressed once per publish."""
        with self._lock:
            if self._gzip_state is None:
                compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, _GZIP_WBITS)
                # A sync flush ends the anomaly part on a byte boundary, so what follows can be
                # appended by a copy of the compressor without touching it.
                prefix = compressor.compress(self._anomaly_body) + compressor.flush(zlib.Z_SYNC_FLUSH)
                self._gzip_state = (prefix, compressor)
            prefix, compressor = self._gzip_state
            tail = compressor.copy()
        return prefix + tail.compress(self._render_self_metrics()) + tail.flush()


def accepts_gzip(accept_encoding: str | None) -> bool:
    """Whether an `Accept-Encoding` header allows gzip (`gzip;q=0` refuses it)."""
    for part in (accept_encoding or "").split(","):
        coding, _, params = part.strip().partition(";")
        if coding.strip().lower() not in ("gzip", "x-gzip"):
            continue
        quality = params.strip().lower()
        if quality.startswith("q="):
            try:
                return float(quality[2:]) > 0
            except ValueError:
                return False
        return True
    return False


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
                if accepts_gzip(self.headers.get("Accept-Encoding")):
                    self._answer(200, page.gzip_body(), CONTENT_TYPE, encoding="gzip")
                else:
                    self._answer(200, page.body(), CONTENT_TYPE)
            elif path == "/healthz":
                ok = is_healthy()
                self._answer(200 if ok else 503, b"ok\n" if ok else b"scoring loop is not running\n")
            elif path == "/-/ready":
                ok = is_ready()
                self._answer(200 if ok else 503, b"ready\n" if ok else b"first scoring cycle not finished\n")
            else:
                self._answer(404, b"not found: try /, /metrics, /healthz or /-/ready\n")

        def _answer(
            self,
            status: int,
            body: bytes,
            content_type: str = "text/plain; charset=utf-8",
            encoding: str | None = None,
        ) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            if self.path.split("?", 1)[0] == "/metrics":
                self.send_header("Vary", "Accept-Encoding")
            if encoding is not None:
                self.send_header("Content-Encoding", encoding)
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
