"""slo_evidence: breaches are page-tier episodes, pages are fast-tier onsets, missing history shows.

The PromQL itself is proven against the generated alert rules by
tests/config/test_slo_evidence_queries.py (promtool) and against real backfilled history by
tests/integration/test_slo_validation_history.py; the confirmed-incidents SQL against a real
database by tests/integration/test_slo_evidence_fetch.py.
"""

from __future__ import annotations

import numpy as np
import pytest

from slo_pipeline.adapters.prometheus import PrometheusQueryError
from slo_pipeline.core.slo_gate import Interval
from slo_pipeline.devstack.launch import free_port
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


def test_an_unreachable_prometheus_names_the_slo() -> None:
    # A loopback port nobody listens on: the connection is refused before any database is needed.
    settings = Settings(
        prometheus_url=f"http://127.0.0.1:{free_port()}", database_url="postgresql://x@invalid/db"
    )
    with pytest.raises(PrometheusQueryError, match=r"history of SLO 'shop'.*127\.0\.0\.1"):
        fetch_slo_evidence(settings, slo="shop", detector="d", timestamps=GRID, step_seconds=STEP)
