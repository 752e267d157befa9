"""Which periods of a detector's history were incidents, read from the incidents table.

Two questions need them, with different answers on purpose:
- Training excludes what is known *not* to be normal: anomaly incidents operators confirmed as
  true positives, and breaches of the SLO the detector protects (its burn-rate alerts' incidents,
  and the breach periods the worker stored in `slo_breaches`). Unreviewed
  anomalies stay in: after a drift, they are exactly the "new normal" a retrain must learn.
- Validation's "alarms while healthy" leaves out every open or unreviewed anomaly incident too
  (an alarm there is not known to be false), but never an incident marked false positive.
- Incidents marked false positive are returned as such: training oversamples them as normal data
  and tightens those series' thresholds (feedback.py).

Anomaly incidents belong to one series (their labels carry the series' labels); SLO incidents
cover every series of the detector.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from slo_pipeline.adapters import postgres as db

# The per-series anomaly alerts of rules/anomaly*.rules.yml. Retrain requests and exporter
# health alerts also carry `detector`, but say nothing about the series' behaviour.
ANOMALY_ALERTS = ("AnomalyDetected", "AnomalyThreatensSLO", "AnomalyWithinSLOBudget")

_QUERY = """
    SELECT extract(epoch FROM starts_at), extract(epoch FROM coalesce(ends_at, now())),
           labels, feedback, detector IS DISTINCT FROM %(detector)s
      FROM incidents
     WHERE ((detector = %(detector)s AND alertname = ANY(%(alerts)s))
            OR (%(slo)s::text IS NOT NULL AND slo = %(slo)s AND labels ? 'burn_tier'))
       AND starts_at < to_timestamp(%(end)s)
       AND coalesce(ends_at, now()) > to_timestamp(%(start)s)
    UNION ALL
    -- The SLO's breach periods the worker stored (sql/012): they outlive Prometheus' retention,
    -- and include breaches that never reached Alertmanager (backfilled or pre-alert history).
    SELECT extract(epoch FROM starts_at), extract(epoch FROM ends_at), '{}'::jsonb, NULL, true
      FROM slo_breaches
     WHERE %(slo)s::text IS NOT NULL AND slo_name = %(slo)s
       AND starts_at < to_timestamp(%(end)s)
       AND ends_at > to_timestamp(%(start)s)
     ORDER BY 1
"""


@dataclass(frozen=True)
class KnownIncident:
    start: float
    end: float
    labels: dict[str, str]
    confirmed: bool  # operators marked it a true positive
    slo_wide: bool  # an SLO breach: concerns every series of the detector
    false_positive: bool = False  # operators marked it noise: normal data, and a stricter threshold

    def matches(self, series_labels: dict[str, str]) -> bool:
        if self.slo_wide:
            return True
        return all(self.labels.get(key) == value for key, value in series_labels.items())


def incident_history(
    database_url: str,
    detector_name: str,
    *,
    start: float,
    end: float | None = None,
    slo: str | None = None,
) -> list[KnownIncident]:
    end = end if end is not None else time.time()
    params = {
        "detector": detector_name,
        "alerts": list(ANOMALY_ALERTS),
        "slo": slo,
        "start": start,
        "end": end,
    }
    conn = db.connect(database_url)
    try:
        with conn.cursor() as cur:
            cur.execute(_QUERY, params)
            rows = cur.fetchall()
    finally:
        conn.close()
    return [
        KnownIncident(
            start=float(a),
            end=float(b),
            labels={str(k): str(v) for k, v in (labels or {}).items()},
            confirmed=feedback == "true_positive",
            slo_wide=bool(slo_wide),
            false_positive=feedback == "false_positive",
        )
        for a, b, labels, feedback, slo_wide in rows
    ]


def incident_matrix(
    timestamps: np.ndarray,
    series_labels: Sequence[dict[str, str]],
    incidents: Sequence[KnownIncident],
    *,
    settle_seconds: float,
) -> np.ndarray:
    """`[T, N]` True where series n is inside an incident at t (or settling after it).

    The settle time covers rows whose trailing feature windows still contain incident data.
    """
    mask = np.zeros((len(timestamps), len(series_labels)), dtype=bool)
    for incident in incidents:
        rows = (timestamps >= incident.start) & (timestamps <= incident.end + settle_seconds)
        if not rows.any():
            continue
        columns = [n for n, labels in enumerate(series_labels) if incident.matches(labels)]
        mask[np.ix_(rows, np.asarray(columns, dtype=np.intp))] = True
    return mask
