"""Every query of grafana/dashboards/*.json, as Grafana sends it, against a real Prometheus that runs
the repo's rules over the demo's simulated history and scrapes the whole live stack.

The stack is `make demo`'s (slo_pipeline.devstack.stack) with the demo's SLOs and rule files, rule durations
compressed so an injected incident becomes firing alerts in seconds. Once an anomaly has fired and
the webhook has stored it, each panel target, annotation and variable query is evaluated for every
value of the dashboard's variables (and "All"). A query error fails; so does a query that returns
nothing unless it is in EXPECTED_EMPTY, where the test proves the demo indeed has no data for it
(none of its series exist in the range), so that list cannot hide a broken query.
"""

from __future__ import annotations

import itertools
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

import promql_parser
import pytest
import requests

from slo_pipeline.devstack import dashboards, launch
from slo_pipeline.devstack.demo import inject_incident
from slo_pipeline.devstack.stack import Stack, StackOptions, start_stack
from tests.fixtures.database import SERVER_URL, create_database, drop_database
from tests.fixtures.waiting import wait_until

pytestmark = pytest.mark.integration

T = TypeVar("T")
SCRAPE_SECONDS = 1.0
RULES_TIME_SCALE = 1 / 30
# Two of the demo's detectors (one per demo SLO kind), sampled every 15 s instead of 60 s and with
# short windows, so the first models train in seconds and an incident is scored within a minute.
PIPELINE_YAML = """
detectors:
  - name: demo_latency_p95
    query: >-
      histogram_quantile(0.95,
        sum by (route, le) (rate(demo_http_request_duration_seconds_bucket[1m])))
    step_seconds: 15
    training_window_seconds: 86400
    false_alarms_per_week: 1
    slo: demo-latency
    windows: {short: 4, medium: 8, long: 120}
  - name: demo_route_health
    signals:
      - name: request_rate
        query: sum by (route) (rate(demo_http_requests_total[1m]))
      - name: latency_p95
        query: >-
          histogram_quantile(0.95,
            sum by (route, le) (rate(demo_http_request_duration_seconds_bucket[1m])))
    step_seconds: 15
    training_window_seconds: 86400
    false_alarms_per_week: 1
    slo: demo-availability
    windows: {short: 4, medium: 8, long: 120}
"""

# Queries allowed to return nothing in this scenario: (dashboard, panel, variable values it applies
# to, reason). The test checks that none of their series exist, i.e. the emptiness is the demo's,
# not the query's.
SYNC_OFF = (
    "the SLO rules sync is off while rule durations are compressed (test_rules_sync_metrics scrapes it)"
)
AVAILABILITY_SLOS = ("demo-availability", "demo-checkout-availability")
EXPECTED_EMPTY: list[tuple[str, str, dict[str, tuple[str, ...]], str]] = [
    ("slo-pipeline-health", "Rules sync ticks", {}, SYNC_OFF),
    ("slo-pipeline-health", "Since the last good sync", {}, SYNC_OFF),
    (
        "slo-pipeline-slos",
        "SLO-gated anomaly alerts",
        {"slo": ("demo-checkout-availability",)},
        "no detector protects the checkout SLO",
    ),
    (
        "slo-pipeline-slos",
        "Burn-rate alerts",
        {"slo": AVAILABILITY_SLOS},
        "a latency spike burns only the latency SLO's budget",
    ),
]


def expected_empty(uid: str, panel: str, choice: dict[str, str | list[str]]) -> bool:
    return any(
        (uid, panel) == (e_uid, e_panel) and all(choice.get(name) in values for name, values in where.items())
        for e_uid, e_panel, where, _ in EXPECTED_EMPTY
    )


class PrometheusAPI:
    def __init__(self, url: str) -> None:
        self.url = url

    def _call(self, path: str, params: dict[str, Any]) -> Any:
        # POST like Grafana (httpMethod: POST) for queries; the label API answers GET only.
        if path.startswith("query"):
            response = requests.post(f"{self.url}/api/v1/{path}", data=params, timeout=30)
        else:
            response = requests.get(f"{self.url}/api/v1/{path}", params=params, timeout=30)
        try:
            body = response.json()
        except ValueError:
            body = {"error": f"HTTP {response.status_code}: {response.text[:200]}"}
        if response.status_code != 200 or body.get("status") != "success":
            raise AssertionError(f"{path} {params.get('query') or params} failed: {body.get('error', body)}")
        return body["data"]

    def instant(self, query: str, at: float) -> list[dict[str, Any]]:
        return list(self._call("query", {"query": query, "time": at})["result"])

    def range(self, query: str, start: float, end: float, step: float) -> list[dict[str, Any]]:
        return list(
            self._call("query_range", {"query": query, "start": start, "end": end, "step": step})["result"]
        )

    def label_values(self, selector: str | None, label: str, start: float, end: float) -> list[str]:
        params: dict[str, Any] = {"start": start, "end": end}
        if selector:
            params["match[]"] = selector
        return sorted(self._call(f"label/{label}/values", params))


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    folder = tmp_path_factory.mktemp("dashboards")
    config = folder / "pipeline.yml"
    config.write_text(PIPELINE_YAML, encoding="utf-8")
    database_url = create_database(SERVER_URL)
    options = StackOptions(
        data_dir=folder / "stack",
        pipeline_config=config,
        history_days=1.0,
        rules_time_scale=RULES_TIME_SCALE,
        scrape_interval=f"{SCRAPE_SECONDS:g}s",
        evaluation_interval=f"{SCRAPE_SECONDS:g}s",
        exporter_interval_seconds=2.0,
        alertmanager_group_wait="1s",
        alertmanager_group_interval="2s",
        alertmanager_repeat_interval="1h",
        worker_poll_seconds=1.0,
        database_url=database_url,
        webhook_token="dashboards-token",
        with_ui=False,
        lake_sync=True,
        lake_sync_interval_seconds=5.0,
    )
    running = start_stack(options)
    try:
        yield running
    finally:
        running.stop()
        drop_database(database_url)


@pytest.fixture(scope="module")
def incident_window(stack: Stack) -> tuple[float, float]:
    """Inject a latency spike and wait until it is a gated alert stored by the webhook; returns
    the (start, end) of the live range the panels are evaluated over."""
    prometheus = PrometheusAPI(stack.urls["prometheus"])
    started = time.time()
    wait_until(
        lambda: prometheus.instant("anomaly_score", time.time()),
        timeout=90,
        describe="anomaly scores",
        interval=1.0,
        ignoring=(Exception,),
    )
    inject_incident(stack.urls["simulator"], "latency_spike", duration_seconds=90)
    gated = 'ALERTS{alertname=~"AnomalyThreatensSLO|AnomalyWithinSLOBudget", alertstate="firing"}'
    # Ten evaluations after it fired, so the range queries' last step (every 5 s) sees it too.
    wait_until(
        lambda: prometheus.instant(f"count_over_time({gated}[15s]) >= 10", time.time()),
        timeout=180,
        describe="a firing SLO-gated anomaly alert",
        interval=1.0,
        ignoring=(Exception,),
    )
    latency_burn = 'ALERTS{sloth_slo="demo-latency", alertstate="firing"}'
    wait_until(
        lambda: prometheus.instant(f"count_over_time({latency_burn}[15s]) >= 10", time.time()),
        timeout=120,
        describe="a burn-rate alert of the latency SLO",
        interval=1.0,
        ignoring=(Exception,),
    )
    wait_until(
        lambda: prometheus.instant("anomaly_driver_info", time.time()),
        timeout=60,
        describe="an anomaly driver",
        interval=1.0,
        ignoring=(Exception,),
    )
    wait_until(
        lambda: prometheus.instant("slo_pipeline_webhook_requests_total", time.time()),
        timeout=60,
        describe="the webhook to have answered a notification",
        interval=1.0,
        ignoring=(Exception,),
    )
    # Rate panels need a few scrapes after the first notification.
    end = wait_until(
        lambda: (
            prometheus.instant(
                "rate(slo_pipeline_webhook_request_duration_seconds_count[10s]) > 0", time.time()
            )
            and time.time()
        ),
        timeout=30,
        describe="webhook request rates",
        interval=1.0,
        ignoring=(Exception,),
    )
    return started - 60, end


def _selectors(expr: str) -> list[str]:
    """The vector selectors of a PromQL expression, without their offsets."""
    found: list[str] = []
    promql_parser.walk(
        promql_parser.parse(expr),
        lambda node: (
            found.append(re.sub(r"\s+offset\s+\S+$", "", str(node)))
            if isinstance(node, promql_parser.VectorSelector)
            else None
        ),
    )
    return found


def _variable_choices(
    prometheus: PrometheusAPI, dashboard: dict[str, Any], start: float, end: float
) -> list[dict[str, str | list[str]]]:
    """Every combination Grafana offers: each value of each variable, plus All where allowed.
    Later variables are resolved with the earlier ones' values (as Grafana chains them)."""
    combinations: list[dict[str, str | list[str]]] = [{}]
    known = dashboards.variables(dashboard)
    time_context = dashboards.TimeContext(end - start, SCRAPE_SECONDS, SCRAPE_SECONDS)
    for index, variable in enumerate(known):
        extended = []
        for chosen in combinations:
            selector, label = dashboards.parse_label_values(variable.query)
            if selector:
                selector = dashboards.substitute(selector, known[:index], chosen, time_context)
            values = prometheus.label_values(selector, label, start, end)
            assert values, f"variable {variable.name} of {dashboard['uid']} has no values: {variable.query}"
            options: list[str | list[str]] = list(values)
            if variable.include_all:
                options.append(dashboards.ALL)
            extended += [{**chosen, variable.name: option} for option in options]
        combinations = extended
    return combinations


def test_every_dashboard_query_runs_and_returns_the_demos_data(
    stack: Stack, incident_window: tuple[float, float]
) -> None:
    prometheus = PrometheusAPI(stack.urls["prometheus"])
    start, end = incident_window
    step = 5.0
    time_context = dashboards.TimeContext(end - start, step, SCRAPE_SECONDS)
    loaded = dashboards.load_dashboards()
    assert set(loaded) == {"slo-pipeline-detectors", "slo-pipeline-slos", "slo-pipeline-health"}

    evaluated = allowed_empty = 0
    unexpected: list[str] = []
    for uid, dashboard in loaded.items():
        queries = dashboards.panel_queries(dashboard)
        known = dashboards.variables(dashboard)
        for choice, query in itertools.product(_variable_choices(prometheus, dashboard, start, end), queries):
            expr = dashboards.substitute(query.expr, known, choice, time_context)
            if query.instant:
                result = prometheus.instant(expr, end)
            else:
                result = prometheus.range(expr, start, end, step)
            evaluated += 1
            if result:
                continue
            if not expected_empty(uid, query.panel, choice):
                unexpected.append(f"{uid} / {query.panel} ({query.ref_id}, {choice}): {expr}")
                continue
            # Expected to be empty: because a series it reads does not exist here, not by mistake.
            lookback = f"[{end - start:.0f}s]"
            present = [
                s
                for s in _selectors(expr)
                if prometheus.instant(f"count(last_over_time({s}{lookback}))", end)
            ]
            assert len(present) < len(_selectors(expr)), (
                f"{uid} / {query.panel} is empty although its series exist: {expr}"
            )
            allowed_empty += 1

    assert not unexpected, "panels returned nothing:\n" + "\n".join(unexpected)
    assert evaluated > 100, evaluated
    print(f"{evaluated} queries over {end - start:.0f} s of live data; {allowed_empty} empty as expected")


def _scrape(url: str) -> str:
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as response:
        return response.read().decode()


@pytest.mark.parametrize("service", ["worker", "exporter", "webhook"])
def test_scraped_metrics_pass_promtool(
    stack: Stack, incident_window: tuple[float, float], service: str
) -> None:
    text = _scrape(stack.urls[service])
    lint = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True)
    assert lint.returncode == 0 and not (lint.stdout + lint.stderr).strip(), lint.stdout + lint.stderr
    if service == "worker":
        assert "slo_pipeline_retrain_queue_up 1.0" in text
        assert 'slo_pipeline_retrain_jobs{status="queued"}' in text


def test_every_printed_url_opens_a_page(stack: Stack) -> None:
    for name in ("simulator", "exporter", "webhook", "worker"):
        with urllib.request.urlopen(f"{stack.urls[name]}/", timeout=10) as response:
            page = response.read().decode()
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/html")
        assert '<a href="/metrics">' in page, (name, page)
        for link in re.findall(r'href="([^"]+)"', page):
            with urllib.request.urlopen(f"{stack.urls[name]}{link}", timeout=10) as linked:
                assert linked.status == 200, (name, link)


def test_rules_sync_metrics(stack: Stack, tmp_path: Path) -> None:
    """`rules sync` serves its landing page and lint-clean /metrics that count its ticks."""
    port = launch.free_port()
    sync = launch.start_service(
        "slo-sync",
        lambda _: [
            sys.executable,
            "-m",
            "slo_pipeline.cli",
            "rules",
            "sync",
            "--out",
            str(tmp_path / "slo-rules"),
            "--metrics-listen",
            f"127.0.0.1:{port}",
        ],
        port=port,
        log_path=tmp_path / "slo-sync.log",
        ready_path="/metrics",
        env={**stack.env, "SLO_PIPELINE_SLO_SYNC_INTERVAL": "0.5"},
    )
    try:
        installed = 'slo_pipeline_rules_sync_ticks_total{outcome="installed"} 1.0'
        text = wait_until(
            lambda: installed in (page := _scrape(sync.url)) and page,
            timeout=30,
            describe="an installed tick",
            interval=0.5,
            ignoring=(Exception,),
        )
        lint = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True)
        assert lint.returncode == 0 and not (lint.stdout + lint.stderr).strip(), lint.stdout + lint.stderr
        assert "slo_pipeline_rules_sync_last_success_timestamp_seconds 1." in text
        with urllib.request.urlopen(f"{sync.url}/", timeout=10) as response:
            assert '<a href="/metrics">' in response.read().decode()
    finally:
        sync.stop()


# What Sloth's "SLO / Detail" Grafana dashboard (grafana.com id 14348) reads, per service and SLO:
# its variables, each SLI window, the objective, burn rate, remaining budget, the join of its month
# burn-down chart (on sloth_id) and its alert stats (ALERTS by sloth_severity). Written from the
# names, labels and joins it uses, without its `or on() vector(0)` defaults, which would hide a
# missing series.
SLOTH_DETAIL_QUERIES = (
    'slo:objective:ratio{sloth_service="$service", sloth_slo="$slo"}',
    'slo:current_burn_rate:ratio{sloth_service="$service", sloth_slo="$slo"}',
    'slo:period_error_budget_remaining:ratio{sloth_service="$service", sloth_slo="$slo"}',
    *(
        f'1 - max(slo:sli_error:ratio_rate{window}{{sloth_service="$service", sloth_slo="$slo"}})'
        for window in ("5m", "30m", "1h", "2h", "6h", "1d", "3d")
    ),
    'slo:sli_error:ratio_rate1h{sloth_service="$service", sloth_slo="$slo"} / on (sloth_id) '
    '(slo:error_budget:ratio{sloth_service="$service", sloth_slo="$slo"} * on () group_left () '
    "(24 * days_in_month()))",
)


def test_sloth_detail_dashboard_reads_our_rules(stack: Stack, incident_window: tuple[float, float]) -> None:
    prometheus = PrometheusAPI(stack.urls["prometheus"])
    _, end = incident_window
    services = prometheus.label_values("slo:objective:ratio", "sloth_service", end - 60, end)
    assert services == ["demo"]
    slos = prometheus.label_values('slo:objective:ratio{sloth_service="demo"}', "sloth_slo", end - 60, end)
    assert slos == ["demo-availability", "demo-checkout-availability", "demo-latency"]
    for slo in slos:
        for query in SLOTH_DETAIL_QUERIES:
            expr = query.replace("$service", "demo").replace("$slo", slo)
            assert prometheus.instant(expr, end), f"no data for Sloth's query {expr}"
    # The 30d window exists for the 30-day SLO only (Sloth's dashboard offers it for every SLO).
    assert prometheus.instant('slo:sli_error:ratio_rate30d{sloth_slo="demo-availability"}', end)
    # Its alert stats: the burn-rate alerts carry sloth_service, sloth_slo and sloth_severity.
    page = 'ALERTS{sloth_service="demo", sloth_slo="demo-latency", sloth_severity="page"}'
    assert prometheus.range(page, end - 300, end, 5), "no page-severity burn-rate alert of the latency SLO"
