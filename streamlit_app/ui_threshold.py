"""Threshold preview page: replay a false-alarm budget over the exporter's recent output."""

from __future__ import annotations

from dataclasses import asdict

import streamlit as st

from slo_pipeline.adapters.prometheus_connection import redact_url
from slo_pipeline.core.rule_timing import RuleTiming, anomaly_alert_rule
from slo_pipeline.settings import Settings
from streamlit_app import threshold
from streamlit_app.identity import Identity
from streamlit_app.ui_common import show_errors


def render(settings: Settings, who: Identity) -> None:
    st.header("Threshold preview")
    st.caption(
        f"Replays the `{threshold.TAIL_PROBABILITY_METRIC}` history the exporter published through "
        "the shipped anomaly alert rule (its `for:` and `keep_firing_for:`) with another false-alarm "
        "budget. It counts every alarm, real incidents included; change the budget in the pipeline "
        "YAML (`false_alarms_per_week`) once you have picked one."
    )
    detectors = {d.name: d for d in settings.pipeline.detectors}
    if not detectors:
        st.info(f"No detectors are configured in {settings.config_path} (set SLO_PIPELINE_CONFIG).")
        return
    with st.form("threshold_preview"):
        name = st.selectbox("Detector", list(detectors), key="preview_detector")
        proposed = st.number_input(
            "False alarms per week (per series)",
            min_value=0.01,
            max_value=10_000.0,
            value=1.0,
            key="preview_budget",
        )
        days = st.slider("History (days)", min_value=1, max_value=14, value=7, key="preview_days")
        submitted = st.form_submit_button("Preview")
    if not submitted or name is None:
        return
    detector = detectors[name]
    with show_errors(f"Prometheus at {redact_url(settings.prometheus_url)}"):
        block = threshold.fetch_tail_probabilities(settings, detector, days)
        if block.n_series == 0:
            st.warning(
                f"No `{threshold.TAIL_PROBABILITY_METRIC}` history for {name!r} in the last {days} days: "
                "is the exporter running and scraped by this Prometheus?"
            )
            return
        budgets = threshold.budgets_to_show(detector.false_alarms_per_week, proposed)
        rule = anomaly_alert_rule(detector.step_seconds, RuleTiming.from_settings(settings))
        rows = threshold.preview(block.values, detector, budgets, rule)
        chosen = next(r for r in rows if r.false_alarms_per_week == float(proposed))
        current = next(r for r in rows if r.false_alarms_per_week == float(detector.false_alarms_per_week))
        left, right = st.columns(2)
        left.metric(f"Alarms at {proposed:g}/week", chosen.alarms, delta=chosen.alarms - current.alarms)
        right.metric(f"Alarms at the configured {detector.false_alarms_per_week:g}/week", current.alarms)
        st.dataframe([asdict(row) for row in rows], hide_index=True)
        st.caption(f"{block.n_series} series, {len(block.timestamps)} steps of {detector.step_seconds} s.")
