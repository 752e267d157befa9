"""Within one scope (a UI page view), a service that did not answer is not asked again.

A page makes several calls to the same service; with the service black-holed (it accepts
connections but never answers) each call would wait out its own timeout and the page would take
their sum. Inside `remembering_outages()`, the first failure to reach a service is noted and every
later call to it in the same scope fails at once with that first reason. Outside a scope (the
exporter, the worker, the CLIs) nothing is remembered, and a new scope asks every service afresh,
so a service that came back is used at the next page view.

The memory lives in a context variable: Streamlit runs each session's script in its own thread,
so sessions never see each other's outages.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_NOTED: ContextVar[dict[str, str] | None] = ContextVar("slo_pipeline_outages", default=None)


@contextmanager
def remembering_outages() -> Iterator[None]:
    """Remember the services that did not answer until the block ends."""
    token = _NOTED.set({})
    try:
        yield
    finally:
        _NOTED.reset(token)


def earlier_outage(service: str) -> str | None:
    """Why `service` did not answer earlier in this scope; None if it did or was not asked."""
    noted = _NOTED.get()
    return None if noted is None else noted.get(service)


def note_outage(service: str, reason: str) -> None:
    """`service` (e.g. a base URL or a DSN description) did not answer; no-op outside a scope."""
    noted = _NOTED.get()
    if noted is not None:
        noted.setdefault(service, reason)


def not_asked_again(reason: str) -> str:
    """The message of a call that was skipped because of an earlier failure."""
    return f"not asked again: it did not answer earlier on this page ({reason})"
