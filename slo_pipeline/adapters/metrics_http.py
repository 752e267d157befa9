"""A tiny HTTP listener for services that only need `/metrics` (the worker, the SLO rules sync),
and the landing page every service answers on `/`.

The landing page is what node_exporter shows: the service's name and links to its endpoints, so
a URL printed by `make demo` never answers 404.
"""

from __future__ import annotations

import contextlib
import html
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from slo_pipeline.adapters.bounded_http import BoundedThreadingHTTPServer
from slo_pipeline.adapters.listen_address import parse_listen

log = logging.getLogger(__name__)

Link = tuple[str, str]  # (path, what it shows)


def landing_page(title: str, links: Sequence[Link], description: str = "") -> bytes:
    """A small HTML page naming the service and linking its endpoints."""
    items = "\n".join(
        f'<li><a href="{html.escape(path, quote=True)}">{html.escape(path)}</a> — {html.escape(what)}</li>'
        for path, what in links
    )
    intro = f"<p>{html.escape(description)}</p>\n" if description else ""
    page = (
        "<!DOCTYPE html>\n"
        f'<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title></head>\n'
        f"<body>\n<h1>{html.escape(title)}</h1>\n{intro}<ul>\n{items}\n</ul>\n</body></html>\n"
    )
    return page.encode("utf-8")


LANDING_CONTENT_TYPE = "text/html; charset=utf-8"


def start_metrics_server(
    listen: str,
    registry: CollectorRegistry,
    *,
    title: str,
    description: str = "",
    is_healthy: Callable[[], bool] | None = None,
) -> ThreadingHTTPServer:
    """Serve `/` (landing page), `/metrics` (the registry) and, with `is_healthy`, `/healthz`
    from a daemon thread. Stop with `server.shutdown(); server.server_close()`."""
    address = parse_listen(listen)
    links: list[Link] = [("/metrics", "Prometheus metrics")]
    if is_healthy is not None:
        links.append(("/healthz", "liveness: 200 while the service works"))
    page = landing_page(title, links, description)

    class Handler(BaseHTTPRequestHandler):
        server_version = "slo-pipeline"

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/":
                self._answer(200, page, LANDING_CONTENT_TYPE)
            elif path == "/metrics":
                try:
                    body = generate_latest(registry)
                except Exception as err:  # a failing collector must show as a failed scrape, not hang
                    log.exception("rendering /metrics failed")
                    self._answer(500, f"metrics unavailable: {err}\n".encode())
                    return
                self._answer(200, body, CONTENT_TYPE_LATEST)
            elif path == "/healthz" and is_healthy is not None:
                ok = is_healthy()
                self._answer(200 if ok else 503, b"ok\n" if ok else b"unhealthy\n")
            else:
                self._answer(404, b"not found: see / for the endpoints\n")

        def _answer(self, status: int, body: bytes, content_type: str = "text/plain; charset=utf-8") -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            log.debug("%s %s", self.address_string(), format % args)

    try:
        # Client sockets time out and connections are capped: idle clients cannot pile up threads.
        server = BoundedThreadingHTTPServer(address, Handler)
    except OSError as err:
        raise OSError(f"{title} could not listen on {listen!r}: {err}") from err
    threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True).start()
    log.info("%s serves /metrics on http://%s:%d", title, address[0], server.server_address[1])
    return server


@contextlib.contextmanager
def metrics_served(
    listen: str,
    registry: CollectorRegistry,
    *,
    title: str,
    description: str = "",
) -> Iterator[ThreadingHTTPServer | None]:
    """`start_metrics_server` for the duration of a `with` block; an empty `listen` serves nothing
    (the setting's documented way to turn a service's listener off)."""
    server = start_metrics_server(listen, registry, title=title, description=description) if listen else None
    try:
        yield server
    finally:
        if server is not None:
            server.shutdown()
            server.server_close()
