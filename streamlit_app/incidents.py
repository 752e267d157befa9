"""Incidents: listing with filters, one incident's details, and operators' feedback.

Feedback is what the next training reads (`slo_pipeline.adapters.incident_history`): an incident marked
true positive is cut out of the training data so the model never learns an outage as normal; an
unreviewed one stays in it (after a change it may be the new normal a retrain must learn) but is
not counted as a false alarm when a candidate is validated; one marked false positive is normal
behaviour for both.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from streamlit_app import pg

TRUE_POSITIVE = "true_positive"
FALSE_POSITIVE = "false_positive"
VERDICTS = (TRUE_POSITIVE, FALSE_POSITIVE)
STATUSES = ("firing", "resolved")
# Filter value for "nobody has reviewed it yet".
UNREVIEWED = "unreviewed"
MAX_NOTE_CHARS = 2000

TRAINING_EFFECT = {
    TRUE_POSITIVE: "excluded from the next training data (a real incident is not normal behaviour)",
    FALSE_POSITIVE: "kept in the next training data as normal behaviour (the model should learn it)",
    None: "kept in the next training data (it may be a new normal), not counted against validation",
}

_COLUMNS = """
    id, alertname, status, detector, slo, severity, driver, starts_at, ends_at, fingerprint,
    feedback, feedback_by, feedback_at, feedback_note
"""
# Shown next to an incident's driver: what the name means and what an empty one means.
DRIVER_HELP = (
    "The feature that contributed most to the anomaly score when the alert started (largest robust "
    "z-score), as the exporter published it in `anomaly_driver_info`. `signal:feature` names the SLI "
    "of a multivariate detector."
)
NO_DRIVER = "not recorded (not a per-series anomaly, or Prometheus could not tell when it was stored)"


@dataclass(frozen=True)
class IncidentFilter:
    """What the incidents table is narrowed to; None means "any"."""

    status: str | None = None
    detector: str | None = None
    slo: str | None = None
    feedback: str | None = None  # one of VERDICTS, UNREVIEWED or None
    limit: int = 200


@dataclass(frozen=True)
class Feedback:
    """A validated operator verdict, ready to store (the author is the signed-in user)."""

    verdict: str
    note: str


def validate_feedback(verdict: str | None, note: str) -> Feedback:
    """Trim and check a verdict; raises ValueError with a message fit for the operator."""
    if verdict is None:
        raise ValueError("choose true positive or false positive")
    if verdict not in VERDICTS:
        raise ValueError(f"feedback must be one of {', '.join(VERDICTS)}, got {verdict!r}")
    note = note.strip()
    if len(note) > MAX_NOTE_CHARS:
        raise ValueError(f"the note is longer than {MAX_NOTE_CHARS} characters")
    return Feedback(verdict=verdict, note=note)


def where_clause(filters: IncidentFilter) -> tuple[str, list[Any]]:
    """SQL `WHERE …` (or "") and its parameters for `filters`; values are always parameters."""
    conditions: list[str] = []
    params: list[Any] = []
    for column in ("status", "detector", "slo"):
        value = getattr(filters, column)
        if value is not None:
            conditions.append(f"{column} = %s")
            params.append(value)
    if filters.feedback == UNREVIEWED:
        conditions.append("feedback IS NULL")
    elif filters.feedback is not None:
        conditions.append("feedback = %s")
        params.append(filters.feedback)
    return ("WHERE " + " AND ".join(conditions)) if conditions else "", params


def list_incidents(database_url: str, filters: IncidentFilter = IncidentFilter()) -> list[dict[str, Any]]:
    """Most recent first (by start), at most `filters.limit` rows."""
    where, params = where_clause(filters)
    query = f"SELECT {_COLUMNS} FROM incidents {where} ORDER BY starts_at DESC, id DESC LIMIT %s"
    return pg.fetch_all(database_url, query, [*params, max(1, int(filters.limit))])


def filter_choices(database_url: str) -> dict[str, list[str]]:
    """Detector and SLO names that occur in incidents, for the filter drop-downs."""
    rows = pg.fetch_all(
        database_url,
        """
        SELECT 'detector' AS kind, detector AS name FROM incidents WHERE detector IS NOT NULL
        UNION
        SELECT 'slo', slo FROM incidents WHERE slo IS NOT NULL
        ORDER BY 1, 2
        """,
    )
    choices: dict[str, list[str]] = {"detector": [], "slo": []}
    for row in rows:
        choices[row["kind"]].append(row["name"])
    return choices


def get_incident(database_url: str, incident_id: int) -> dict[str, Any] | None:
    rows = pg.fetch_all(
        database_url,
        f"SELECT {_COLUMNS}, labels, annotations, generator_url, created_at, updated_at "
        "FROM incidents WHERE id = %s",
        [incident_id],
    )
    return rows[0] if rows else None


def record_feedback(database_url: str, incident_id: int, feedback: Feedback, by: str) -> bool:
    """Store a verdict (replacing an earlier one); False when the incident does not exist.

    The `incident_feedback_events` trigger records the change with `by` as its author.
    """
    touched = pg.execute_as(
        database_url,
        by,
        """
        UPDATE incidents
           SET feedback = %s, feedback_by = %s, feedback_note = %s, feedback_at = now()
         WHERE id = %s
        """,
        [feedback.verdict, by, feedback.note or None, incident_id],
    )
    return touched == 1


def clear_feedback(database_url: str, incident_id: int, by: str) -> bool:
    """Withdraw a verdict given by mistake; the incident counts as unreviewed again.

    The row forgets the verdict; `incident_feedback_events` keeps what was cleared and by whom.
    """
    touched = pg.execute_as(
        database_url,
        by,
        """
        UPDATE incidents
           SET feedback = NULL, feedback_by = NULL, feedback_note = NULL, feedback_at = NULL
         WHERE id = %s
        """,
        [incident_id],
    )
    return touched == 1


def feedback_history(database_url: str, incident_id: int) -> list[dict[str, Any]]:
    """Every verdict change of the incident, newest first (set, replaced, cleared)."""
    return pg.fetch_all(
        database_url,
        """
        SELECT changed_at, changed_by, old_feedback, new_feedback, new_feedback_note AS note,
               old_feedback_by, old_feedback_note
          FROM incident_feedback_events
         WHERE incident_id = %s
         ORDER BY changed_at DESC, id DESC
        """,
        [incident_id],
    )


def slo_incident_spans(
    database_url: str, slo: str, start: dt.datetime, end: dt.datetime
) -> list[dict[str, Any]]:
    """Incidents of an SLO overlapping `[start, end]`, as `start`, `end`, `name` spans for charts."""
    return pg.fetch_all(
        database_url,
        """
        SELECT starts_at AS start, COALESCE(ends_at, now()) AS end,
               '#' || id || ' ' || alertname AS name
          FROM incidents
         WHERE slo = %s AND starts_at <= %s AND COALESCE(ends_at, now()) >= %s
         ORDER BY starts_at
         LIMIT 500
        """,
        [slo, end, start],
    )


def known_incidents(
    database_url: str, detector: str, slo: str | None, start: dt.datetime, end: dt.datetime
) -> list[dict[str, Any]]:
    """Incidents a budget should catch: the detector's own and its SLO's pages, minus those
    operators marked false positive, overlapping `[start, end]`, oldest first."""
    return pg.fetch_all(
        database_url,
        """
        SELECT id, alertname, severity, starts_at, COALESCE(ends_at, now()) AS ends_at, feedback
          FROM incidents
         WHERE (detector = %s OR (slo = %s AND severity = 'page'))
           AND feedback IS DISTINCT FROM 'false_positive'
           AND starts_at <= %s AND COALESCE(ends_at, now()) >= %s
         ORDER BY starts_at
         LIMIT 200
        """,
        [detector, slo, end, start],
    )
