"""Prometheus duration strings (`1h30m`, `500ms`) to and from milliseconds."""

from __future__ import annotations

import re

_DURATION_UNITS_MS = {"y": 365 * 86_400_000, "w": 7 * 86_400_000, "d": 86_400_000, "h": 3_600_000}
_DURATION_UNITS_MS |= {"m": 60_000, "s": 1000, "ms": 1}
DURATION_PATTERN = r"(?:\d+(?:ms|y|w|d|h|m|s))+"
_DURATION_PART = re.compile(r"(\d+)(ms|y|w|d|h|m|s)")


def parse_duration_ms(text: str) -> int:
    """Prometheus duration (`1h30m`, `500ms`) to milliseconds."""
    if not re.fullmatch(DURATION_PATTERN, text):
        raise ValueError(f"{text!r} is not a Prometheus duration")
    return sum(int(n) * _DURATION_UNITS_MS[unit] for n, unit in _DURATION_PART.findall(text))


def format_duration_ms(ms: int) -> str:
    """The shortest whole-unit Prometheus duration for `ms` (`90000` -> `90s`)."""
    for unit in ("d", "h", "m", "s"):
        size = _DURATION_UNITS_MS[unit]
        if ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"
