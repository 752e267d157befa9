"""False-alarm budget overrides (`detector_budgets`): the UI's "Apply", audited by trigger.

The pipeline YAML holds each detector's default budget; an override here wins for the exporter
and validation until it is removed. Both values are shown side by side on the threshold page.
"""

from __future__ import annotations

from typing import Any

from streamlit_app import pg

MAX_REASON_CHARS = 2000


def validate(budget: float, reason: str) -> tuple[float, str]:
    budget = float(budget)
    if not 0 < budget <= 10_000:
        raise ValueError(f"a false-alarm budget must be in (0, 10000] per week, got {budget:g}")
    reason = reason.strip()
    if not reason:
        raise ValueError("say why: the reason is stored with the budget's revision")
    if len(reason) > MAX_REASON_CHARS:
        raise ValueError(f"the reason is longer than {MAX_REASON_CHARS} characters")
    return budget, reason


def override(database_url: str, detector: str) -> float | None:
    rows = pg.fetch_all(
        database_url, "SELECT false_alarms_per_week FROM detector_budgets WHERE detector = %s", [detector]
    )
    return float(rows[0]["false_alarms_per_week"]) if rows else None


def apply(database_url: str, detector: str, budget: float, reason: str, by: str) -> None:
    budget, reason = validate(budget, reason)
    pg.execute_as(
        database_url,
        by,
        """
        INSERT INTO detector_budgets (detector, false_alarms_per_week, updated_by, reason)
        VALUES (%s, %s, %s, %s)
        ON CONFLICT (detector) DO UPDATE
           SET false_alarms_per_week = EXCLUDED.false_alarms_per_week,
               updated_by = EXCLUDED.updated_by, reason = EXCLUDED.reason, updated_at = now()
        """,
        [detector, budget, by, reason],
    )


def remove(database_url: str, detector: str, reason: str, by: str) -> bool:
    """Back to the YAML budget; the revision records who and why."""
    reason = reason.strip()
    if not reason:
        raise ValueError("say why: the reason is stored with the budget's revision")
    with pg.connection(database_url) as conn, conn, conn.cursor() as cur:
        cur.execute(
            "SELECT set_config('slo_pipeline.changed_by', %s, true), "
            "set_config('slo_pipeline.change_note', %s, true)",
            [by, reason],
        )
        cur.execute("DELETE FROM detector_budgets WHERE detector = %s", [detector])
        return cur.rowcount == 1


def revisions(database_url: str, detector: str) -> list[dict[str, Any]]:
    return pg.fetch_all(
        database_url,
        """
        SELECT revision, changed_at, changed_by, old_budget, new_budget, reason
          FROM detector_budget_revisions
         WHERE detector = %s
         ORDER BY revision DESC
        """,
        [detector],
    )
