"""DebouncedReloader: at most one reload per interval, and the last request is never dropped.

The reload itself is a real HTTP POST, tested against a real Prometheus in
tests/integration/test_slo_reload.py; here the scheduling is checked with a recording callback.
"""

from __future__ import annotations

import threading
import time

import pytest

from slo_pipeline.slo.render import DebouncedReloader, ReloadError


class Recorder:
    def __init__(self, fail: bool = False) -> None:
        self.times: list[float] = []
        self.fail = fail
        self.lock = threading.Lock()

    def __call__(self, url: str, timeout: float) -> None:
        with self.lock:
            self.times.append(time.monotonic())
        if self.fail:
            raise ReloadError(f"{url} said no")


def test_first_request_reloads_at_once_and_a_burst_becomes_one_trailing_reload() -> None:
    # The reloader decides by its clock (held still here, then moved on by hand); only the
    # trailing reload's timer runs in real time, for the rest of the interval.
    now = [1000.0]
    recorder = Recorder()
    reloader = DebouncedReloader(
        "http://prometheus", min_interval_seconds=0.3, post=recorder, clock=lambda: now[0]
    )
    start = time.monotonic()
    assert reloader.request() is True
    assert len(recorder.times) == 1
    assert [reloader.request() for _ in range(5)] == [False] * 5  # coalesced
    assert len(recorder.times) == 1
    reloader.flush()
    assert len(recorder.times) == 2 and reloader.reload_count == 2
    # A lower bound only (a timer never fires early; a busy machine only makes it later).
    assert recorder.times[1] - start >= 0.3  # not before the interval ended
    now[0] += 0.25
    assert reloader.request() is False  # within the interval since the trailing reload
    reloader.flush()
    assert reloader.reload_count == 3
    now[0] += 0.5
    assert reloader.request() is True  # the interval since the last reload has passed


def test_a_failed_trailing_reload_is_raised_by_flush() -> None:
    recorder = Recorder()
    reloader = DebouncedReloader("http://prometheus", min_interval_seconds=0.1, post=recorder)
    reloader.request()
    recorder.fail = True
    reloader.request()
    with pytest.raises(ReloadError, match="said no"):
        reloader.flush()
    reloader.flush()  # reported once


def test_an_immediate_failure_is_raised_by_request() -> None:
    reloader = DebouncedReloader("http://prometheus", min_interval_seconds=1, post=Recorder(fail=True))
    with pytest.raises(ReloadError):
        reloader.request()


def test_negative_interval_is_refused() -> None:
    with pytest.raises(ValueError, match="min_interval_seconds must be >= 0"):
        DebouncedReloader("http://prometheus", min_interval_seconds=-1)
