"""Issue 9 finding 8: the exporter's and the simulator's HTTP listeners default to loopback and
cannot be exhausted by idle half-requests (200 of them held 206 threads before)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from http.server import ThreadingHTTPServer

import pytest
import requests

from exporter.commands import DEFAULT_LISTEN
from exporter.http_server import MetricsPage, start_http_server
from slo_pipeline.adapters.listen_address import parse_listen
from slo_pipeline.cli import build_parser
from slo_pipeline.devstack.simulator.server import SimulatedService, make_server

pytestmark = pytest.mark.integration

HALF_REQUESTS = 200
CAP = 16


def exporter_server() -> ThreadingHTTPServer:
    page = MetricsPage(lambda: b"# self metrics\n")
    page.publish("anomaly_score 1\n")
    return start_http_server(
        "127.0.0.1:0",
        page,
        is_ready=lambda: True,
        is_healthy=lambda: True,
        socket_timeout_seconds=1,
        max_connections=CAP,
    )


def simulator_server() -> ThreadingHTTPServer:
    server = make_server(SimulatedService(seed=1), socket_timeout_seconds=1, max_connections=CAP)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture(params=[exporter_server, simulator_server], ids=["exporter", "simulator"])
def server(request: pytest.FixtureRequest) -> Iterator[ThreadingHTTPServer]:
    factory: Callable[[], ThreadingHTTPServer] = request.param
    started = factory()
    yield started
    started.shutdown()
    started.server_close()


def test_idle_half_requests_hold_a_bounded_number_of_threads_for_a_bounded_time(
    server: ThreadingHTTPServer,
) -> None:
    host, port = server.server_address[:2]
    threads_before = threading.active_count()
    with ExitStack() as stack:
        clients = []
        for _ in range(HALF_REQUESTS):
            client = stack.enter_context(socket.create_connection((host, port), timeout=60))
            client.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")  # headers never finished
            clients.append(client)
        threads_with_all_connected = threading.active_count()
        # every client is either refused (over the cap) or timed out by the server: all see EOF
        assert all(client.recv(1024) == b"" for client in clients)
    assert threads_with_all_connected <= threads_before + CAP
    answer = requests.get(f"http://{host}:{port}/metrics", timeout=30)
    assert answer.status_code == 200


def test_listeners_default_to_loopback() -> None:
    assert DEFAULT_LISTEN.startswith("127.0.0.1:")
    assert parse_listen(":9110") == ("127.0.0.1", 9110)
    serve = build_parser().parse_args(["simulator", "serve"])
    assert serve.listen[0] == "127.0.0.1"
    webhook = build_parser().parse_args(["webhook"])
    assert webhook.listen.startswith("127.0.0.1:")
