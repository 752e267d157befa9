import os
import signal
import threading

from slo_pipeline.adapters.stop_signals import stop_on_signals


def test_a_signal_inside_the_block_only_sets_the_event_and_handlers_come_back() -> None:
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    with stop_on_signals() as stop:
        assert not stop.is_set()
        os.kill(os.getpid(), signal.SIGTERM)  # would end the test run without the handler
        assert stop.wait(5)
    assert {sig: signal.getsignal(sig) for sig in before} == before


def test_an_existing_event_is_the_one_set() -> None:
    mine = threading.Event()
    with stop_on_signals(mine) as stop:
        assert stop is mine
        os.kill(os.getpid(), signal.SIGINT)
        assert mine.wait(5)
