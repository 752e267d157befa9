"""SIGTERM and SIGINT as a stop request for a service loop."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


@contextlib.contextmanager
def stop_on_signals(stop: threading.Event | None = None) -> Iterator[threading.Event]:
    """Within the block, SIGTERM and SIGINT only set `stop` (a new event by default): the loop
    finishes the work in hand and returns, instead of dying half-way through it. The previous
    handlers come back afterwards."""
    event = stop if stop is not None else threading.Event()

    def request_stop(signum: int, frame: object) -> None:
        event.set()  # only set a flag: what runs in a signal handler must not block

    previous = {sig: signal.signal(sig, request_stop) for sig in STOP_SIGNALS}
    try:
        yield event
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
