"""slo_pipeline.devstack.dashboards: the dashboards' PromQL as Grafana sends it, and the committed dashboards'
own consistency (every query parses once its variables are filled in; provisioning matches)."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import promql_parser
import pytest
import yaml

from slo_pipeline.devstack import dashboards

REPO = Path(__file__).resolve().parents[2]
DETECTOR = dashboards.Variable("detector", "label_values(anomaly_score, detector)", True, True, ".*")
SERVICE = dashboards.Variable("service", "label_values(sloth_slo_info, sloth_service)", False, False, None)
TIME = dashboards.TimeContext(range_seconds=3600, interval_seconds=15, scrape_interval_seconds=15)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("checkout", 'x{detector=~"checkout"}'),
        (["a", "b"], 'x{detector=~"(a|b)"}'),
        (["a.b"], 'x{detector=~"a\\\\.b"}'),  # one value: escaped like Grafana does for regex vars
        (dashboards.ALL, 'x{detector=~".*"}'),
        ([dashboards.ALL], 'x{detector=~".*"}'),
    ],
)
def test_multi_value_variables_become_regexes(value: str | list[str], expected: str) -> None:
    assert (
        dashboards.substitute('x{detector=~"$detector"}', [DETECTOR], {"detector": value}, TIME) == expected
    )


def test_every_variable_syntax_and_the_builtins() -> None:
    expr = (
        'rate(x{s="${service}", t="[[service]]", d=~"${detector:regex}"}[$__rate_interval]) '
        "[$__range] $__interval"
    )
    out = dashboards.substitute(expr, [DETECTOR, SERVICE], {"service": "demo", "detector": ["a", "b"]}, TIME)
    # $__rate_interval = max(interval + scrape, 4 * scrape) = max(30, 60)
    assert out == 'rate(x{s="demo", t="demo", d=~"(a|b)"}[60s]) [3600s] 15s'


def test_unknown_variable_and_all_without_all_value_are_errors() -> None:
    with pytest.raises(dashboards.DashboardError, match=r"\$nope"):
        dashboards.substitute('x{a="$nope"}', [DETECTOR], {"detector": "a"}, TIME)
    with pytest.raises(dashboards.DashboardError, match="allValue"):
        dashboards.substitute('x{a="$service"}', [SERVICE], {"service": dashboards.ALL}, TIME)


def test_label_values_parsing() -> None:
    assert dashboards.parse_label_values('label_values(up{job="x"}, instance)') == ('up{job="x"}', "instance")
    assert dashboards.parse_label_values("label_values(detector)") == (None, "detector")
    with pytest.raises(dashboards.DashboardError, match="unsupported"):
        dashboards.parse_label_values("query_result(up)")


def test_panel_queries_include_collapsed_rows_and_annotations_but_not_hidden_targets() -> None:
    dashboard = {
        "uid": "u",
        "panels": [
            {
                "type": "row",
                "title": "r",
                "panels": [{"title": "inner", "targets": [{"refId": "A", "expr": "a"}]}],
            },
            {
                "title": "p",
                "targets": [
                    {"refId": "A", "expr": "b", "instant": True},
                    {"refId": "B", "expr": "c", "hide": True},
                ],
            },
        ],
        "annotations": {
            "list": [{"name": "n", "expr": "d", "step": "1m"}, {"name": "builtin", "builtIn": 1}]
        },
    }
    queries = dashboards.panel_queries(dashboard)
    assert [(q.panel, q.expr, q.instant) for q in queries] == [
        ("inner", "a", False),
        ("p", "b", True),
        ("annotation: n", "d", False),
    ]


def test_committed_dashboards_parse_with_every_variable_value() -> None:
    loaded = dashboards.load_dashboards()
    assert set(loaded) == {"slo-pipeline-detectors", "slo-pipeline-slos", "slo-pipeline-health"}
    for uid, dashboard in loaded.items():
        known = dashboards.variables(dashboard)
        queries = dashboards.panel_queries(dashboard)
        assert queries, uid
        options = [["one", dashboards.ALL] if v.include_all else ["one"] for v in known]
        for values in itertools.product(*options):
            choice = {v.name: value for v, value in zip(known, values, strict=True)}
            for query in queries:
                expr = dashboards.substitute(query.expr, known, choice, TIME)
                promql_parser.parse(expr)  # raises on a syntax error
        for variable in known:
            dashboards.parse_label_values(variable.query)


def test_dashboards_use_the_provisioned_datasource() -> None:
    provisioned = yaml.safe_load((REPO / "grafana/provisioning/datasources/prometheus.yml").read_text())
    uid = provisioned["datasources"][0]["uid"]
    for path in sorted((REPO / "grafana/dashboards").glob("*.json")):
        text = path.read_text(encoding="utf-8")
        document = json.loads(text)
        source = next(v for v in document["templating"]["list"] if v["type"] == "datasource")
        assert source["current"]["value"] == uid, path.name
        # Every query goes through the variable, never a hard-coded datasource.
        datasources = {json.dumps(p.get("datasource")) for p in document["panels"] if p["type"] != "row"}
        assert datasources == {json.dumps({"type": "prometheus", "uid": "${datasource}"})}, path.name
