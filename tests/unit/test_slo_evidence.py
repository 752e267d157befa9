"""slo_evidence: breaches are page-tier episodes, pages are fast-tier onsets, missing history shows.

The PromQL itself is proven against the generated alert rules by
tests/config/test_slo_evidence_queries.py (promtool) and against real backfilled history by
tests/integration/test_slo_validation_history.py.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from slo_pipeline.adapters.prometheus import PrometheusQueryError, SeriesBlock
from slo_pipeline.core.slo_gate import Interval
from slo_pipeline.settings import Settings
from slo_pipeline.slo import evidence as slo_evidence
from slo_pipeline.slo.burnrate import TIERS
from slo_pipeline.slo.evidence import (
    PAGE_TIERS,
    evidence_from_series,
    fetch_slo_evidence,
    recorded_query,
    tier_condition_query,
)

STEP = 60.0
GRID = 1_700_000_040.0 + np.arange(20) * STEP  # multiples of the step, as fetch_range aligns


def mask(*rows: int) -> np.ndarray:
    flags = np.zeros(len(GRID), dtype=bool)
    flags[list(rows)] = True
    return flags


def test_page_tiers_are_the_paging_ones_fastest_first() -> None:
    assert [tier.burn_tier for tier in PAGE_TIERS] == ["fast", "medium"]
    assert slo_evidence.LEAD_TIME_TIER is TIERS[0]


def test_a_breach_is_any_page_tier_firing_and_a_page_a_fast_tier_onset() -> None:
    # medium fires first (rows 3-8), fast inside it (5-6) and again alone later (12).
    evidence = evidence_from_series(
        GRID,
        tier_firing={"fast": mask(5, 6, 12), "medium": mask(3, 4, 5, 6, 7, 8)},
        recorded=np.ones(len(GRID), dtype=bool),
        confirmed_incidents=[],
    )
    assert evidence.breaches == [Interval(GRID[3], GRID[9]), Interval(GRID[12], GRID[13])]
    assert evidence.page_times == [GRID[5], GRID[12]]
    assert evidence.recorded_samples == len(GRID)


def test_no_recorded_history_is_reported_as_zero_samples_not_as_healthy() -> None:
    quiet = np.zeros(len(GRID), dtype=bool)
    evidence = evidence_from_series(
        GRID, tier_firing={"fast": quiet, "medium": quiet}, recorded=quiet, confirmed_incidents=[]
    )
    assert (evidence.breaches, evidence.page_times, evidence.recorded_samples) == ([], [], 0)


def test_every_page_tier_must_be_given() -> None:
    with pytest.raises(ValueError, match="medium"):
        evidence_from_series(GRID, tier_firing={"fast": mask()}, recorded=mask(), confirmed_incidents=[])


def test_the_condition_reads_recorded_ratios_and_joins_the_alerts() -> None:
    fast = tier_condition_query("shop-availability", TIERS[0])
    assert 'slo:sli_error:ratio_rate5m{slo="shop-availability"}' in fast
    assert 'slo:sli_error:ratio_rate1h{slo="shop-availability"}' in fast
    # 2% of the period within 1h: 0.48 per period day, 14.4x for 30 days.
    assert 'clamp_min(slo:time_period:days{slo="shop-availability"} * 0.48, 1)' in fast
    assert 'or ALERTS{slo="shop-availability", burn_tier="fast", alertstate="firing"}' in fast
    assert "ALERTS" not in tier_condition_query("shop-availability", TIERS[0], include_alerts=False)
    assert recorded_query("a") == 'max(slo:error_budget:ratio{slo="a"})'


def test_a_quote_in_the_name_cannot_break_out_of_the_matcher() -> None:
    assert 'slo="a\\"} or vector(1) or x{b=\\""' in recorded_query('a"} or vector(1) or x{b="')


class FakePrometheus:
    """Answers fetch_range by query: which grid rows have a sample."""

    def __init__(self, rows: dict[str, np.ndarray], fail: bool = False) -> None:
        self.rows = rows
        self.fail = fail
        self.queries: list[str] = []

    def __call__(self, url: str, query: str, *, start: float, end: float, step_seconds: float, **_: Any):  # type: ignore[no-untyped-def]
        self.queries.append(query)
        if self.fail:
            raise PrometheusQueryError("connection refused")
        timestamps = np.arange(np.ceil(start / step_seconds), np.floor(end / step_seconds) + 1) * step_seconds
        present = self.rows.get(query)
        if present is None:
            return SeriesBlock(labels=[], timestamps=timestamps, values=np.empty((len(timestamps), 0)))
        values = np.where(present, 1.0, np.nan)[:, None]
        return SeriesBlock(labels=[{}], timestamps=timestamps, values=values)


class FakeConnection:
    def __init__(self, rows: list[tuple[float, float]]) -> None:
        self.rows = rows
        self.params: tuple[object, ...] = ()

    def cursor(self) -> FakeConnection:
        return self

    def __enter__(self) -> FakeConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def execute(self, query: str, params: tuple[object, ...]) -> None:
        self.params = params

    def fetchall(self) -> list[tuple[float, float]]:
        return self.rows

    def close(self) -> None:
        return None


@pytest.fixture
def settings() -> Settings:
    return Settings(prometheus_url="http://prometheus.invalid:9090", database_url="postgresql://x@invalid/db")


def test_fetch_combines_prometheus_tiers_and_confirmed_incidents(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    fast, medium = tier_condition_query("s", TIERS[0]), tier_condition_query("s", TIERS[1])
    prometheus = FakePrometheus(
        {fast: mask(6), medium: mask(4, 5, 6, 7), recorded_query("s"): mask(*range(20))}
    )
    connection = FakeConnection([(GRID[15], GRID[16])])
    monkeypatch.setattr(slo_evidence, "fetch_range", prometheus)
    monkeypatch.setattr(slo_evidence.db, "connect", lambda url: connection)

    evidence = fetch_slo_evidence(settings, slo="s", detector="d", timestamps=GRID, step_seconds=STEP)

    assert evidence.breaches == [Interval(GRID[4], GRID[8])]
    assert evidence.page_times == [GRID[6]]
    assert evidence.confirmed_incidents == [Interval(GRID[15], GRID[16])]
    assert evidence.recorded_samples == len(GRID)
    assert connection.params == ("d", "s", GRID[-1], GRID[0])


def test_an_unreachable_prometheus_names_the_slo(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(slo_evidence, "fetch_range", FakePrometheus({}, fail=True))
    with pytest.raises(PrometheusQueryError, match=r"history of SLO 'shop'.*connection refused"):
        fetch_slo_evidence(settings, slo="shop", detector="d", timestamps=GRID, step_seconds=STEP)
