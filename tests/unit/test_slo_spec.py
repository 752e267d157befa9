"""SLO spec parsing: Sloth's prometheus/v1 plus extensions; every error names its field."""

from __future__ import annotations

import textwrap
from decimal import Decimal
from pathlib import Path

import pytest

from slo_pipeline.settings import DetectorConfig
from slo_pipeline.slo.links import detector_link_problems, slo_by_detector
from slo_pipeline.slo.spec import SpecError, dump_specs, parse_specs, render_query, slos_from_documents
from tests.fixtures.paths import REPO_ROOT

EXAMPLE = REPO_ROOT / "examples" / "slos.yml"

VALID = """
version: prometheus/v1
service: shop
labels: {team: web}
slos:
  - name: availability
    objective: 99.9
    sli:
      events:
        error_query: sum(rate(http_requests_total{code=~"5.."}[{{.window}}]))
        total_query: sum(rate(http_requests_total[{{.window}}]))
    alerting:
      name: ShopAvailability
"""


def spec_errors(text: str) -> list[str]:
    with pytest.raises(SpecError) as caught:
        parse_specs(textwrap.dedent(text), source="test.yml")
    return caught.value.errors


def with_slo(**fields: str) -> str:
    """VALID with lines of the SLO replaced or added (YAML snippets, already indented for `slos[0]`)."""
    text = VALID
    for key, snippet in fields.items():
        text = text.replace(f"    {key}:", f"    {key}_replaced:", 1) if f"    {key}:" in text else text
        text += textwrap.indent(textwrap.dedent(snippet).strip("\n"), "    ") + "\n"
        text = _drop_block(text, f"{key}_replaced")
    return text


def _drop_block(text: str, key: str) -> str:
    lines = text.splitlines()
    out, skipping = [], False
    for line in lines:
        if line.startswith(f"    {key}:"):
            skipping = True
            continue
        if skipping and line.startswith("      "):
            continue
        skipping = False
        out.append(line)
    return "\n".join(out) + "\n"


def test_example_file_parses_with_extensions() -> None:
    slos = parse_specs(EXAMPLE.read_text(encoding="utf-8"), str(EXAMPLE))
    by_name = {s.name: s for s in slos}
    assert set(by_name) == {"demo-availability", "demo-latency", "demo-checkout-availability"}
    assert {s.block.time_period for s in slos} == {"30d", "28d", "7d"}
    availability = by_name["demo-availability"]
    assert availability.sloth_id == "demo-demo-availability"
    assert availability.error_budget_ratio == Decimal("0.005")
    assert availability.block.detectors == ["demo_error_ratio", "demo_request_rate", "demo_route_health"]
    assert availability.block.min_events == 20
    assert availability.labels == {"team": "shop"}


def test_defaults_match_sloth() -> None:
    (slo,) = parse_specs(VALID)
    assert slo.block.time_period == "30d"
    assert slo.period_days == 30
    assert slo.block.min_events == 0
    assert slo.error_budget_ratio == Decimal("0.001")  # exactly, not 0.0009999999999999432


def test_slo_labels_override_service_labels() -> None:
    (slo,) = parse_specs(with_slo(labels="labels: {team: checkout, tier: '1'}"))
    assert slo.labels == {"team": "checkout", "tier": "1"}


@pytest.mark.parametrize("objective", ["0", "-1", "100.01", "1000", ".nan"])
def test_objective_outside_0_100_is_refused(objective: str) -> None:
    errors = spec_errors(with_slo(objective=f"objective: {objective}"))
    assert any(e.startswith("slos[0] (availability).objective: must be in (0, 100]") for e in errors), errors


def test_objective_of_100_is_allowed() -> None:
    (slo,) = parse_specs(with_slo(objective="objective: 100"))
    assert slo.error_budget_ratio == 0


def test_query_without_window_placeholder_names_the_field() -> None:
    errors = spec_errors(VALID.replace("[{{.window}}]))\n        total", "[5m]))\n        total"))
    assert errors == [
        "slos[0] (availability).sli.events.error_query: must use {{.window}} as its range "
        "(e.g. rate(x[{{.window}}]))"
    ]


def test_identical_error_and_total_queries_are_refused() -> None:
    text = VALID.replace('{code=~"5.."}', "")
    errors = spec_errors(text)
    assert any("sli.events: error_query and total_query are identical" in e for e in errors), errors


def test_unknown_template_variable_is_refused() -> None:
    errors = spec_errors(
        VALID.replace("[{{.window}}]))\n    alerting", "[{{.window}}]) offset {{.shift}})\n    alerting")
    )
    assert any(
        e.startswith("slos[0] (availability).sli.events.total_query: unknown template") for e in errors
    )


def test_window_placeholder_tolerates_go_template_spacing() -> None:
    assert (
        render_query("rate(x[{{ .window }}]) + rate(y[{{-.window-}}])", "1h") == "rate(x[1h]) + rate(y[1h])"
    )


def test_sli_needs_exactly_one_kind() -> None:
    both = with_slo(
        sli="""
        sli:
          events: {error_query: 'a[{{.window}}]', total_query: 'b[{{.window}}]'}
          raw: {error_ratio_query: 'c[{{.window}}]'}
        """
    )
    assert "slos[0] (availability).sli: set exactly one of" in spec_errors(both)[0]
    neither = with_slo(sli="sli: {}")
    assert "slos[0] (availability).sli: set exactly one of" in spec_errors(neither)[0]


def test_typo_in_a_field_is_named() -> None:
    errors = spec_errors(with_slo(time_period="time_periode: 7d"))
    assert errors == ["slos[0] (availability).time_periode: Extra inputs are not permitted"]


def test_missing_required_fields_are_named() -> None:
    errors = spec_errors(
        """
        version: prometheus/v1
        slos:
          - name: a
            sli: {events: {error_query: 'x[{{.window}}]'}}
        """
    )
    assert set(errors) == {
        "service: Field required",
        "slos[0] (a).objective: Field required",
        "slos[0] (a).sli.events.total_query: Field required",
    }


def test_wrong_version_is_named() -> None:
    errors = spec_errors(VALID.replace("prometheus/v1", "openslo/v1"))
    assert errors == ["version: must be 'prometheus/v1' (Sloth's Prometheus spec), got 'openslo/v1'"]


def test_sli_plugins_are_explained() -> None:
    errors = spec_errors(with_slo(sli="sli: {plugin: {id: sloth-common/kubernetes/apiserver/availability}}"))
    assert errors == [
        "slos[0] (availability).sli.plugin: SLI plugins are not supported; write the query as "
        "sli.events or sli.raw"
    ]


@pytest.mark.parametrize(
    ("period", "message"),
    [
        ("1w", "must be a number of days such as '30d'"),
        ("3d", "must be between 7d and 365d"),
        ("400d", "must be between 7d and 365d"),
    ],
)
def test_bad_time_period_is_refused(period: str, message: str) -> None:
    errors = spec_errors(with_slo(time_period=f"time_period: {period}"))
    assert any(e.startswith("slos[0] (availability).time_period:") and message in e for e in errors), errors


def test_min_events_needs_an_events_sli() -> None:
    errors = spec_errors(
        with_slo(
            sli="sli: {raw: {error_ratio_query: '1 - avg(up[{{.window}}])'}}", min_events="min_events: 10"
        )
    )
    assert errors == [
        "slos[0] (availability).min_events: needs sli.events; a raw error ratio carries no event count"
    ]


def test_severity_label_is_reserved_for_routing() -> None:
    errors = spec_errors(
        with_slo(
            alerting="""
        alerting:
          name: ShopAvailability
          page_alert: {labels: {severity: critical}}
        """
        )
    )
    assert len(errors) == 1
    assert errors[0].startswith("slos[0] (availability).alerting.page_alert.labels.severity: reserved")


def test_alert_name_required_while_alerts_enabled() -> None:
    errors = spec_errors(with_slo(alerting="alerting: {labels: {team: web}}"))
    assert errors[0].startswith("slos[0] (availability).alerting.name: required while page or ticket")
    disabled = with_slo(alerting="alerting: {page_alert: {disable: true}, ticket_alert: {disable: true}}")
    assert parse_specs(disabled)[0].block.alerting.name == ""


def test_invalid_label_name_is_refused() -> None:
    errors = spec_errors(with_slo(labels="labels: {'bad-label': x}"))
    assert errors == ["slos[0] (availability).labels.bad-label: not a valid Prometheus label name"]


def test_detector_names_are_checked_and_unique_across_slos() -> None:
    errors = spec_errors(with_slo(detectors="detectors: [Bad-Name, ok_name, ok_name]"))
    assert (
        "slos[0] (availability).detectors[0]: 'Bad-Name' is not a detector name ([a-z][a-z0-9_]*)" in errors
    )
    assert "slos[0] (availability).detectors: listed more than once: ['ok_name']" in errors
    second = VALID.replace("name: availability", "name: other").replace("ShopAvailability", "Other")
    text = (
        with_slo(detectors="detectors: [d1]")
        + "---\n"
        + second.replace("    alerting:", "    detectors: [d1]\n    alerting:")
    )
    errors = spec_errors(text)
    assert any("detector 'd1' is linked to both 'availability' and 'other'" in e for e in errors), errors


def test_slo_names_are_unique_across_documents() -> None:
    other_service = VALID.replace("service: shop", "service: admin")
    errors = spec_errors(VALID + "---\n" + other_service)
    assert errors == [
        "slos[].name: 'availability' is defined twice (services 'shop' and 'admin'); "
        "SLO names must be unique across services"
    ]


def test_every_problem_is_reported_at_once_with_document_number() -> None:
    broken = VALID.replace("objective: 99.9", "objective: 0").replace(
        "[{{.window}}]))\n    alerting", "[5m]))\n    alerting"
    )
    errors = spec_errors(VALID.replace("availability", "first") + "---\n" + broken)
    assert len(errors) == 2
    assert all(e.startswith("document 2: slos[0] (availability).") for e in errors)
    assert "invalid SLO spec test.yml" in str(SpecError("test.yml", errors))


def test_not_yaml_and_empty_files_are_refused() -> None:
    assert spec_errors("slos: [")[0].startswith("not valid YAML")
    assert spec_errors("# nothing\n")[0].startswith("no SLO documents found")
    assert spec_errors("- a list\n")[0].startswith("a document must be a mapping")


def test_dump_then_parse_round_trips() -> None:
    slos = parse_specs(EXAMPLE.read_text(encoding="utf-8"))
    again = parse_specs(dump_specs(slos))
    assert [s.to_document() for s in again] == [s.to_document() for s in sorted(slos, key=lambda s: s.name)]
    assert slos_from_documents([s.to_document() for s in slos], "db") == slos


def test_stored_document_is_itself_a_valid_sloth_spec(tmp_path: Path) -> None:
    (slo,) = parse_specs(VALID)
    document = slo.to_document()
    assert document["version"] == "prometheus/v1"
    assert document["service"] == "shop"
    assert document["labels"] == {"team": "web"}
    assert [s["name"] for s in document["slos"]] == ["availability"]


def test_detector_links_against_the_detector_config() -> None:
    slos = parse_specs(with_slo(detectors="detectors: [errors, latency]"))
    assert slo_by_detector(slos) == {"errors": "availability", "latency": "availability"}
    config = [
        DetectorConfig(name="errors", query="up", slo="availability"),
        DetectorConfig(name="latency", query="up", slo="some-other-slo"),
        DetectorConfig(name="traffic", query="up", slo="availability"),
    ]
    errors, warnings = detector_link_problems(slos, config)
    assert errors == [
        "slo 'availability' detectors: lists 'latency', but that detector's config says slo: "
        "'some-other-slo'; make them agree"
    ]
    assert warnings == ["detector 'traffic' says slo: 'availability', which does not list it under detectors"]
    _, warnings = detector_link_problems(
        parse_specs(VALID), [DetectorConfig(name="x", query="up", slo="gone")]
    )
    assert warnings == ["detector 'x' says slo: 'gone', but no such SLO is defined"]
