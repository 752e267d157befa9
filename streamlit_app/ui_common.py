"""Pieces every page uses: turning service failures into readable messages, flash messages."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import streamlit as st

from slo_pipeline.adapters.postgres import DatabaseError
from slo_pipeline.adapters.prometheus_connection import PrometheusQueryError  # not numpy
from slo_pipeline.adapters.registry_errors import RegistryError
from slo_pipeline.core.redact import redact_credentials
from streamlit_app.identity import NotAllowedError

log = logging.getLogger(__name__)

# Failures of the services the UI talks to: their messages already name the target and the cause.
SERVICE_ERRORS: tuple[type[Exception], ...] = (DatabaseError, RegistryError, PrometheusQueryError)
_FLASH_KEY = "_flash_messages"


@contextmanager
def show_errors(what: str) -> Iterator[None]:
    """Render a failure inside the block as an error box instead of Streamlit's traceback.

    `what` says which part of the page failed, so one unreachable service (say MLflow) leaves the
    rest of the page (say the retrain jobs from PostgreSQL) usable.
    """
    try:
        yield
    except SERVICE_ERRORS as err:
        st.error(f"{what} is unavailable: {redact_credentials(str(err))}")
    except Exception as err:
        # A bug, not an outage: the operator gets one line, the log gets the traceback.
        log.exception("unexpected error while showing %s", what)
        st.error(f"{what} failed unexpectedly ({type(err).__name__}): {redact_credentials(str(err))}")


def flash(kind: str, message: str) -> None:
    """Queue a message for the next run: callbacks run before the page is drawn."""
    st.session_state.setdefault(_FLASH_KEY, []).append((kind, message))


def show_flashes() -> None:
    for kind, message in st.session_state.pop(_FLASH_KEY, []):
        {"success": st.success, "error": st.error, "warning": st.warning}.get(kind, st.info)(message)


def run_action(action_name: str, action: Callable[..., str], *args: object) -> None:
    """Call `action(*args)` from a widget callback; its outcome becomes a flash message."""
    try:
        message = action(*args)
    except (ValueError, NotAllowedError) as err:
        flash("error", f"{action_name}: {err}")
    except SERVICE_ERRORS as err:
        flash("error", f"{action_name} failed: {err}")
    except Exception as err:
        log.exception("unexpected error in %s", action_name)
        flash("error", f"{action_name} failed unexpectedly ({type(err).__name__}): {err}")
    else:
        flash("success", str(message))
