"""The SLO history's interval and burn queries for a raw-ratio SLI, evaluated by promtool on
synthetic recording-rule series (the events-SLI queries run against real Prometheus in
tests/integration/test_slo_validation_history.py)."""

from __future__ import annotations

from pathlib import Path

import yaml

from slo_pipeline.slo.history import CONDITION_STEP_SECONDS, interval_queries, tier_burn_query
from slo_pipeline.slo.spec import parse_specs
from tests.config.promtools import assert_ok, run_tool
from tests.fixtures.paths import REPO_ROOT

SLO_NAME = "wifi-client-satisfaction"  # a raw SLI
IDS = (
    'sloth_id="home-wifi-wifi-client-satisfaction", sloth_service="home-wifi", '
    'sloth_slo="wifi-client-satisfaction"'
)


def test_raw_sli_interval_ratio_weight_and_peak_burn(tmp_path: Path) -> None:
    (slo,) = [
        s for s in parse_specs((REPO_ROOT / "tests/golden/slo/specs.yml").read_text()) if s.name == SLO_NAME
    ]
    numerator, denominator = interval_queries(slo, 3600)
    fast = tier_burn_query(slo, "5m", "1h")
    peak = f"max_over_time(({fast})[3600s:{int(CONDITION_STEP_SECONDS)}s])"
    labels = f'slo="{SLO_NAME}", {IDS}'
    # Binary fractions, so promtool's exact comparison holds: 1/64 errors (a burn of 1/4 against a
    # budget of 1/16), with a spike at 65 min: 1/4 on the 5m window (4x), 1/32 on the 1h (0.5x).
    ratio_5m = "0.015625x12 0.25 0.015625x50"
    ratio_1h = "0.015625x12 0.03125x3 0.015625x47"
    tests = {
        "rule_files": [],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "5m",
                "input_series": [
                    {
                        "series": f'slo:sli_error:ratio_rate5m{{{labels}, sloth_window="5m"}}',
                        "values": ratio_5m,
                    },
                    {
                        "series": f'slo:sli_error:ratio_rate1h{{{labels}, sloth_window="1h"}}',
                        "values": ratio_1h,
                    },
                    {"series": f"slo:error_budget:ratio{{{labels}}}", "values": "0.0625x62"},
                ],
                "promql_expr_test": [
                    # An hour of 1/64: the interval's mean ratio, over one series (weight 1 x 3600 s).
                    {
                        "expr": numerator,
                        "eval_time": "1h",
                        "exp_samples": [{"labels": "{}", "value": 0.015625}],
                    },
                    {"expr": denominator, "eval_time": "1h", "exp_samples": [{"labels": "{}", "value": 1}]},
                    {"expr": denominator, "eval_time": "2h", "exp_samples": [{"labels": "{}", "value": 1}]},
                    # At 2 h the fast tier burns 1/4x again, but within the hour it peaked at 0.5x:
                    # the smaller of its windows (the 5m said 4x, the 1h 0.5x).
                    {"expr": fast, "eval_time": "2h", "exp_samples": [{"labels": "{}", "value": 0.25}]},
                    {"expr": peak, "eval_time": "2h", "exp_samples": [{"labels": "{}", "value": 0.5}]},
                ],
            }
        ],
    }
    test_file = tmp_path / "history.test.yml"
    test_file.write_text(yaml.safe_dump(tests), encoding="utf-8")
    assert_ok(run_tool("promtool", "test", "rules", test_file), "promtool test rules (SLO history queries)")
