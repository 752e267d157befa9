"""Models page: registered versions with their validation metrics and promotion decisions,
"retrain now" through the job queue, rollback to a chosen version, the retrain jobs."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from slo_pipeline.core.redact import redact_credentials
from slo_pipeline.settings import Settings
from streamlit_app import charts, models
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
    st.subheader("Registered versions", anchor=False)
    st.caption(
        "`champion` is what the exporters serve; `previous` is the champion it replaced. A rejected "
        "candidate stays registered but never serves."
    )
    with show_errors(f"The MLflow registry at {redact_credentials(settings.mlflow_tracking_uri)}"):
        _versions(settings, detector, who)
    st.subheader("Retrain jobs", anchor=False)
    if who.can_edit:
        st.button(
            f"Retrain {detector} now",
            key=f"retrain_{detector}",
            on_click=run_action,
            args=("Queueing a retrain", _retrain, settings.database_url, detector, who),
            help="Queues a job for the worker, as an alert would; the worker validates the new model "
            "against the SLO before it may serve.",
        )
    with show_errors("The retrain job history"):
        _jobs(settings.database_url, detector)


def _versions(settings: Settings, detector: str, who: Identity) -> None:
    versions = models.list_versions(settings, detector)
    if not versions:
        st.info(f"No registered versions of {detector!r} yet: the first training registers one.")
        return
    st.dataframe(models.version_rows(versions), hide_index=True)
    metrics = models.metric_rows(
        versions, models.run_metrics(settings, [v.get("run_id") or "" for v in versions])
    )
    if metrics:
        st.markdown("**Validation metrics across versions** (colour: the promotion decision)")
        frame = pd.DataFrame(metrics)
        st.altair_chart(charts.metric_by_version(frame, list(models.PLOTTED_METRICS.values())))
    targets = models.rollback_targets(versions)
    if not targets:
        st.caption("Rollback is not possible: there is no other version.")
        return
    if who.can_edit:
        _rollback(settings, detector, versions, targets, who)
    else:
        st.info(f"You are signed in as {who.role}: only editors can roll back.")


def _rollback(
    settings: Settings, detector: str, versions: list[dict[str, object]], targets: list[str], who: Identity
) -> None:
    st.markdown("**Rollback**")
    target = st.selectbox(
        "Make this version the champion", targets, key=f"rollback_target_{detector}", help="`previous` first"
    )
    plan = models.rollback_plan(detector, versions, target)
    if plan is None:
        return
    confirmed = st.checkbox(
        f"I understand that every exporter switches {plan.detector} from version "
        f"{plan.current or 'none'} to version {plan.target} on its next cycle.",
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
        return f"{plan.detector}: version {promoted.version} is the champion now."

    run_action("Rollback", action)
    # Unticked after use so a second click needs a second, deliberate confirmation.
    st.session_state[f"rollback_confirm_{plan.detector}"] = False


def _retrain(database_url: str, detector: str, who: Identity) -> str:
    require_editor(who, "Retraining")
    job = models.queue_retrain(database_url, detector, who.name)
    if job is None:
        return f"A retrain of {detector} is already queued or running; its result will show below."
    return f"Retrain job {job} for {detector} queued; the worker picks it up within its poll interval."


def _jobs(database_url: str, detector: str) -> None:
    jobs = models.retrain_jobs(database_url, detector)
    if not jobs:
        st.info(f"No retrain jobs for {detector!r} yet.")
        return
    st.dataframe(jobs, hide_index=True)
