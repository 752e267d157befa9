"""SLOs page: the stored SLOs, an audited edit of objective and time period, the revision trail."""

from __future__ import annotations

import streamlit as st

from slo_pipeline.settings import Settings
from slo_pipeline.slo.spec import SLO
from streamlit_app import slos
from streamlit_app.identity import Identity, require_editor
from streamlit_app.ui_common import run_action, show_errors, show_flashes


def render(settings: Settings, who: Identity) -> None:
    st.header("SLOs")
    st.caption(
        "Every change is recorded in `slo_revisions` with who made it, when, why, and the old and new "
        f"values. Prometheus evaluates a saved edit within about {settings.slo_sync_interval_seconds:g} s "
        "where `slo-pipeline rules sync` runs (docker-compose's `slo-sync` service, `make demo`); "
        "without it, run `slo-pipeline rules render --reload`."
    )
    show_flashes()
    with show_errors("The SLO store"):
        _render(settings.database_url, who)


def _render(database_url: str, who: Identity) -> None:
    stored = {slo.name: slo for slo in slos.load_slos(database_url)}
    if not stored:
        st.info("No SLOs are stored yet. Load a spec file with `slo-pipeline slo apply -f FILE`.")
        return
    st.dataframe(slos.slo_rows(list(stored.values())), hide_index=True)
    name = st.selectbox("SLO", list(stored), key="slo_name")
    if name is None:
        return
    slo = stored[name]
    st.subheader(f"Edit {name}")
    if who.can_edit:
        _edit_form(database_url, slo, who)
    else:
        st.info(f"You are signed in as {who.role}: only editors can change SLOs.")
    st.subheader(f"History of {name}")
    history = slos.revision_rows(database_url, name)
    if history:
        st.dataframe(history, hide_index=True)
    else:
        st.info("No revisions recorded.")


def _edit_form(database_url: str, slo: SLO, who: Identity) -> None:
    budget = slos.budget_minutes(slo.block.objective, slo.period_days)
    st.caption(
        f"Now: {slo.block.objective:g}% over {slo.block.time_period}, an error budget of "
        f"{budget:,.1f} minutes of full outage per period."
    )
    low, high = slos.PERIOD_RANGE_DAYS
    with st.form(key=f"slo-edit-{slo.name}"):
        left, right = st.columns(2)
        left.number_input(
            "Objective (%)",
            min_value=0.001,
            max_value=100.0,
            value=float(slo.block.objective),
            step=0.01,
            format="%.3f",
            key=f"slo_objective_{slo.name}",
        )
        periods = slos.period_choices(slo.block.time_period)
        right.selectbox(
            f"Time period ({low}d to {high}d)",
            periods,
            index=periods.index(slo.block.time_period),
            key=f"slo_period_{slo.name}",
        )
        st.text_area("Why (change note)", key=f"slo_note_{slo.name}")
        # `slo` is the version the operator is looking at; saving refuses if it changed meanwhile.
        st.form_submit_button(
            "Save change",
            on_click=run_action,
            args=("Saving the SLO", _save, database_url, slo, who),
        )


def _save(database_url: str, slo: SLO, who: Identity) -> str:
    require_editor(who, "Changing an SLO")
    state = st.session_state
    edit = slos.SLOEdit(
        objective=float(state[f"slo_objective_{slo.name}"]),
        time_period=str(state[f"slo_period_{slo.name}"]),
    )
    changed = slos.save_edit(
        database_url,
        slo,
        edit,
        changed_by=who.name,
        change_note=state.get(f"slo_note_{slo.name}") or "",
    )
    if not changed:
        return f"{slo.name}: nothing changed, so no revision was recorded."
    return f"{slo.name} saved: {edit.objective:g}% over {edit.time_period}."
