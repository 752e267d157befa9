"""tests/fixtures/waiting.py: the one polling helper returns the awaited value or says what it saw."""

from __future__ import annotations

import itertools

import pytest

from tests.fixtures.waiting import wait_until


def test_returns_the_first_truthy_value() -> None:
    answers = iter([None, 0, "", {"ready": True}])
    assert wait_until(lambda: next(answers), timeout=5, interval=0.001, describe="x") == {"ready": True}


def test_until_decides_instead_of_truthiness() -> None:
    counter = itertools.count()
    assert (
        wait_until(lambda: next(counter), timeout=5, interval=0.001, describe="3", until=lambda n: n >= 3)
        == 3
    )


def test_a_timeout_names_what_was_awaited_and_the_last_value_seen() -> None:
    counter = itertools.count()
    with pytest.raises(
        AssertionError, match=r"(?s)waiting for the counter to go negative.*last observed: \d+"
    ):
        wait_until(
            lambda: next(counter),
            timeout=0.05,
            interval=0.001,
            describe="the counter to go negative",
            until=lambda n: n < 0,
        )


def test_listed_exceptions_are_retried_and_shown_others_propagate() -> None:
    def refused() -> None:
        raise ConnectionRefusedError("nobody listens")

    with pytest.raises(AssertionError, match="last observed: ConnectionRefusedError: nobody listens"):
        wait_until(refused, timeout=0.02, interval=0.001, describe="a listener", ignoring=(OSError,))
    with pytest.raises(ConnectionRefusedError):
        wait_until(refused, timeout=5, interval=0.001, describe="a listener", ignoring=(KeyError,))


def test_a_dead_process_ends_the_wait_at_once_with_its_detail() -> None:
    probes = []

    def probe() -> bool:
        probes.append(1)
        return False

    with pytest.raises(AssertionError, match=r"(?s)the process exited.*last observed: False\nlog tail"):
        wait_until(probe, timeout=60, describe="x", still_alive=lambda: False, detail=lambda: "log tail")
    assert len(probes) == 1


def test_nonsense_timeouts_are_refused() -> None:
    with pytest.raises(ValueError, match="must be > 0"):
        wait_until(lambda: True, timeout=0, describe="x")
