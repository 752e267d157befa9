"""Model versions (MLflow registry), retrain jobs (PostgreSQL) and rollback, shaped for tables.

The registry calls go through `slo_pipeline.adapters.registry` so the UI moves aliases exactly the way the
worker does; this module only reshapes its answers and adds who-did-it tags on rollback.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

from slo_pipeline.adapters import registry
from slo_pipeline.settings import Settings
from streamlit_app import pg

DECISION_TAG = "slo_pipeline.decision"
REASONS_TAG = "slo_pipeline.reasons"
COMPARED_WITH_TAG = "slo_pipeline.compared_with"
ROLLBACK_BY_TAG = "slo_pipeline.rollback_by"
ROLLBACK_AT_TAG = "slo_pipeline.rollback_at"
ROLLBACK_FROM_TAG = "slo_pipeline.rollback_from"


@dataclass(frozen=True)
class RollbackPlan:
    """What one click on "roll back" would do: champion -> previous."""

    detector: str
    current: str | None  # champion version now (None: the detector has no champion)
    target: str  # the @previous version that becomes champion


def version_rows(versions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`registry.list_versions` output flattened into one row per version for a table."""
    rows = []
    for version in versions:
        tags = version.get("tags") or {}
        created_ms = version.get("created_at_ms")
        rows.append(
            {
                "version": str(version["version"]),
                "aliases": ", ".join(version.get("aliases") or []),
                "decision": tags.get(DECISION_TAG, ""),
                "reasons": tags.get(REASONS_TAG, ""),
                "compared_with": tags.get(COMPARED_WITH_TAG, ""),
                "rolled_back_by": tags.get(ROLLBACK_BY_TAG, ""),
                "created_at": _from_ms(created_ms),
                "run_id": version.get("run_id") or "",
            }
        )
    return rows


def rollback_plan(
    detector: str, versions: list[dict[str, Any]], target: str | None = None
) -> RollbackPlan | None:
    """Champion -> `target` (default: the `@previous` version); None when there is no target."""
    current = previous = None
    for version in versions:
        aliases = version.get("aliases") or []
        if registry.CHAMPION in aliases:
            current = str(version["version"])
        if registry.PREVIOUS in aliases:
            previous = str(version["version"])
    target = target or previous
    if target is None or target == current:
        return None
    return RollbackPlan(detector=detector, current=current, target=target)


def rollback_targets(versions: list[dict[str, Any]]) -> list[str]:
    """Versions that could become the champion, `@previous` first, then newest first."""
    candidates = [str(v["version"]) for v in versions if registry.CHAMPION not in (v.get("aliases") or [])]
    previous = [str(v["version"]) for v in versions if registry.PREVIOUS in (v.get("aliases") or [])]
    return previous + [c for c in candidates if c not in previous]


# Validation metrics worth plotting across versions (MLflow run metrics the worker logs).
PLOTTED_METRICS = {
    "candidate_false_alarms": "alarms on held-out data",
    "validation_allowed_false_alarms": "allowed held-out alarms",
    "slo_candidate_breaches_caught": "SLO breaches caught",
    "slo_candidate_pages_missed": "SLO pages missed",
    "slo_candidate_median_lead_seconds": "median lead before page (s)",
    "slo_candidate_healthy_alarms": "alarms while the SLO was healthy",
}


def run_metrics(settings: Settings, run_ids: list[str]) -> dict[str, dict[str, float]]:
    """run id -> its logged metrics; runs MLflow no longer has are left out."""
    from mlflow import MlflowClient

    client = MlflowClient(
        tracking_uri=settings.mlflow_tracking_uri, registry_uri=settings.mlflow_tracking_uri
    )
    found: dict[str, dict[str, float]] = {}
    for run_id in run_ids:
        if not run_id:
            continue
        try:
            found[run_id] = dict(client.get_run(run_id).data.metrics)
        except Exception as err:  # one lost run must not hide the others' metrics
            if "RESOURCE_DOES_NOT_EXIST" not in str(err) and "not found" not in str(err).lower():
                raise registry.RegistryError(f"could not read run {run_id}: {err}") from err
    return found


def metric_rows(versions: list[dict[str, Any]], metrics: dict[str, dict[str, float]]) -> list[dict[str, Any]]:
    """Long `version`, `metric`, `value`, `decision` rows for the plotted metrics."""
    rows = []
    for version in versions:
        logged = metrics.get(version.get("run_id") or "", {})
        decision = (version.get("tags") or {}).get(DECISION_TAG, "") or "no decision"
        for key, label in PLOTTED_METRICS.items():
            if key in logged:
                rows.append(
                    {
                        "version": str(version["version"]),
                        "version_number": int(version["version"]),
                        "metric": label,
                        "value": float(logged[key]),
                        "decision": decision,
                    }
                )
    return rows


def queue_retrain(database_url: str, detector: str, by: str) -> int | None:
    """Queue a retrain job as the webhook does; None when one is already queued or running."""
    rows = pg.fetch_all(
        database_url,
        """
        INSERT INTO retrain_jobs (detector, reason) VALUES (%s, %s)
        ON CONFLICT (detector) WHERE status IN ('queued', 'running') DO NOTHING
        RETURNING id
        """,
        [detector, f"requested in the UI by {by}"],
    )
    return int(rows[0]["id"]) if rows else None


def list_versions(settings: Settings, detector: str) -> list[dict[str, Any]]:
    """Raw registry rows (newest first); raises `registry.RegistryError` when MLflow fails."""
    return registry.list_versions(settings, detector)


def rollback(settings: Settings, plan: RollbackPlan, by: str) -> registry.ModelRef:
    """Make the version the operator confirmed (`plan.target`) the champion, tagged with who did
    it and when, if the champion is still the one they saw (`plan.current`).

    Compare-and-set under the detector's promotion lock: a training that promoted meanwhile, or a
    second rollback, makes this one fail with `registry.ChampionMoved` instead of silently
    undoing it. The tags are written after the aliases moved.
    """
    by = by.strip()
    if not by:
        raise ValueError("say who you are: a rollback changes what every exporter serves")
    return registry.rollback(
        settings,
        plan.detector,
        to_version=plan.target,
        expected_champion=plan.current,
        tags={
            ROLLBACK_BY_TAG: by,
            ROLLBACK_AT_TAG: dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            ROLLBACK_FROM_TAG: plan.current or "none",
        },
    )


def format_reasons(reasons: Any) -> str:
    """`decision_reasons` is JSONB: usually a list of sentences, but show anything readable."""
    if reasons is None:
        return ""
    if isinstance(reasons, list):
        return "; ".join(str(reason) for reason in reasons)
    if isinstance(reasons, str):
        return reasons
    return json.dumps(reasons, sort_keys=True)


def retrain_jobs(database_url: str, detector: str, limit: int = 50) -> list[dict[str, Any]]:
    """The detector's most recent retrain jobs, newest first; what operators read first, first."""
    rows = pg.fetch_all(
        database_url,
        """
        SELECT id, status, decision, decision_reasons, error, model_version, created_at, finished_at,
               reason, attempts, worker_id, started_at, run_id, incident_id
          FROM retrain_jobs
         WHERE detector = %s
         ORDER BY created_at DESC, id DESC
         LIMIT %s
        """,
        [detector, max(1, int(limit))],
    )
    for row in rows:
        row["decision_reasons"] = format_reasons(row["decision_reasons"])
    return rows


def _from_ms(value: Any) -> dt.datetime | None:
    if value is None:
        return None
    return dt.datetime.fromtimestamp(int(value) / 1000, tz=dt.UTC)
