"""SLOs page: every SLO with its live budget and burn (sparklines), one SLO in detail (Pyrra-style
charts), its compliance per month from the history in PostgreSQL, an audited edit, and the
revision trail."""

from __future__ import annotations

import time
from typing import Any

import pandas as pd
import streamlit as st

from slo_pipeline.adapters.prometheus import PrometheusQueryError
from slo_pipeline.adapters.prometheus_connection import redact_url
from slo_pipeline.settings import Settings
from slo_pipeline.slo.burnrate import TIERS
from slo_pipeline.slo.report import report_text
from slo_pipeline.slo.spec import SLO
from streamlit_app import charts, incidents, slo_checks, slo_reports, slo_series, slos
from streamlit_app.identity import Identity, require_editor
from streamlit_app.ui_common import run_action, show_errors, show_flashes

RANGES = {"6 hours": 6 * 3600, "1 day": 86400, "7 days": 7 * 86400, "the period": None}


def render(settings: Settings, who: Identity) -> None:
    st.header("SLOs")
    st.caption(
        "Budget and burn rates come from Prometheus (the SLO recording rules); a tier's burn is the "
        "smaller of its two windows' burn rates, the number its alert compares with the factor. "
        "Every change is recorded in `slo_revisions` with who made it, when, why, and the old and "
        "new values; Prometheus evaluates a saved edit within about "
        f"{settings.slo_sync_interval_seconds:g} s where `slo-pipeline rules sync` runs."
    )
    show_flashes()
    with show_errors("The SLO store"):
        _render(settings, who)


def _render(settings: Settings, who: Identity) -> None:
    stored = {slo.name: slo for slo in slos.load_slos(settings.database_url)}
    if not stored:
        st.info("No SLOs are stored yet. Load a spec file with `slo-pipeline slo apply -f FILE`.")
        return
    _overview(settings, list(stored.values()))
    name = st.selectbox("SLO", list(stored), key="slo_name")
    if name is None:
        return
    slo = stored[name]
    st.subheader(name, anchor=False)
    with show_errors(f"Prometheus at {redact_url(settings.prometheus_url)}"):
        _detail_charts(settings, slo)
    st.subheader(f"Compliance per month: {name}", anchor=False)
    with show_errors("The SLO history in PostgreSQL"):
        _compliance(settings, slo)
    st.subheader(f"Edit {name}", anchor=False)
    if who.can_edit:
        _edit_form(settings, slo, who)
    else:
        st.info(f"You are signed in as {who.role}: only editors can change SLOs.")
    st.subheader(f"History of {name}", anchor=False)
    _history(settings, slo, who)


def _overview(settings: Settings, stored: list[SLO]) -> None:
    try:
        overview = slo_series.fetch_overview(settings.prometheus)
    except PrometheusQueryError as err:
        st.error(f"Prometheus at {redact_url(settings.prometheus_url)} is unavailable: {err}")
        overview = slo_series.Overview(budget_remaining={}, tier_burn={t.burn_tier: {} for t in TIERS})
    rows = slo_series.overview_rows(stored, overview)
    config: dict[str, Any] = {
        "budget left %": st.column_config.NumberColumn(format="%.1f %%"),
        "budget (24 h)": st.column_config.AreaChartColumn(width="small"),
    }
    for tier in TIERS:
        config[f"{tier.burn_tier} (24 h)"] = st.column_config.LineChartColumn(width="small", y_min=0)
        config[f"{tier.burn_tier} factor"] = st.column_config.NumberColumn(width="small", format="%g")
    st.dataframe(rows, hide_index=True, column_config=config, key="slo_overview")


def _detail_charts(settings: Settings, slo: SLO) -> None:
    choice = st.radio("Range", list(RANGES), index=1, horizontal=True, key=f"slo_range_{slo.name}")
    seconds = RANGES.get(choice or "1 day") or slo.period_days * 86400
    end = time.time()
    detail = slo_series.fetch_detail(settings.prometheus, slo, end - seconds, end)
    if detail.budget_remaining.empty and detail.error_ratio.empty:
        st.warning(
            f"Prometheus has no recording-rule data for {slo.name!r} in this range: are its rules "
            "loaded (`slo-pipeline rules sync` / `rules render`)?"
        )
        return
    domain = (pd.Timestamp(end - seconds, unit="s", tz="UTC"), pd.Timestamp(end, unit="s", tz="UTC"))
    spans = incidents.slo_incident_spans(settings.database_url, slo.name, *domain)
    alerts = pd.concat(
        [detail.alerts, pd.DataFrame(spans, columns=["start", "end", "name"])], ignore_index=True
    )
    left, right = st.columns(2)
    with left:
        st.markdown("**Error budget burn-down**")
        st.altair_chart(charts.budget_burndown(detail.budget_remaining, alerts, domain), width="stretch")
    with right:
        st.markdown("**Error ratio against the objective**")
        st.altair_chart(
            charts.error_ratio(detail.error_ratio, float(slo.error_budget_ratio), alerts, domain),
            width="stretch",
        )
    st.markdown(
        "**Burn rate per window pair against its alert factor** (shaded: alerts that fired and incidents)"
    )
    factors = {f"{t.burn_tier} {t.short}/{t.long}": float(t.factor(slo.period_days)) for t in TIERS}
    burn = detail.tier_burn.assign(
        tier=detail.tier_burn["tier"].map({t.burn_tier: f"{t.burn_tier} {t.short}/{t.long}" for t in TIERS})
    )
    st.altair_chart(charts.burn_rates(burn, factors, alerts, domain), width="stretch")
    if not alerts.empty:
        st.dataframe(alerts, hide_index=True)


def _compliance(settings: Settings, slo: SLO) -> None:
    months = slo_reports.months_with_history(settings.database_url, slo.name)
    interval = settings.slo_history_interval_seconds
    if not months:
        st.info(
            f"PostgreSQL holds no history of {slo.name!r} yet. `slo-pipeline worker` stores a snapshot "
            f"of every SLO every {interval:g} s (SLO_PIPELINE_SLO_HISTORY_INTERVAL), reaching back 14 days "
            "on its first pass; the monthly reports appear here once it has run."
        )
        return
    reports = slo_reports.load_period_reports(settings.database_url, slo.name, time.time())
    by_period = {r.period: r for r in reports}
    shown = sorted({reports[0].period, *months}, reverse=True)
    period = st.selectbox("Period", shown, key=f"slo_report_period_{slo.name}") or shown[0]
    report = by_period.get(period) or slo_reports.load_period_report(
        settings.database_url, slo.name, period, time.time()
    )
    if not report.snapshots:
        st.info(f"No snapshots of {slo.name!r} are stored for {period} yet.")
    else:
        a, b, c, d = st.columns(4)
        a.metric("Compliance", "n/a" if report.compliance is None else f"{100 * report.compliance:.3f}%")
        b.metric(
            "Budget left (month)",
            "n/a" if report.budget_remaining is None else f"{100 * report.budget_remaining:.1f}%",
        )
        c.metric("Pages / tickets", f"{report.pages} / {report.tickets}")
        d.metric(
            "Data",
            f"{report.coverage:.0%}",
            help=f"{report.recorded_snapshots} of the {report.expected_snapshots} scheduled snapshots "
            "so far had data (a stopped worker or Prometheus holding nothing lowers it)",
        )
    rows = slo_reports.period_rows(reports)
    left, right = st.columns([1, 2])
    with left:
        st.markdown("**Budget left per month** (red: objective missed)")
        st.altair_chart(slo_reports.budget_bars(rows), width="stretch")
    with right:
        st.markdown("**This month and the five before**")
        narrow = st.column_config.NumberColumn(width="small")
        st.dataframe(
            rows,
            hide_index=True,
            key=f"slo_report_periods_{slo.name}",
            column_config={c: narrow for c in ("objective %", "pages", "tickets", "breaches", "data %")},
        )
    if report.snapshots:
        breaches = slo_reports.breach_rows(report)
        if not breaches.empty:
            st.markdown(f"**Breach periods in {period}** with their incidents")
            st.dataframe(breaches, hide_index=True, key=f"slo_report_breaches_{slo.name}")
        st.code(report_text(report, slo.block.time_period), language=None)


def _edit_form(settings: Settings, slo: SLO, who: Identity) -> None:
    budget = slos.budget_minutes(slo.block.objective, slo.period_days)
    st.caption(
        f"Now: {slo.block.objective:g}% over {slo.block.time_period}, an error budget of "
        f"{budget:,.1f} minutes of full outage per period. Saving validates the spec like "
        "`slo apply -f` and runs each query through promtool and against Prometheus first."
    )
    low, high = slos.PERIOD_RANGE_DAYS
    key = slo.name
    with st.form(key=f"slo-edit-{key}"):
        left, middle, right = st.columns(3)
        left.number_input(
            "Objective (%)",
            min_value=0.001,
            max_value=100.0,
            value=float(slo.block.objective),
            step=0.01,
            format="%.3f",
            key=f"slo_objective_{key}",
        )
        periods = slos.period_choices(slo.block.time_period)
        middle.selectbox(
            f"Time period ({low}d to {high}d)",
            periods,
            index=periods.index(slo.block.time_period),
            key=f"slo_period_{key}",
        )
        right.number_input(
            "Min events per window",
            min_value=0,
            value=int(slo.block.min_events),
            step=10,
            key=f"slo_min_events_{key}",
            help="A window with fewer events records no ratio, so a handful of requests cannot page.",
        )
        sli = slo.block.sli
        if sli.events is not None:
            st.text_area("Error query", value=sli.events.error_query, key=f"slo_error_query_{key}")
            st.text_area("Total query", value=sli.events.total_query, key=f"slo_total_query_{key}")
        elif sli.raw is not None:
            st.text_area("Error ratio query", value=sli.raw.error_ratio_query, key=f"slo_ratio_query_{key}")
        detectors = sorted({*(d.name for d in settings.pipeline.detectors), *slo.block.detectors})
        st.multiselect("Detectors", detectors, default=list(slo.block.detectors), key=f"slo_detectors_{key}")
        st.text_area(
            "Alert labels (key=value per line)",
            value=slos.format_labels(slo.block.alerting.labels),
            key=f"slo_alert_labels_{key}",
        )
        st.text_input("Description", value=slo.block.description, key=f"slo_description_{key}")
        st.text_area("Why (change note)", key=f"slo_note_{key}")
        # `slo` is the version the operator is looking at; saving refuses if it changed meanwhile.
        st.form_submit_button(
            "Save change",
            on_click=run_action,
            args=("Saving the SLO", _save, settings, slo, who),
        )


def _save(settings: Settings, slo: SLO, who: Identity) -> str:
    require_editor(who, "Changing an SLO")
    state = st.session_state
    key = slo.name
    edit = slos.SLOEdit(
        objective=float(state[f"slo_objective_{key}"]),
        time_period=str(state[f"slo_period_{key}"]),
        min_events=int(state[f"slo_min_events_{key}"]),
        description=str(state.get(f"slo_description_{key}") or ""),
        detectors=tuple(state.get(f"slo_detectors_{key}") or ()),
        alert_labels=slos.parse_labels(str(state.get(f"slo_alert_labels_{key}") or "")),
        error_query=state.get(f"slo_error_query_{key}"),
        total_query=state.get(f"slo_total_query_{key}"),
        error_ratio_query=state.get(f"slo_ratio_query_{key}"),
    )
    changed = slos.save_edit(
        settings.database_url,
        slo,
        edit,
        changed_by=who.name,
        change_note=state.get(f"slo_note_{key}") or "",
        check=slo_checks.query_checker(settings.prometheus),
    )
    if not changed:
        return f"{slo.name}: nothing changed, so no revision was recorded."
    return f"{slo.name} saved: {edit.objective:g}% over {edit.time_period}."


def _history(settings: Settings, slo: SLO, who: Identity) -> None:
    history = slos.revision_rows(settings.database_url, slo.name)
    if not history:
        st.info("No revisions recorded.")
        return
    shown = ["revision", "changed_at", "changed_by", "change", "note"]
    st.dataframe([{k: row[k] for k in shown} for row in history], hide_index=True)
    by_number = {row["revision"]: row for row in history}
    number = st.selectbox(
        "Revision", list(by_number), key=f"slo_revision_{slo.name}", format_func=lambda n: f"revision {n}"
    )
    if number is None:
        return
    row = by_number[number]
    st.code(slos.spec_diff(row["old_spec"], row["new_spec"]) or "(no change)", language="diff")
    if not who.can_edit or row["new_spec"] is None or number == history[0]["revision"]:
        return  # nothing to revert to: deleted, or the SLO is as in this revision already
    with st.form(key=f"slo-revert-{slo.name}-{number}"):
        st.text_input("Why revert", key=f"slo_revert_note_{slo.name}")
        st.form_submit_button(
            f"Revert {slo.name} to revision {number}",
            on_click=run_action,
            args=("Reverting the SLO", _revert, settings, slo, row, who),
        )


def _revert(settings: Settings, slo: SLO, row: dict[str, Any], who: Identity) -> str:
    require_editor(who, "Reverting an SLO")
    reason = str(st.session_state.get(f"slo_revert_note_{slo.name}") or "").strip()
    target = slos.revision_slo(row["new_spec"], slo.name)
    changed = slos.save_slo(
        settings.database_url,
        slo,
        target,
        who.name,
        f"revert to revision {row['revision']}" + (f": {reason}" if reason else ""),
        check=slo_checks.query_checker(settings.prometheus),
    )
    if not changed:
        return f"{slo.name} already is as in revision {row['revision']}: nothing recorded."
    return f"{slo.name} reverted to revision {row['revision']}."
