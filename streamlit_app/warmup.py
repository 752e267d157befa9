"""Import the page modules in the background once the sign-in form is on screen.

The pages pull in pandas, Altair, MLflow and scikit-learn: seconds on a cold server. The sign-in
form needs none of them, so they are imported while the operator types (Python's import lock
makes a page that asks for a module meanwhile simply wait for it), and the first page after
signing in does not pay for them.
"""

from __future__ import annotations

import importlib
import logging
import threading
import time
from collections.abc import Iterable

log = logging.getLogger(__name__)
_lock = threading.Lock()
_started = False


def import_in_background(modules: Iterable[str]) -> None:
    """Start one daemon thread importing `modules`, the first time only (per server process)."""
    global _started
    with _lock:
        if _started:
            return
        _started = True
    names = list(modules)
    threading.Thread(target=_import_all, args=(names,), name="page-warmup", daemon=True).start()


# Let the browser draw the form first: on a busy machine the imports compete with it for CPU.
START_DELAY_SECONDS = 1.0


def _import_all(names: list[str]) -> None:
    time.sleep(START_DELAY_SECONDS)
    for name in names:
        try:
            importlib.import_module(name)
        except Exception:  # the page itself will show the error when it is opened
            log.exception("could not import %s in the background", name)
