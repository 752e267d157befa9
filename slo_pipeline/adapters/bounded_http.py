"""A ThreadingHTTPServer that idle or half-sent requests cannot exhaust.

The standard server starts one thread per connection and never times a client out: 200 idle
half-requests held 206 threads of the exporter. Here every client socket gets a timeout (a
client that sends or reads nothing for that long is disconnected) and at most
`max_connections` are served at once; a connection over the cap is closed at once, so a flood
costs a bounded number of threads for a bounded time.
"""

from __future__ import annotations

import logging
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

log = logging.getLogger(__name__)

DEFAULT_SOCKET_TIMEOUT_SECONDS = 10.0
DEFAULT_MAX_CONNECTIONS = 64


class BoundedThreadingHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    # The listen backlog (socketserver's default is 5): a burst of connections is accepted and
    # refused or served, rather than left to the client's SYN retries.
    request_queue_size = 128

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[BaseHTTPRequestHandler],
        *,
        socket_timeout_seconds: float = DEFAULT_SOCKET_TIMEOUT_SECONDS,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
    ) -> None:
        super().__init__(address, handler)
        self.socket_timeout_seconds = socket_timeout_seconds
        self.max_connections = max_connections
        self._slots = threading.BoundedSemaphore(max_connections)
        self._refused = 0

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self._refused += 1
            if self._refused in (1, 10, 100) or self._refused % 1000 == 0:
                log.warning(
                    "%s: %d connections refused so far: %d already open (the cap)",
                    type(self).__name__,
                    self._refused,
                    self.max_connections,
                )
            self.shutdown_request(request)
            return
        if isinstance(request, socket.socket):
            request.settimeout(self.socket_timeout_seconds)
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()
