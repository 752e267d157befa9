"""Which periods of a detector's history were incidents, read from the incidents table.

Training must not learn an outage as "normal", and the alarm-rate check of validation must only
count alarms while things were healthy; both need these intervals. Incidents an operator marked
false positive are normal data and are not returned.
"""

from __future__ import annotations

import time

from slo_pipeline import db

_QUERY = """
    SELECT extract(epoch FROM starts_at), extract(epoch FROM coalesce(ends_at, now()))
      FROM incidents
     WHERE (detector = %s OR (slo = %s AND %s::text IS NOT NULL))
       AND starts_at < to_timestamp(%s)
       AND coalesce(ends_at, now()) > to_timestamp(%s)
       AND feedback IS DISTINCT FROM 'false_positive'
     ORDER BY starts_at
"""


def incident_intervals(
    database_url: str,
    detector_name: str,
    *,
    start: float,
    end: float | None = None,
    slo: str | None = None,
) -> list[tuple[float, float]]:
    """`[(start, end), ...]` in unix seconds of incidents overlapping `[start, end]`.

    With `slo`, incidents of that SLO count too (burn-rate pages carry the SLO, not the
    detector): a breach of the SLO a detector protects is not normal behaviour for it either.
    """
    end = end if end is not None else time.time()
    conn = db.connect(database_url)
    try:
        with conn.cursor() as cur:
            cur.execute(_QUERY, (detector_name, slo, slo, end, start))
            return [(float(a), float(b)) for a, b in cur.fetchall()]
    finally:
        conn.close()
