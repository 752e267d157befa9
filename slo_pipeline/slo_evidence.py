"""What happened to an SLO over a window, for validating a candidate model against it.

Breaches and pages come from Prometheus (the SLO recording rules and the burn-rate alerts'
`ALERTS` series, so they are exactly what operators saw); confirmed incidents come from the
operators' feedback in PostgreSQL.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from slo_pipeline import db
from slo_pipeline.prometheus_io import PrometheusQueryError, fetch_range
from slo_pipeline.settings import Settings
from slo_pipeline.slo.validation import Interval, intervals_where, onset_times

log = logging.getLogger(__name__)

_CONFIRMED = """
    SELECT extract(epoch FROM starts_at), extract(epoch FROM coalesce(ends_at, now()))
      FROM incidents
     WHERE (detector = %s OR slo = %s)
       AND feedback = 'true_positive'
       AND starts_at <= to_timestamp(%s) AND coalesce(ends_at, now()) >= to_timestamp(%s)
"""


@dataclass(frozen=True)
class SloEvidence:
    breaches: list[Interval]
    page_times: list[float]
    confirmed_incidents: list[Interval]


def _series_max(
    settings: Settings, query: str, start: float, end: float, step: float
) -> tuple[np.ndarray, np.ndarray]:
    """`(timestamps, max over series)`; -inf where no series had a sample (absent = not burning)."""
    block = fetch_range(
        settings.prometheus_url,
        query,
        start=start,
        end=end,
        step_seconds=step,
        timeout=settings.query_timeout_seconds,
    )
    if block.n_series == 0:
        return block.timestamps, np.full(len(block.timestamps), -np.inf)
    return block.timestamps, np.max(np.where(np.isnan(block.values), -np.inf, block.values), axis=1)


def fetch_slo_evidence(
    settings: Settings, *, slo: str, detector: str, timestamps: np.ndarray, step_seconds: float
) -> SloEvidence:
    start, end = float(timestamps[0]), float(timestamps[-1])
    selector = f'slo="{slo}"'
    try:
        grid, burn = _series_max(
            settings, f"max(slo:current_burn_rate:ratio{{{selector}}})", start, end, step_seconds
        )
        page_grid, paging = _series_max(
            settings,
            f'max(ALERTS{{{selector}, burn_tier="fast", alertstate="firing"}})',
            start,
            end,
            step_seconds,
        )
    except PrometheusQueryError as err:
        raise PrometheusQueryError(f"could not read the history of SLO {slo!r}: {err}") from err
    conn = db.connect(settings.database_url)
    try:
        with conn.cursor() as cur:
            cur.execute(_CONFIRMED, (detector, slo, end, start))
            confirmed = [Interval(float(a), float(b)) for a, b in cur.fetchall()]
    finally:
        conn.close()
    return SloEvidence(
        breaches=intervals_where(grid, burn > 1.0),
        page_times=onset_times(page_grid, paging >= 1.0),
        confirmed_incidents=confirmed,
    )
