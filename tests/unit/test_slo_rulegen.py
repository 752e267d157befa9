"""Rule generation: golden files, Sloth's names and labels, burn-rate factors per period.

Golden files live in tests/golden/slo/expected and are rendered from tests/golden/slo/specs.yml.
After an intended change, regenerate them and review the diff:

    .venv/bin/slo-pipeline rules render -f tests/golden/slo/specs.yml --out tests/golden/slo/expected
"""

from __future__ import annotations

from decimal import Decimal

import pytest
import yaml

from slo_pipeline.slo.burnrate import TIERS, factors_table
from slo_pipeline.slo.rulegen import GENERATED_MARKER, render_rule_files, rule_groups
from slo_pipeline.slo.spec import parse_specs
from tests.fixtures.paths import REPO_ROOT

GOLDEN = REPO_ROOT / "tests" / "golden" / "slo"
REGENERATE = "slo-pipeline rules render -f tests/golden/slo/specs.yml --out tests/golden/slo/expected"

SLOTH_RECORDS = {
    "slo:sli_error:ratio_rate5m",
    "slo:sli_error:ratio_rate30m",
    "slo:sli_error:ratio_rate1h",
    "slo:sli_error:ratio_rate2h",
    "slo:sli_error:ratio_rate6h",
    "slo:sli_error:ratio_rate1d",
    "slo:sli_error:ratio_rate3d",
    "slo:objective:ratio",
    "slo:error_budget:ratio",
    "slo:time_period:days",
    "slo:current_burn_rate:ratio",
    "slo:period_burn_rate:ratio",
    "slo:period_error_budget_remaining:ratio",
    "sloth_slo_info",
}


def golden_slos():  # type: ignore[no-untyped-def]
    return parse_specs((GOLDEN / "specs.yml").read_text(encoding="utf-8"), "tests/golden/slo/specs.yml")


def test_rendered_rules_match_golden_files() -> None:
    rendered = render_rule_files(golden_slos())
    expected = {p.name: p.read_text(encoding="utf-8") for p in sorted((GOLDEN / "expected").glob("*.yml"))}
    assert sorted(rendered) == sorted(expected), f"file set changed; regenerate with: {REGENERATE}"
    for name, text in rendered.items():
        assert text == expected[name], f"{name} differs from the golden file; if intended: {REGENERATE}"


def test_committed_example_rules_are_up_to_date() -> None:
    slos = parse_specs((REPO_ROOT / "examples" / "slos.yml").read_text(encoding="utf-8"))
    rendered = render_rule_files(slos)
    for name, text in rendered.items():
        committed = REPO_ROOT / "rules" / "slo" / name
        assert committed.read_text(encoding="utf-8") == text, (
            f"rules/slo/{name} is stale: slo-pipeline rules render -f examples/slos.yml"
        )


def test_output_does_not_depend_on_input_order() -> None:
    slos = golden_slos()
    assert render_rule_files(slos) == render_rule_files(list(reversed(slos)))


def test_files_start_with_the_generated_header() -> None:
    for text in render_rule_files(golden_slos()).values():
        assert text.startswith(GENERATED_MARKER)
        assert "DO NOT EDIT" in text.splitlines()[0]


@pytest.mark.parametrize(
    ("days", "expected"),
    [
        (30, ["14.4", "6", "3", "1"]),  # the SRE workbook's table
        (28, ["13.44", "5.6", "2.8", "1"]),  # Sloth's google-28d gives 0.9333 for the last; see burnrate.py
        (7, ["3.36", "1.4", "1", "1"]),  # 0.7 and 0.2333 would alert on a sustainable burn
        (90, ["43.2", "18", "9", "3"]),
    ],
)
def test_burn_rate_factors_scale_with_the_period(days: int, expected: list[str]) -> None:
    assert [str(factor) for _, factor in factors_table(days)] == expected


def test_tiers_and_windows() -> None:
    assert [(t.burn_tier, t.severity, t.short, t.long) for t in TIERS] == [
        ("fast", "page", "5m", "1h"),
        ("medium", "page", "30m", "6h"),
        ("slow", "ticket", "2h", "1d"),
        ("slowest", "ticket", "6h", "3d"),
    ]


def test_sloth_record_names_groups_and_labels() -> None:
    by_name = {slo.name: slo for slo in golden_slos()}
    slo = by_name["checkout-availability"]
    groups = rule_groups(slo)
    assert [g["name"] for g in groups] == [
        "sloth-slo-sli-recordings-checkout-checkout-availability",
        "sloth-slo-meta-recordings-checkout-checkout-availability",
        "sloth-slo-alerts-checkout-checkout-availability",
    ]
    records = {r["record"] for g in groups[:2] for r in g["rules"]}
    assert SLOTH_RECORDS | {"slo:sli_error:ratio_rate30d"} <= records
    for group in groups[:2]:
        for rule in group["rules"]:
            if rule["record"].endswith(("ratio_rate30d", "ratio_rate28d", "ratio_rate7d")):
                assert rule["labels"] == {"sloth_window": "30d"}  # the rest comes from the 5m series
                continue
            labels = rule["labels"]
            assert labels["sloth_id"] == "checkout-checkout-availability"
            assert labels["sloth_service"] == "checkout"
            assert labels["sloth_slo"] == "checkout-availability"
            assert labels["slo"] == "checkout-availability"
            assert labels["tier"] == "0" and labels["team"] == "payments"  # SLO label beats service label


def test_one_alert_per_window_pair_with_routing_labels() -> None:
    by_name = {slo.name: slo for slo in golden_slos()}
    alerts = rule_groups(by_name["checkout-availability"])[2]["rules"]
    assert [
        (a["labels"]["burn_tier"], a["labels"]["severity"], a["labels"]["short"], a["labels"]["long"])
        for a in alerts
    ] == [(t.burn_tier, t.severity, t.short, t.long) for t in TIERS]
    for alert in alerts:
        assert alert["alert"] == "CheckoutAvailability"
        assert alert["labels"]["slo"] == "checkout-availability"
        assert alert["labels"]["sloth_severity"] == alert["labels"]["severity"]
        assert alert["labels"]["category"] == "availability"
        assert alert["annotations"]["runbook"] == "https://runbooks.example.com/checkout-availability"
        assert "for" not in alert  # the short window is what resets the alert, as in the workbook
    assert alerts[0]["labels"]["routing_key"] == "payments-oncall"
    assert alerts[2]["labels"]["slack_channel"] == "#payments"
    assert "(14.4 * 0.001)" in alerts[0]["expr"]


def test_disabled_alerts_are_not_generated() -> None:
    by_name = {slo.name: slo for slo in golden_slos()}
    latency_alerts = rule_groups(by_name["checkout-latency"])[2]["rules"]
    assert [a["labels"]["severity"] for a in latency_alerts] == ["page", "page"]
    assert [g["name"] for g in rule_groups(by_name["batch-no-failures"])] == [
        "sloth-slo-sli-recordings-batch-batch-no-failures",
        "sloth-slo-meta-recordings-batch-batch-no-failures",
    ]


def test_period_window_follows_the_slo_period() -> None:
    by_name = {slo.name: slo for slo in golden_slos()}
    for name, window in [("checkout-latency", "28d"), ("wifi-client-satisfaction", "7d")]:
        records = {r["record"] for r in rule_groups(by_name[name])[0]["rules"]}
        assert f"slo:sli_error:ratio_rate{window}" in records
        assert "slo:sli_error:ratio_rate30d" not in records
        meta = {r["record"]: r for r in rule_groups(by_name[name])[1]["rules"]}
        assert meta["slo:time_period:days"]["expr"] == f"vector({window[:-1]})"
        assert f"ratio_rate{window}" in meta["slo:period_burn_rate:ratio"]["expr"]


def test_zero_traffic_and_min_events_guards_are_in_the_expressions() -> None:
    by_name = {slo.name: slo for slo in golden_slos()}
    availability = {r["record"]: r["expr"] for r in rule_groups(by_name["checkout-availability"])[0]["rules"]}
    assert "> 0\n)" in availability["slo:sli_error:ratio_rate5m"]
    assert "or\n  0 * (" in availability["slo:sli_error:ratio_rate5m"]
    # Event-weighted period ratio from two 5m helper series, guarded against an idle period.
    assert availability["slo:sli_error:ratio_rate30d"].startswith(
        "sum_over_time(slo:sli_error_events:rate5m{"
    )
    assert "[30d]) > 0)" in availability["slo:sli_error:ratio_rate30d"]
    latency = {r["record"]: r["expr"] for r in rule_groups(by_name["checkout-latency"])[0]["rules"]}
    assert ">= (50 / 300)" in latency["slo:sli_error:ratio_rate5m"]  # 50 events in 5 minutes
    assert ">= (50 / 259200)" in latency["slo:sli_error:ratio_rate3d"]
    wifi = {r["record"]: r["expr"] for r in rule_groups(by_name["wifi-client-satisfaction"])[0]["rules"]}
    assert wifi["slo:sli_error:ratio_rate1h"].endswith(">= 0\n)\n< +Inf\n")


def test_metadata_values_are_exact() -> None:
    by_name = {slo.name: slo for slo in golden_slos()}
    meta = {r["record"]: r for r in rule_groups(by_name["checkout-availability"])[1]["rules"]}
    assert meta["slo:objective:ratio"]["expr"] == "vector(0.999)"
    assert meta["slo:error_budget:ratio"]["expr"] == "vector(0.001)"
    assert meta["sloth_slo_info"]["labels"]["sloth_objective"] == "99.9"
    assert meta["sloth_slo_info"]["labels"]["sloth_spec"] == "prometheus/v1"
    zero = {r["record"]: r for r in rule_groups(by_name["batch-no-failures"])[1]["rules"]}
    assert zero["slo:error_budget:ratio"]["expr"] == "vector(0)"
    # A zero budget divides by nothing rather than by zero.
    assert "(slo:error_budget:ratio{" in zero["slo:current_burn_rate:ratio"]["expr"]
    assert "} > 0)" in zero["slo:current_burn_rate:ratio"]["expr"]


def test_rendered_yaml_has_no_anchors_and_parses_back() -> None:
    for text in render_rule_files(golden_slos()).values():
        assert "&id" not in text and "*id" not in text
        document = yaml.safe_load(text)
        assert all(group["rules"] for group in document["groups"])


def test_decimal_formatting_never_uses_exponents() -> None:
    spec = (
        (GOLDEN / "specs.yml").read_text(encoding="utf-8").replace("objective: 99.9", "objective: 99.99999")
    )
    text = "".join(render_rule_files(parse_specs(spec)).values())
    assert "vector(0.0000001)" in text and "E-" not in text and "E+" not in text
    assert str(Decimal("10").normalize()) == "1E+1"  # why _number formats with "f"


def test_golden_dir_holds_only_generated_files() -> None:
    for path in (GOLDEN / "expected").iterdir():
        assert path.read_text(encoding="utf-8").startswith(GENERATED_MARKER), path
