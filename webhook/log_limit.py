"""At most one log line per interval for a repetitive event, with the count of those not logged.

A client hammering the webhook with a wrong token must be visible in the log without being able
to flood it (the counter in /metrics has every event). Thread-safe: gthread workers share it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable


class RateLimitedLog:
    def __init__(
        self,
        logger: logging.Logger,
        interval_seconds: float,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._interval = interval_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._next_allowed = float("-inf")
        self._suppressed = 0

    def warning(self, message: str, *args: object) -> bool:
        """Log now if the interval has passed since the last line (True), else only count it."""
        with self._lock:
            now = self._clock()
            if now < self._next_allowed:
                self._suppressed += 1
                return False
            suppressed, self._suppressed = self._suppressed, 0
            self._next_allowed = now + self._interval
        if suppressed:
            message += " (%d more like it since the last such line)"
            args = (*args, suppressed)
        self._logger.warning(message, *args)
        return True
