"""The rate-limited log of refused requests: one line per interval, the rest counted in the next."""

from __future__ import annotations

import logging

import pytest

from webhook.log_limit import RateLimitedLog


def test_one_line_per_interval_with_the_suppressed_count(caplog: pytest.LogCaptureFixture) -> None:
    now = [100.0]
    limited = RateLimitedLog(logging.getLogger("test.limit"), 60.0, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="test.limit"):
        assert limited.warning("refused %s", "a")
        assert [limited.warning("refused %s", "b") for _ in range(999)] == [False] * 999
        now[0] += 59.9
        assert not limited.warning("refused %s", "c")
        now[0] += 0.2
        assert limited.warning("refused %s", "d")
    assert [r.getMessage() for r in caplog.records] == [
        "refused a",
        "refused d (1000 more like it since the last such line)",
    ]
