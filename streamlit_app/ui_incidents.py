"""Incidents page: filter, inspect, and give feedback that steers the next training."""

from __future__ import annotations

import time
from typing import Any

import streamlit as st

from slo_pipeline.adapters.prometheus_connection import redact_url
from slo_pipeline.settings import Settings
from streamlit_app import charts, incident_series, incidents
from streamlit_app.identity import Identity, require_editor
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


def render(settings: Settings, who: Identity) -> None:
    st.header("Incidents")
    st.caption(
        "Feedback decides what the next retraining learns from: incidents marked **true positive** "
        "are **excluded** from the training data; incidents nobody has reviewed yet stay in it (they "
        "may be a new normal) but are not held against a candidate model; incidents marked **false "
        "positive** are **normal behaviour**, so the model learns to stop alarming on them."
    )
    show_flashes()
    with show_errors("The incident list"):
        _render(settings, who)


def _render(settings: Settings, who: Identity) -> None:
    database_url = settings.database_url
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
    with show_errors(f"Prometheus at {redact_url(settings.prometheus_url)}"):
        _charts(settings, incident)
    _feedback(database_url, incident, who)


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
    # Alert names, notes and URLs come from alert rules and people: shown as text, never Markdown.
    st.subheader(f"#{incident['id']}", anchor=False)
    st.text(incident["alertname"])
    cols = st.columns(4)
    _field(cols[0], "Status", incident["status"])
    _field(cols[1], "Starts", _timestamp(incident["starts_at"]))
    _field(cols[2], "Ends", _timestamp(incident["ends_at"]) if incident["ends_at"] else "still firing")
    _field(cols[3], "Severity", incident["severity"] or "-")
    st.caption("Driver", help=incidents.DRIVER_HELP)
    if incident["driver"]:
        st.code(incident["driver"], language=None)
    else:
        st.text(incidents.NO_DRIVER)
    left, right = st.columns(2)
    with left:
        st.caption("Labels")
        st.json(incident["labels"], expanded=True)
    with right:
        st.caption("Annotations")
        st.json(incident["annotations"], expanded=True)
    url = incident["generator_url"] or ""
    if url.startswith(("http://", "https://")):
        st.link_button("Open the alert's expression in Prometheus", url)


def _charts(settings: Settings, incident: dict[str, Any]) -> None:
    name = incident["detector"]
    detector = next((d for d in settings.pipeline.detectors if d.name == name), None)
    if detector is None:
        st.caption(
            "No charts: the incident names no configured detector."
            if not name
            else f"No charts: detector {name!r} is not in the pipeline configuration."
        )
        return
    series = incident_series.fetch_incident_series(settings.prometheus, incident, detector, time.time())
    st.markdown("**Anomaly score** (shaded: the incident; dashed: the alert threshold, score 1)")
    if series.score.empty:
        st.caption("Prometheus holds no anomaly score of this series around the incident.")
    else:
        st.altair_chart(charts.score_with_threshold(series.score, 1.0, series.span), width="stretch")
    left, right = st.columns(2)
    with left:
        st.markdown(f"**Driving SLI: {series.sli_title}**")
        if series.sli.empty:
            st.caption("No data for this SLI around the incident.")
        else:
            st.altair_chart(charts.lines(series.sli, series.sli_title, series.span), width="stretch")
    with right:
        st.markdown("**SLO burn rate**")
        if series.slo_burn.empty:
            st.caption("No SLO burn recorded around the incident (no SLO, or its rules are not loaded).")
        else:
            st.altair_chart(
                charts.lines(series.slo_burn, "burn rate (x budget)", series.span), width="stretch"
            )


def _field(column: Any, label: str, value: str) -> None:
    column.caption(label)
    column.text(value)


def _timestamp(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S %Z") if value else "-"


def _feedback(database_url: str, incident: dict[str, Any], who: Identity) -> None:
    incident_id = incident["id"]
    st.markdown("**Operator feedback**")
    verdict = incident["feedback"]
    if verdict:
        st.text(
            f"Marked {VERDICT_LABELS[verdict]} by {incident['feedback_by']} "
            f"at {_timestamp(incident['feedback_at'])}"
            + (f": {incident['feedback_note']}" if incident["feedback_note"] else "")
        )
    st.caption(f"Right now this incident is {incidents.TRAINING_EFFECT[verdict]}.")
    if not who.can_edit:
        st.info(f"You are signed in as {who.role}: only editors can give feedback.")
    else:
        st.text_area("Note (optional)", key=f"note-{incident_id}", max_chars=incidents.MAX_NOTE_CHARS)
        buttons = st.columns(3)
        for column, choice in zip(buttons, incidents.VERDICTS, strict=False):
            column.button(
                f"Mark {VERDICT_LABELS[choice].split(' (')[0].lower()}",
                key=f"mark-{choice}-{incident_id}",
                type="primary" if choice == incidents.FALSE_POSITIVE else "secondary",
                on_click=run_action,
                args=("Saving feedback", _save, database_url, incident_id, choice, who),
            )
        if verdict:
            buttons[2].button(
                "Clear feedback",
                key=f"clear-{incident_id}",
                on_click=run_action,
                args=("Clearing feedback", _clear, database_url, incident_id, who),
            )
        st.caption(
            f"True positive: {incidents.TRAINING_EFFECT[incidents.TRUE_POSITIVE]}. "
            f"False positive: {incidents.TRAINING_EFFECT[incidents.FALSE_POSITIVE]}."
        )
    history = incidents.feedback_history(database_url, incident_id)
    if history:
        st.caption("Feedback history (every change, including cleared verdicts)")
        st.dataframe(history, hide_index=True)


def _save(database_url: str, incident_id: int, verdict: str, who: Identity) -> str:
    require_editor(who, "Feedback")
    feedback = incidents.validate_feedback(verdict, st.session_state.get(f"note-{incident_id}") or "")
    if not incidents.record_feedback(database_url, incident_id, feedback, who.name):
        raise ValueError(f"incident {incident_id} no longer exists")
    return (
        f"Incident #{incident_id} marked {VERDICT_LABELS[feedback.verdict]}: "
        f"it is now {incidents.TRAINING_EFFECT[feedback.verdict]}."
    )


def _clear(database_url: str, incident_id: int, who: Identity) -> str:
    require_editor(who, "Clearing feedback")
    if not incidents.clear_feedback(database_url, incident_id, who.name):
        raise ValueError(f"incident {incident_id} no longer exists")
    return f"Feedback on incident #{incident_id} cleared: it is {incidents.TRAINING_EFFECT[None]}."
