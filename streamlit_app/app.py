"""Operator UI entry script: `streamlit run streamlit_app/app.py`.

Thin on purpose: it loads the settings, signs the operator in, picks a page and lets the page
modules do the rest. Streamlit executes this file as `__main__` on every rerun (so does
`AppTest.from_file`); the guard below keeps a plain `import streamlit_app.app` free of side effects.
"""

from __future__ import annotations

import importlib
import os

import streamlit as st

from slo_pipeline.adapters import outages
from slo_pipeline.settings import ConfigError, Settings, load_settings
from streamlit_app import pg, ui_signin, warmup
from streamlit_app.identity import Identity
from streamlit_app.ui_common import show_errors

# Page modules (each with `render(settings, who)`) are imported when first shown: the sign-in
# form must not wait for pandas, Altair, MLflow and scikit-learn (seconds on a cold server).
PAGES: dict[str, str] = {
    "Incidents": "streamlit_app.ui_incidents",
    "Models": "streamlit_app.ui_models",
    "SLOs": "streamlit_app.ui_slos",
    "Threshold": "streamlit_app.ui_threshold",
}


@st.cache_data(ttl=30, show_spinner=False)
def _database_reachable(database_url: str) -> bool:
    # Cached briefly: a rerun per click must not open a connection just for the sidebar.
    return pg.reachable(database_url)


def main() -> None:
    st.set_page_config(page_title="slo-pipeline", layout="wide")
    # An operator waits on the page: a dead MLflow server must fail in seconds, not after
    # MLflow's default retries with back-off (minutes). Explicit settings still win.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "3")
    try:
        # Read on every run (cheap): an edited YAML or environment shows up without a restart.
        settings = load_settings()
    except (ConfigError, ValueError) as err:
        # pydantic's ValidationError is a ValueError: a bad environment variable lands here too.
        st.error(f"The configuration cannot be used: {err}")
        return
    # One page view waits on a dead service once: later calls to it fail at once (adapters/outages.py).
    with outages.remembering_outages():
        _show(settings)


def _show(settings: Settings) -> None:
    who: Identity | None = None
    with show_errors("Sign-in"):
        who = ui_signin.signed_in(settings)
    # The sign-in form is drawn: import the pages while the operator types.
    warmup.import_in_background(PAGES.values())
    if who is None:
        return
    page = st.sidebar.radio("Page", list(PAGES), key="page") or "Incidents"
    ui_signin.sidebar(who)
    # Only whether it answers: the database's user, host and name are no business of a viewer.
    st.sidebar.caption(
        "Database: reachable" if _database_reachable(settings.database_url) else "Database: unreachable"
    )
    # Pages guard their own service calls; this catches whatever slips past them.
    with show_errors(f"The {page} page"):
        importlib.import_module(PAGES[page]).render(settings, who)


if __name__ == "__main__":
    main()
