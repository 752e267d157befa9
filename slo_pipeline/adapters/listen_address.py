"""`HOST:PORT` listen addresses, parsed one way for every service."""

from __future__ import annotations

LOOPBACK = "127.0.0.1"


def parse_listen(listen: str) -> tuple[str, int]:
    """`HOST:PORT` or `[::1]:PORT` to a bind address; port 0 picks a free one.

    An empty host (`:9110`) means loopback, never every interface: exposing a listener must be
    asked for by name (`0.0.0.0:9110`)."""
    host, sep, port = listen.strip().rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"listen address must look like HOST:PORT (e.g. 127.0.0.1:9110), got {listen!r}")
    return host.strip("[]") or LOOPBACK, int(port)
