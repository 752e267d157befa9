"""Incidents page: filter, inspect, and give feedback that steers the next training."""

from __future__ import annotations

from typing import Any

import streamlit as st

from slo_pipeline.settings import Settings
from streamlit_app import incidents
from streamlit_app.ui_common import run_action, show_errors, show_flashes

ANY = "(any)"
VERDICT_LABELS = {
    incidents.TRUE_POSITIVE: "True positive (a real problem)",
    incidents.FALSE_POSITIVE: "False positive (nothing was wrong)",
}
TABLE_COLUMNS = [
    "id",
    "alertname",
    "status",
    "feedback",
    "detector",
    "driver",
    "slo",
    "severity",
    "starts_at",
    "ends_at",
    "feedback_by",
]


def render(settings: Settings) -> None:
    st.header("Incidents")
    st.caption(
        "Feedback decides what the next retraining learns from: incidents marked **true positive** "
        "are **excluded** from the training data; incidents nobody has reviewed yet stay in it (they "
        "may be a new normal) but are not held against a candidate model; incidents marked **false "
        "positive** are **normal behaviour**, so the model learns to stop alarming on them."
    )
    show_flashes()
    with show_errors("The incident list"):
        _render(settings.database_url)


def _render(database_url: str) -> None:
    choices = incidents.filter_choices(database_url)
    filters = _filters(choices)
    rows = incidents.list_incidents(database_url, filters)
    if not rows:
        st.info("No incidents match these filters.")
        return
    st.dataframe([{c: row[c] for c in TABLE_COLUMNS} for row in rows], hide_index=True)
    by_id = {row["id"]: row for row in rows}
    incident_id = st.selectbox(
        "Incident",
        list(by_id),
        format_func=lambda i: _describe(by_id[i]),
        key="incident_id",
    )
    if incident_id is None:
        return
    incident = incidents.get_incident(database_url, incident_id)
    if incident is None:
        st.warning(f"Incident {incident_id} no longer exists.")
        return
    _details(incident)
    _feedback(database_url, incident)


def _filters(choices: dict[str, list[str]]) -> incidents.IncidentFilter:
    status_col, detector_col, slo_col, feedback_col, limit_col = st.columns([1, 2, 2, 2, 1])
    status = status_col.selectbox("Status", [ANY, *incidents.STATUSES], key="filter_status")
    detector = detector_col.selectbox("Detector", [ANY, *choices["detector"]], key="filter_detector")
    slo = slo_col.selectbox("SLO", [ANY, *choices["slo"]], key="filter_slo")
    feedback = feedback_col.selectbox(
        "Feedback", [ANY, incidents.UNREVIEWED, *incidents.VERDICTS], key="filter_feedback"
    )
    limit = limit_col.number_input(
        "Show", min_value=10, max_value=5000, value=200, step=50, key="incident_limit"
    )
    return incidents.IncidentFilter(
        status=_none_if_any(status),
        detector=_none_if_any(detector),
        slo=_none_if_any(slo),
        feedback=_none_if_any(feedback),
        limit=int(limit),
    )


def _none_if_any(value: str | None) -> str | None:
    return None if value in (None, ANY) else value


def _describe(row: dict[str, Any]) -> str:
    started = row["starts_at"].strftime("%Y-%m-%d %H:%M UTC") if row["starts_at"] else "?"
    return f"#{row['id']} {row['alertname']} ({row['status']}, {row['detector'] or 'no detector'}, {started})"


def _details(incident: dict[str, Any]) -> None:
    st.subheader(f"#{incident['id']} {incident['alertname']}")
    cols = st.columns(4)
    cols[0].markdown(f"**Status**  \n{incident['status']}")
    cols[1].markdown(f"**Starts**  \n{_timestamp(incident['starts_at'])}")
    ends = _timestamp(incident["ends_at"]) if incident["ends_at"] else "still firing"
    cols[2].markdown(f"**Ends**  \n{ends}")
    cols[3].markdown(f"**Severity**  \n{incident['severity'] or '-'}")
    # Shown as code; a backtick inside the (opaque) name would end the code span early.
    driver = f"`{incident['driver'].replace('`', chr(39))}`" if incident["driver"] else incidents.NO_DRIVER
    st.markdown(f"**Driver**  \n{driver}", help=incidents.DRIVER_HELP)
    left, right = st.columns(2)
    with left:
        st.markdown("**Labels**")
        st.json(incident["labels"], expanded=True)
    with right:
        st.markdown("**Annotations**")
        st.json(incident["annotations"], expanded=True)
    if incident["generator_url"]:
        st.markdown(f"[Open the alert's expression in Prometheus]({incident['generator_url']})")


def _timestamp(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S %Z") if value else "-"


def _feedback(database_url: str, incident: dict[str, Any]) -> None:
    incident_id = incident["id"]
    st.markdown("**Operator feedback**")
    verdict = incident["feedback"]
    if verdict:
        st.write(
            f"Marked **{VERDICT_LABELS[verdict]}** by {incident['feedback_by']} "
            f"at {_timestamp(incident['feedback_at'])}"
            + (f": {incident['feedback_note']}" if incident["feedback_note"] else "")
        )
        st.button(
            "Clear feedback",
            key=f"clear-{incident_id}",
            on_click=run_action,
            args=("Clearing feedback", _clear, database_url, incident_id),
        )
    st.caption(f"Right now this incident is {incidents.TRAINING_EFFECT[verdict]}.")
    with st.form(key=f"feedback-form-{incident_id}"):
        st.radio(
            "Verdict",
            incidents.VERDICTS,
            index=incidents.VERDICTS.index(verdict) if verdict else None,
            format_func=VERDICT_LABELS.__getitem__,
            key=f"verdict-{incident_id}",
        )
        st.text_input("Your name", key=f"by-{incident_id}", max_chars=incidents.MAX_NAME_CHARS)
        st.text_area("Note (optional)", key=f"note-{incident_id}", max_chars=incidents.MAX_NOTE_CHARS)
        st.caption(
            f"True positive: {incidents.TRAINING_EFFECT[incidents.TRUE_POSITIVE]}. "
            f"False positive: {incidents.TRAINING_EFFECT[incidents.FALSE_POSITIVE]}."
        )
        # The callback runs before the next run draws the page, so the table above already
        # shows the stored verdict after a submit.
        st.form_submit_button(
            "Save feedback",
            on_click=run_action,
            args=("Saving feedback", _save, database_url, incident_id),
        )


def _save(database_url: str, incident_id: int) -> str:
    state = st.session_state
    feedback = incidents.validate_feedback(
        state.get(f"verdict-{incident_id}"),
        state.get(f"by-{incident_id}") or "",
        state.get(f"note-{incident_id}") or "",
    )
    if not incidents.record_feedback(database_url, incident_id, feedback):
        raise ValueError(f"incident {incident_id} no longer exists")
    return (
        f"Incident #{incident_id} marked {VERDICT_LABELS[feedback.verdict]}: "
        f"it is now {incidents.TRAINING_EFFECT[feedback.verdict]}."
    )


def _clear(database_url: str, incident_id: int) -> str:
    if not incidents.clear_feedback(database_url, incident_id):
        raise ValueError(f"incident {incident_id} no longer exists")
    return f"Feedback on incident #{incident_id} cleared: it is {incidents.TRAINING_EFFECT[None]}."
