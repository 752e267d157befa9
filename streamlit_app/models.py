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


def rollback_plan(detector: str, versions: list[dict[str, Any]]) -> RollbackPlan | None:
    """None when there is no `@previous` version to go back to."""
    current = target = None
    for version in versions:
        aliases = version.get("aliases") or []
        if registry.CHAMPION in aliases:
            current = str(version["version"])
        if registry.PREVIOUS in aliases:
            target = str(version["version"])
    if target is None:
        return None
    return RollbackPlan(detector=detector, current=current, target=target)


def list_versions(settings: Settings, detector: str) -> list[dict[str, Any]]:
    """Raw registry rows (newest first); raises `registry.RegistryError` when MLflow fails."""
    return registry.list_versions(settings, detector)


def rollback(settings: Settings, plan: RollbackPlan, by: str) -> registry.ModelRef:
    """Swap @champion and @previous, then tag the new champion with who did it and when.

    The alias swap is the action and happens first; the tags are the audit note on top, so a
    tagging failure is reported but cannot leave the aliases half-moved.
    """
    by = by.strip()
    if not by:
        raise ValueError("say who you are: a rollback changes what every exporter serves")
    promoted = registry.rollback(settings, plan.detector)
    registry.tag_version(
        settings,
        plan.detector,
        promoted.version,
        {
            ROLLBACK_BY_TAG: by,
            ROLLBACK_AT_TAG: dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            ROLLBACK_FROM_TAG: plan.current or "none",
        },
    )
    return promoted


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
