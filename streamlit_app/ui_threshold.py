"""Threshold page: replay a proposed false-alarm budget over recent history, see what it would
have caught, and apply it (audited) for the exporter and validation."""

from __future__ import annotations

from dataclasses import asdict

import numpy as np
import pandas as pd
import streamlit as st

from slo_pipeline.adapters.prometheus_connection import redact_url
from slo_pipeline.core.alert_sim import AlertRule
from slo_pipeline.core.rule_timing import RuleTiming, anomaly_alert_rule
from slo_pipeline.settings import DetectorConfig, Settings
from streamlit_app import budgets, charts, incidents, threshold
from streamlit_app.identity import Identity, require_editor
from streamlit_app.ui_common import run_action, show_errors, show_flashes

PAGE_LEAD_WINDOW_SECONDS = 3600.0


def render(settings: Settings, who: Identity) -> None:
    st.header("Threshold")
    st.caption(
        f"Replays the `{threshold.TAIL_PROBABILITY_METRIC}` history the exporter published through "
        "the shipped anomaly alert rule (its `for:` and `keep_firing_for:`) with another false-alarm "
        "budget. The pipeline YAML holds each detector's default budget; **Apply** stores an "
        "override in PostgreSQL (audited), which the exporter and validation use within a minute, "
        "without a restart."
    )
    show_flashes()
    detectors = {d.name: d for d in settings.pipeline.detectors}
    if not detectors:
        st.info(f"No detectors are configured in {settings.config_path} (set SLO_PIPELINE_CONFIG).")
        return
    name = st.selectbox("Detector", list(detectors), key="preview_detector")
    if name is None:
        return
    detector = detectors[name]
    override = None
    with show_errors("The budget store"):
        override = budgets.override(settings.database_url, name)
    current = override if override is not None else detector.false_alarms_per_week
    st.markdown(
        f"**Budget now: {current:g} false alarms per series per week** "
        + (
            f"(override in PostgreSQL; the YAML says {detector.false_alarms_per_week:g})"
            if override is not None
            else "(from the pipeline YAML; no override)"
        )
    )
    with st.form("threshold_preview"):
        left, right = st.columns(2)
        proposed = left.number_input(
            "Proposed budget (false alarms per series per week)",
            min_value=0.01,
            max_value=10_000.0,
            value=float(current),
            key="preview_budget",
        )
        days = right.slider("History (days)", min_value=1, max_value=14, value=7, key="preview_days")
        submitted = st.form_submit_button("Preview")
    if submitted:
        st.session_state["preview_shown"] = (name, float(proposed), int(days))
    shown = st.session_state.get("preview_shown")
    if shown and shown[0] == name:
        with show_errors(f"Prometheus at {redact_url(settings.prometheus_url)}"):
            _preview(settings, detector, current, shown[1], shown[2])
        _apply(settings, detector, shown[1], who)
    with show_errors("The budget history"):
        history = budgets.revisions(settings.database_url, name)
        if history:
            st.markdown("**Budget changes**")
            st.dataframe(history, hide_index=True)


def _preview(
    settings: Settings, detector: DetectorConfig, current: float, proposed: float, days: int
) -> None:
    block = threshold.fetch_tail_probabilities(settings, detector, days)
    if block.n_series == 0:
        st.warning(
            f"No `{threshold.TAIL_PROBABILITY_METRIC}` history for {detector.name!r} in the last "
            f"{days} days: is the exporter running and scraped by this Prometheus?"
        )
        return
    budgets_shown = threshold.budgets_to_show(current, proposed)
    rule = anomaly_alert_rule(detector.step_seconds, RuleTiming.from_settings(settings))
    rows = threshold.preview(block.values, detector, budgets_shown, rule)
    chosen = next(r for r in rows if r.false_alarms_per_week == float(proposed))
    now_row = next(r for r in rows if r.false_alarms_per_week == float(current))
    left, right = st.columns(2)
    left.metric(
        f"Alarms at the proposed {proposed:g}/week", chosen.alarms, delta=chosen.alarms - now_row.alarms
    )
    right.metric(f"Alarms at the current {current:g}/week", now_row.alarms)

    times = pd.to_datetime(block.timestamps, unit="s", utc=True)
    score = threshold.max_score(block.values, detector, current)
    frame = pd.DataFrame({"time": times, "series": "highest score across series", "value": score}).dropna()
    line = threshold.proposed_score_line(detector, current, proposed)
    st.markdown(
        f"**Anomaly score with both thresholds**: current at 1, proposed at {line:.3g} on the same scale"
    )
    st.altair_chart(charts.score_with_two_thresholds(frame, 1.0, line), width="stretch")

    st.markdown("**Alarms per week against the budget** (replayed over this history)")
    curve = pd.DataFrame(threshold.budget_curve(block.values, detector, rule))
    st.altair_chart(charts.alarms_per_week(curve, current, proposed), width="stretch")

    _catches(settings, detector, block.timestamps, block.values, current, proposed, rule)
    with st.expander("All budgets compared"):
        st.dataframe([asdict(row) for row in rows], hide_index=True)
    st.caption(f"{block.n_series} series, {len(block.timestamps)} steps of {detector.step_seconds} s.")


def _catches(
    settings: Settings,
    detector: DetectorConfig,
    timestamps: np.ndarray,
    values: np.ndarray,
    current: float,
    proposed: float,
    rule: AlertRule,
) -> None:
    start = pd.Timestamp(timestamps[0], unit="s", tz="UTC")
    end = pd.Timestamp(timestamps[-1], unit="s", tz="UTC")
    known = incidents.known_incidents(settings.database_url, detector.name, detector.slo, start, end)
    st.markdown("**Known incidents: would each budget have caught them, and how early?**")
    if not known:
        st.caption("No incidents of this detector or SLO pages of its SLO in this history.")
        return
    firing = {b: threshold.firing_any(values, detector, b, rule) for b in (current, proposed)}
    pages = [i for i in known if i["severity"] == "page"]
    rows = []
    for incident in known:
        s, e = incident["starts_at"].timestamp(), incident["ends_at"].timestamp()
        page = next(
            (
                p["starts_at"].timestamp()
                for p in pages
                if s - PAGE_LEAD_WINDOW_SECONDS <= p["starts_at"].timestamp() <= e + PAGE_LEAD_WINDOW_SECONDS
            ),
            None,
        )
        row = {"incident": f"#{incident['id']} {incident['alertname']}", "starts_at": incident["starts_at"]}
        for label, budget in (("current", current), ("proposed", proposed)):
            result = threshold.catch(timestamps, firing[budget], s, e, page, PAGE_LEAD_WINDOW_SECONDS)
            row[f"caught at {label} ({budget:g})"] = "yes" if result.caught else "no"
            row[f"minutes before the SLO page ({label})"] = (
                None if result.lead_seconds is None else round(result.lead_seconds / 60, 1)
            )
        rows.append(row)
    st.dataframe(rows, hide_index=True)
    st.caption(
        "Caught: an alarm fired from an hour before the incident until its end. Minutes before the "
        "SLO page: positive when the anomaly alarm came first; empty when the SLO did not page."
    )


def _apply(settings: Settings, detector: DetectorConfig, proposed: float, who: Identity) -> None:
    if not who.can_edit:
        st.info(f"You are signed in as {who.role}: only editors can apply a budget.")
        return
    with st.form(f"threshold_apply_{detector.name}"):
        st.text_area("Why (stored with the change)", key=f"apply_reason_{detector.name}")
        st.form_submit_button(
            f"Apply {proposed:g} false alarms per week to {detector.name}",
            type="primary",
            on_click=run_action,
            args=("Applying the budget", _do_apply, settings.database_url, detector.name, proposed, who),
        )


def _do_apply(database_url: str, detector: str, proposed: float, who: Identity) -> str:
    require_editor(who, "Applying a budget")
    reason = st.session_state.get(f"apply_reason_{detector}") or ""
    budgets.apply(database_url, detector, proposed, reason, who.name)
    return (
        f"{detector}: budget {proposed:g} false alarms per series per week applied; the exporter and "
        "validation use it within a minute."
    )
