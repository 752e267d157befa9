"""fetch_slo_evidence against a real PostgreSQL: which incidents count as confirmed for an SLO.

Prometheus is replaced by a recorder that answers each tier query with chosen grid rows (the
PromQL is proven against real Prometheus by tests/integration/test_slo_validation_history.py);
the confirmed incidents come from a fresh migrated database, so the SQL itself is what is tested.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Any

import numpy as np
import pytest

from slo_pipeline.adapters.postgres import connect
from slo_pipeline.adapters.prometheus import SeriesBlock
from slo_pipeline.core.slo_gate import Interval
from slo_pipeline.settings import Settings
from slo_pipeline.slo import evidence as slo_evidence
from slo_pipeline.slo.burnrate import TIERS
from slo_pipeline.slo.evidence import PAGE_TIERS, fetch_slo_evidence, recorded_query, tier_condition_query

pytestmark = pytest.mark.integration

STEP = 60.0
GRID = 1_700_000_040.0 + np.arange(20) * STEP  # multiples of the step, as fetch_range aligns


def mask(*rows: int) -> np.ndarray:
    flags = np.zeros(len(GRID), dtype=bool)
    flags[list(rows)] = True
    return flags


class RecordedPrometheus:
    """Answers fetch_range for the queries it was given (which grid rows have a sample); any other
    query is a test failure, not an empty answer."""

    def __init__(self, rows: dict[str, np.ndarray]) -> None:
        self.rows = rows

    def __call__(
        self, connection: object, query: str, *, start: float, end: float, step_seconds: float, **_: Any
    ) -> SeriesBlock:
        assert query in self.rows, f"unexpected query {query}"
        timestamps = np.arange(np.ceil(start / step_seconds), np.floor(end / step_seconds) + 1) * step_seconds
        values = np.where(self.rows[query], 1.0, np.nan)[:, None]
        return SeriesBlock(labels=[{}], timestamps=timestamps, values=values)


def seed_incident(
    database_url: str,
    *,
    detector: str | None,
    slo: str | None,
    starts_at: float,
    ends_at: float | None,
    feedback: str | None,
) -> None:
    """One incident with the delivery it references, as the webhook and the UI would leave it."""
    body = json.dumps({"nonce": uuid.uuid4().hex})
    conn = connect(database_url)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(
                "INSERT INTO alert_deliveries (receiver, status, group_key, body_sha256, body) "
                "VALUES ('ticket', 'firing', 'g', %s, %s) RETURNING id",
                (hashlib.sha256(body.encode()).hexdigest(), body),
            )
            (delivery,) = cur.fetchone()
            cur.execute(
                """
                INSERT INTO incidents (fingerprint, starts_at, ends_at, status, detector, slo,
                                       first_seen_delivery_id, last_seen_delivery_id,
                                       feedback, feedback_by, feedback_at)
                VALUES (%s, to_timestamp(%s), to_timestamp(%s), %s, %s, %s, %s, %s, %s, %s,
                        CASE WHEN %s IS NOT NULL THEN now() END)
                """,
                (
                    uuid.uuid4().hex,
                    float(starts_at),  # psycopg2 cannot adapt numpy scalars
                    None if ends_at is None else float(ends_at),
                    "firing" if ends_at is None else "resolved",
                    detector,
                    slo,
                    delivery,
                    delivery,
                    feedback,
                    None if feedback is None else "operator",
                    feedback,
                ),
            )
    finally:
        conn.close()


def test_confirmed_incidents_are_the_true_positives_of_the_detector_or_slo_within_the_window(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    confirmed = "true_positive"
    # Counted: the detector's own, the SLO's (raised by another detector), one overlapping the
    # window's start, and one still open (it lasts until now).
    seed_incident(
        database_url, detector="d", slo=None, starts_at=GRID[15], ends_at=GRID[16], feedback=confirmed
    )
    seed_incident(
        database_url, detector="other", slo="s", starts_at=GRID[2], ends_at=GRID[3], feedback=confirmed
    )
    seed_incident(
        database_url, detector="d", slo=None, starts_at=GRID[0] - 600, ends_at=GRID[1], feedback=confirmed
    )
    seed_incident(database_url, detector="d", slo="s", starts_at=GRID[18], ends_at=None, feedback=confirmed)
    # Not counted: judged false, not judged, another detector and SLO, and outside the window.
    seed_incident(
        database_url, detector="d", slo="s", starts_at=GRID[5], ends_at=GRID[6], feedback="false_positive"
    )
    seed_incident(database_url, detector="d", slo="s", starts_at=GRID[7], ends_at=GRID[8], feedback=None)
    seed_incident(
        database_url, detector="e", slo="t", starts_at=GRID[9], ends_at=GRID[10], feedback=confirmed
    )
    seed_incident(
        database_url,
        detector="d",
        slo="s",
        starts_at=GRID[0] - 900,
        ends_at=GRID[0] - 300,
        feedback=confirmed,
    )
    seed_incident(
        database_url, detector="d", slo="s", starts_at=GRID[-1] + 60, ends_at=None, feedback=confirmed
    )

    fast, medium = tier_condition_query("s", TIERS[0]), tier_condition_query("s", TIERS[1])
    prometheus = RecordedPrometheus(
        {fast: mask(6), medium: mask(4, 5, 6, 7), recorded_query("s"): mask(*range(20))}
    )
    monkeypatch.setattr(slo_evidence, "fetch_range", prometheus)
    settings = Settings(prometheus_url="http://127.0.0.1:9", database_url=database_url)

    evidence = fetch_slo_evidence(settings, slo="s", detector="d", timestamps=GRID, step_seconds=STEP)

    assert evidence.breaches == [Interval(GRID[4], GRID[8])]
    assert evidence.page_times == [GRID[6]]
    assert evidence.recorded_samples == len(GRID)
    *closed, still_open = sorted(evidence.confirmed_incidents, key=lambda interval: interval.start)
    assert closed == [
        Interval(GRID[0] - 600, GRID[1]),
        Interval(GRID[2], GRID[3]),
        Interval(GRID[15], GRID[16]),
    ]
    # Still open: it lasts until the database's now(), long after this 2023 window.
    assert still_open.start == GRID[18] and still_open.end > GRID[-1] + 86400


def test_a_name_with_sql_in_it_matches_only_itself(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    hostile = "d' OR '1'='1"
    seed_incident(
        database_url, detector="d", slo="s", starts_at=GRID[2], ends_at=GRID[3], feedback="true_positive"
    )
    seed_incident(
        database_url, detector=hostile, slo=None, starts_at=GRID[5], ends_at=GRID[6], feedback="true_positive"
    )
    rows = {tier_condition_query(hostile, tier): mask() for tier in PAGE_TIERS}
    monkeypatch.setattr(
        slo_evidence, "fetch_range", RecordedPrometheus({**rows, recorded_query(hostile): mask()})
    )
    settings = Settings(prometheus_url="http://127.0.0.1:9", database_url=database_url)

    evidence = fetch_slo_evidence(settings, slo=hostile, detector=hostile, timestamps=GRID, step_seconds=STEP)

    assert evidence.confirmed_incidents == [Interval(GRID[5], GRID[6])]
