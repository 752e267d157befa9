"""slo_evidence derives page-tier conditions from recorded ratios; promtool proves they are the alerts'.

`promtool tsdb create-blocks-from rules` backfills recording rules but not `ALERTS`, so
slo_evidence evaluates the burn-rate alerts' condition itself. For every SLO of the committed
rules/slo/demo.rules.yml (30d, 28d and 7d periods, so three sets of factors) and every paging
tier, a constant error ratio 5% above the tier's factor must make both the alert and the derived
query fire, and 5% below neither.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest
import yaml

from slo_pipeline.slo.burnrate import WINDOW_SECONDS, BurnTier
from slo_pipeline.slo.evidence import PAGE_TIERS, tier_condition_query
from tests.config.promtools import RULES_DIR, assert_ok, run_tool

REQUESTS_PER_MINUTE = 600


@dataclass(frozen=True)
class Case:
    slo: str
    period_days: int
    budget: Decimal
    error_series: str
    good_series: str
    good_is_total: bool  # latency: `count` is the total, `bucket{le="0.5"}` the good ones


CASES = (
    Case(
        "demo-availability",
        30,
        Decimal("0.005"),
        'demo_http_requests_total{route="/api/search", code="500"}',
        'demo_http_requests_total{route="/api/search", code="200"}',
        False,
    ),
    Case(
        "demo-latency",
        28,
        Decimal("0.01"),
        'demo_http_request_duration_seconds_bucket{route="/api/search", le="0.5"}',
        'demo_http_request_duration_seconds_count{route="/api/search"}',
        True,
    ),
    Case(
        "demo-checkout-availability",
        7,
        Decimal("0.001"),
        'demo_http_requests_total{route="/api/checkout", code="500"}',
        'demo_http_requests_total{route="/api/checkout", code="200"}',
        False,
    ),
)


def input_series(case: Case, ratio: float, minutes: int) -> list[dict[str, str]]:
    errors = REQUESTS_PER_MINUTE * ratio
    if case.good_is_total:  # count = every request, bucket le=0.5 = the fast (good) ones
        return [
            {"series": case.good_series, "values": f"0+{REQUESTS_PER_MINUTE}x{minutes}"},
            {"series": case.error_series, "values": f"0+{REQUESTS_PER_MINUTE - errors:.6f}x{minutes}"},
        ]
    return [
        {"series": case.error_series, "values": f"0+{errors:.6f}x{minutes}"},
        {"series": case.good_series, "values": f"0+{REQUESTS_PER_MINUTE - errors:.6f}x{minutes}"},
    ]


def firing_count(expr: str) -> str:
    return f"count({expr}) or vector(0)"


def promtool_case(case: Case, tier: BurnTier, above: bool) -> dict[str, object]:
    ratio = float(tier.factor(case.period_days) * case.budget) * (1.05 if above else 0.95)
    long_minutes = WINDOW_SECONDS[tier.long] // 60
    eval_minutes = long_minutes + 5  # both windows full
    alerts = f'ALERTS{{slo="{case.slo}", burn_tier="{tier.burn_tier}", alertstate="firing"}}'
    expected = [{"labels": "{}", "value": 1 if above else 0}]
    return {
        "interval": "1m",
        "input_series": input_series(case, ratio, eval_minutes + 5),
        "promql_expr_test": [
            {"expr": firing_count(alerts), "eval_time": f"{eval_minutes}m", "exp_samples": expected},
            {
                "expr": firing_count(tier_condition_query(case.slo, tier, include_alerts=False)),
                "eval_time": f"{eval_minutes}m",
                "exp_samples": expected,
            },
        ],
    }


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.slo)
def test_derived_page_tiers_fire_exactly_with_the_generated_alerts(case: Case, tmp_path: Path) -> None:
    tests = [promtool_case(case, tier, above) for tier in PAGE_TIERS for above in (True, False)]
    test_file = tmp_path / "derived.test.yml"
    document = {
        "rule_files": [str(RULES_DIR / "slo" / "demo.rules.yml")],
        "evaluation_interval": "1m",
        "tests": tests,
    }
    test_file.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    assert_ok(run_tool("promtool", "test", "rules", test_file), f"promtool test rules for {case.slo}")
