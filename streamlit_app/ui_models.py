"""Models page: registered versions and their promotion decisions, retrain jobs, rollback."""

from __future__ import annotations

import streamlit as st

from slo_pipeline.core.redact import redact_credentials
from slo_pipeline.settings import Settings
from streamlit_app import models
from streamlit_app.identity import Identity, require_editor
from streamlit_app.ui_common import run_action, show_errors, show_flashes


def render(settings: Settings, who: Identity) -> None:
    st.header("Models")
    detectors = [d.name for d in settings.pipeline.detectors]
    if not detectors:
        st.info(f"No detectors are configured in {settings.config_path} (set SLO_PIPELINE_CONFIG).")
        return
    show_flashes()
    detector = st.selectbox("Detector", detectors, key="models_detector")
    if detector is None:
        return
    st.subheader("Registered versions")
    st.caption(
        "`champion` is what the exporters serve; `previous` is the champion it replaced, kept for a "
        "one-click rollback. A rejected candidate stays registered but never serves."
    )
    with show_errors(f"The MLflow registry at {redact_credentials(settings.mlflow_tracking_uri)}"):
        _versions(settings, detector, who)
    st.subheader("Retrain jobs")
    with show_errors("The retrain job history"):
        _jobs(settings.database_url, detector)


def _versions(settings: Settings, detector: str, who: Identity) -> None:
    versions = models.list_versions(settings, detector)
    if not versions:
        st.info(f"No registered versions of {detector!r} yet: the first training registers one.")
        return
    st.dataframe(models.version_rows(versions), hide_index=True)
    plan = models.rollback_plan(detector, versions)
    if plan is None:
        st.caption("Rollback is not possible: no version carries the `previous` alias.")
        return
    if who.can_edit:
        _rollback(settings, plan, who)
    else:
        st.info(f"You are signed in as {who.role}: only editors can roll back.")


def _rollback(settings: Settings, plan: models.RollbackPlan, who: Identity) -> None:
    st.markdown(
        f"**Rollback**: make version **{plan.target}** the champion again "
        f"(version {plan.current or 'none'} becomes `previous`)."
    )
    confirmed = st.checkbox(
        f"I understand that every exporter switches {plan.detector} to version {plan.target} "
        "on its next cycle.",
        key=f"rollback_confirm_{plan.detector}",
    )
    st.button(
        f"Roll back {plan.detector} to version {plan.target}",
        type="primary",
        disabled=not confirmed,
        key=f"rollback_{plan.detector}",
        on_click=_do_rollback,
        args=(settings, plan, who),
    )


def _do_rollback(settings: Settings, plan: models.RollbackPlan, who: Identity) -> None:
    def action() -> str:
        require_editor(who, "Rollback")
        promoted = models.rollback(settings, plan, who.name)
        return f"{plan.detector}: version {promoted.version} is the champion again."

    run_action("Rollback", action)
    # Unticked after use so a second click needs a second, deliberate confirmation.
    st.session_state[f"rollback_confirm_{plan.detector}"] = False


def _jobs(database_url: str, detector: str) -> None:
    jobs = models.retrain_jobs(database_url, detector)
    if not jobs:
        st.info(f"No retrain jobs for {detector!r} yet.")
        return
    st.dataframe(jobs, hide_index=True)
