"""Instants on the command line: unix seconds, RFC 3339, `now`, `now-7d`; durations like `1h30m`."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime

_DURATION_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400, "y": 365 * 86400}
_DURATION = re.compile(r"(?:\d+(?:ms|s|m|h|d|w|y))+")
_DURATION_PART = re.compile(r"(\d+)(ms|s|m|h|d|w|y)")
_RELATIVE = re.compile(r"now(?:\s*([+-])\s*(\S+))?")


def parse_duration(text: str) -> float:
    """Prometheus duration (`7d`, `1h30m`, `500ms`) in seconds."""
    compact = text.replace(" ", "")
    if not _DURATION.fullmatch(compact):
        raise ValueError(f"{text!r} is not a duration (use e.g. 30m, 7d, 1h30m)")
    return sum(int(n) * _DURATION_SECONDS[unit] for n, unit in _DURATION_PART.findall(compact))


def parse_time(text: str, *, now: float) -> float:
    """Unix seconds of `text`: unix seconds, RFC 3339 / ISO 8601, `now` or `now-7d` / `now+1h`.

    `now` is passed in so `--start now-7d --end now` is one consistent range. A time without an
    offset is UTC (Prometheus' own convention), never the local zone of the machine.
    """
    stripped = text.strip()
    try:
        seconds = float(stripped)
    except ValueError:
        pass
    else:
        if not math.isfinite(seconds):
            raise ValueError(f"not a time: {text!r}")
        return seconds
    relative = _RELATIVE.fullmatch(stripped)
    if relative:
        sign, duration = relative.groups()
        offset = parse_duration(duration) if duration else 0.0
        return now - offset if sign == "-" else now + offset
    try:
        moment = datetime.fromisoformat(stripped)
    except ValueError as err:
        raise ValueError(
            f"not a time: {text!r} (use RFC 3339 like 2024-05-01T00:00:00Z, unix seconds, or now-7d)"
        ) from err
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def format_time(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
