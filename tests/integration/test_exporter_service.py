"""The exporter as a real subprocess against a real Prometheus and a real MLflow registry.

Setup (once for the module): a small HTTP target in this process exposes four latency series;
their last hour is backfilled with promtool at the same labels, so Prometheus holds one history
that continues live. A model trained on that history (fetched back through `fetch_range`) is
registered in an MLflow sqlite registry under tmp and made champion. Then `slo-pipeline exporter`
runs as its own process, scoring every second. The tests run in file order on that one stack;
the Prometheus outage test comes last because it restarts Prometheus.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import yaml

from slo_pipeline.adapters import registry
from slo_pipeline.adapters.prometheus import fetch_range
from slo_pipeline.core.features import FEATURE_NAMES
from slo_pipeline.core.frame_scoring import ServingParams
from slo_pipeline.core.training import fit_detector_model
from slo_pipeline.devstack import launch
from slo_pipeline.settings import DetectorConfig, FeatureWindows, PipelineConfig, Settings, load_settings
from tests.fixtures.hostile_models import move_champion_directly, register_pickle_version
from tests.fixtures.paths import REPO_ROOT
from tests.fixtures.waiting import wait_until

pytestmark = pytest.mark.integration

METRIC = "exporter_test_latency_seconds"
JOB = "exporter-test-target"
ROUTES = ("/a", "/b", "/c", "/vanishing")
STEP = 5
HISTORY_SECONDS = 3600
WINDOWS = FeatureWindows(short=2, medium=4, long=8)
LATENCY = DetectorConfig(
    name="latency",
    query=METRIC,
    step_seconds=STEP,
    windows=WINDOWS,
    n_estimators=50,
    min_training_samples=200,
    slo="checkout_availability",
)
BROKEN_QUERY = DetectorConfig(
    name="broken_query", query=f"sum(rate({METRIC}[1m])", step_seconds=STEP, windows=WINDOWS
)
NO_CHAMPION = DetectorConfig(name="no_champion", query=METRIC, step_seconds=STEP, windows=WINDOWS)
INTERVAL_SECONDS = 1.0


def route_level(route: str) -> float:
    return 0.1 + 0.05 * ROUTES.index(route)


class LatencyTarget:
    """A scrape target whose exposed routes the test can change while Prometheus scrapes it."""

    def __init__(self) -> None:
        self.routes = list(ROUTES)
        self.factors: dict[str, float] = {}  # route -> multiplier, to cause an anomaly
        self._rng = np.random.default_rng(11)
        self._lock = threading.Lock()
        target = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = target.exposition().encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def exposition(self) -> str:
        with self._lock:
            lines = [f"# TYPE {METRIC} gauge"]
            for route in self.routes:
                value = route_level(route) * (1 + 0.02 * self._rng.standard_normal())
                value *= self.factors.get(route, 1.0)
                lines.append(f'{METRIC}{{route="{route}"}} {value:.6f}')
        return "\n".join(lines) + "\n"

    def set_factor(self, route: str, factor: float) -> None:
        with self._lock:
            self.factors[route] = factor

    def drop_route(self, route: str) -> None:
        with self._lock:
            self.routes.remove(route)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def write_history(path: Path, instance: str, end: int) -> None:
    """The last hour of every route at the labels Prometheus will attach when scraping live."""
    rng = np.random.default_rng(3)
    times = np.arange(end - HISTORY_SECONDS, end, STEP)
    lines = [f"# TYPE {METRIC} gauge"]
    for route in ROUTES:
        values = route_level(route) * (1 + 0.02 * rng.standard_normal(len(times)))
        labels = f'{METRIC}{{instance="{instance}",job="{JOB}",route="{route}"}}'
        lines.extend(f"{labels} {v:.6f} {t}" for v, t in zip(values.tolist(), times.tolist(), strict=True))
    lines.append("# EOF")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


@dataclass
class Stack:
    folder: Path
    settings: Settings
    target: LatencyTarget
    prometheus: launch.ManagedProcess
    prometheus_config: Path
    exporter: subprocess.Popen[bytes]
    exporter_url: str
    exporter_log: Path

    def scrape(self) -> str:
        assert self.exporter.poll() is None, f"exporter exited:\n{self.exporter_log.read_text()[-3000:]}"
        with urllib.request.urlopen(f"{self.exporter_url}/metrics", timeout=5) as response:
            return response.read().decode()

    def samples(self) -> dict[str, float]:
        return parse_samples(self.scrape())

    def wait_for(
        self, what: str, condition: Callable[[dict[str, float]], bool], timeout: float = 60.0
    ) -> dict[str, float]:
        # On failure: the last page's scores and up series, what the exporter published when we gave up.
        wanted = ("anomaly_score", "anomaly_exporter_up")
        return wait_until(
            self.samples,
            timeout=timeout,
            describe=what,
            until=condition,
            show=lambda page: str({k: v for k, v in page.items() if k.startswith(wanted)}),
            detail=lambda: f"exporter log:\n{self.exporter_log.read_text()[-3000:]}",
        )


def parse_samples(text: str) -> dict[str, float]:
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            series, _, value = line.rpartition(" ")
            samples[series] = float(value)
    return samples


def scores(page: dict[str, float], detector: str = "latency") -> dict[str, float]:
    prefix = f'anomaly_score{{detector="{detector}"'
    return {series: value for series, value in page.items() if series.startswith(prefix)}


def routes_scored(page: dict[str, float]) -> set[str]:
    return {m.group(1) for series in scores(page) if (m := re.search(r'route="([^"]*)"', series))}


def model_versions(page: dict[str, float], detector: str = "latency") -> set[str]:
    prefix = f'anomaly_model_info{{detector="{detector}"'
    return {re.search(r'model_version="(\d+)"', s).group(1) for s in page if s.startswith(prefix)}  # type: ignore[union-attr]


def register(settings: Settings, detector: DetectorConfig, model: object, *, champion: bool) -> str:
    serving = ServingParams(detector.step_seconds, detector.false_alarms_per_week)
    registered = registry.log_and_register(
        settings,
        detector.name,
        model,
        params={},
        metrics={},
        serving=serving,  # type: ignore[arg-type]
    )
    if champion:
        registry.set_champion(settings, detector.name, registered.ref.version)
    return registered.ref.version


def wait_http(url: str, timeout: float, process: subprocess.Popen[bytes], log: Path) -> None:
    def answers_200() -> bool:
        with urllib.request.urlopen(url, timeout=2) as response:  # HTTPError (not 200) is an OSError
            return response.status == 200

    wait_until(
        answers_200,
        timeout=timeout,
        describe=f"{url} to answer 200",
        ignoring=(OSError,),
        still_alive=lambda: process.poll() is None,
        detail=lambda: log.read_text()[-3000:],
    )


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    folder = tmp_path_factory.mktemp("exporter-service")
    target = LatencyTarget()
    started: list[launch.ManagedProcess] = []
    exporter: subprocess.Popen[bytes] | None = None
    try:
        now = int(time.time())
        history_end = now - now % STEP - STEP
        write_history(folder / "history.om", target.address, history_end)
        launch.backfill_openmetrics(folder / "history.om", folder / "prometheus-data")
        prometheus_config = launch.write_prometheus_config(
            folder / "prometheus.yml",
            scrape_targets={JOB: [target.address]},
            alertmanager_url=None,
            rule_files=[],
            scrape_interval="1s",
        )
        prometheus = launch.start_prometheus(
            config_file=prometheus_config, data_dir=folder / "prometheus-data"
        )
        started.append(prometheus)

        pipeline = PipelineConfig(detectors=[LATENCY, BROKEN_QUERY, NO_CHAMPION])
        (folder / "pipeline.yml").write_text(
            yaml.safe_dump(pipeline.model_dump(mode="json")), encoding="utf-8"
        )
        settings = load_settings(
            prometheus_url=prometheus.url,
            mlflow_tracking_uri=f"sqlite:///{folder / 'mlflow.db'}",
            mlflow_artifact_root=str(folder / "mlflow-artifacts"),
            config_path=folder / "pipeline.yml",
        )
        assert settings.pipeline == pipeline

        history = fetch_range(
            prometheus.url,
            METRIC,
            start=history_end - HISTORY_SECONDS + STEP,
            end=history_end,
            step_seconds=STEP,
        )
        assert history.n_series == len(ROUTES), history.labels
        model, _ = fit_detector_model(history.values, LATENCY)
        register(settings, LATENCY, model, champion=True)
        register(settings, BROKEN_QUERY, model, champion=True)

        port = launch.free_port()
        exporter_log = folder / "exporter.log"
        env = {
            **os.environ,
            "PROMETHEUS_URL": prometheus.url,
            "MLFLOW_TRACKING_URI": settings.mlflow_tracking_uri,
            "SLO_PIPELINE_MLFLOW_ARTIFACT_ROOT": settings.mlflow_artifact_root,
            "SLO_PIPELINE_CONFIG": str(folder / "pipeline.yml"),
            "SLO_PIPELINE_EXPORTER_INTERVAL": str(INTERVAL_SECONDS),
            "SLO_PIPELINE_QUERY_TIMEOUT": "5",
        }
        with exporter_log.open("wb") as log:
            exporter = subprocess.Popen(
                [sys.executable, "-m", "slo_pipeline.cli", "exporter", f"--listen=127.0.0.1:{port}"],
                cwd=REPO_ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/-/ready", 90, exporter, exporter_log)
        running = Stack(folder, settings, target, prometheus, prometheus_config, exporter, url, exporter_log)
        yield running
        started.append(running.prometheus)  # the outage test replaces it with a restarted one
    finally:
        if exporter is not None:
            with_group_stopped(exporter)
        for process in started:
            process.stop()
        target.close()


def with_group_stopped(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=15)


def test_scrape_has_a_score_per_series_and_passes_promtool(stack: Stack) -> None:
    page = stack.wait_for("a score for every route", lambda p: routes_scored(p) == set(ROUTES))
    for series, value in scores(page).items():
        assert 'slo="checkout_availability"' in series and f'job="{JOB}"' in series
        assert np.isfinite(value) and value >= 0
    assert page['anomaly_exporter_up{detector="latency"}'] == 1
    assert page['anomaly_exporter_series{detector="latency"}'] == len(ROUTES)
    assert model_versions(page) == {"1"}

    promtool = shutil.which("promtool")
    assert promtool is not None, "promtool is required (Debian package 'prometheus')"
    lint = subprocess.run(
        [promtool, "check", "metrics"], input=stack.scrape(), capture_output=True, text=True, timeout=30
    )
    assert lint.returncode == 0 and lint.stdout == "" and lint.stderr == "", lint.stdout + lint.stderr


def drivers(page: dict[str, float]) -> dict[str, str]:
    """route -> driver of the latency detector's anomaly_driver_info series."""
    found = {}
    for series in page:
        if series.startswith('anomaly_driver_info{detector="latency"'):
            labels = dict(re.findall(r'(\w+)="([^"]*)"', series))
            found[labels["route"]] = labels["driver"]
    return found


def test_an_anomalous_series_gets_its_driver_and_the_page_stays_promtool_clean(stack: Stack) -> None:
    assert "# TYPE anomaly_driver_info gauge" in stack.scrape()
    stack.target.set_factor("/c", 20.0)
    try:
        page = stack.wait_for("a driver for the spiking route", lambda p: "/c" in drivers(p), 60)
        scrape = stack.scrape()
    finally:
        stack.target.set_factor("/c", 1.0)
    assert drivers(page)["/c"] in FEATURE_NAMES
    for series, value in page.items():
        if series.startswith("anomaly_driver_info{"):
            assert value == 1
            # Exactly the score's labels (job/instance of the scored series included) plus `driver`,
            # and only while that score is at least 1.
            score_series = "anomaly_score{" + series.split("{", 1)[1].rsplit(",driver=", 1)[0] + "}"
            assert page[score_series] >= 1, (series, page.get(score_series))
    assert "anomaly_driver_info{" in scrape
    lint = subprocess.run(
        [shutil.which("promtool") or "promtool", "check", "metrics"],
        input=scrape,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert lint.returncode == 0 and lint.stdout == "" and lint.stderr == "", lint.stdout + lint.stderr
    assert page['anomaly_exporter_explanation_errors_total{detector="latency"}'] == 0


def test_a_broken_query_does_not_stop_other_detectors(stack: Stack) -> None:
    page = stack.wait_for(
        "a counted query error",
        lambda p: (
            p.get('anomaly_exporter_query_errors_total{detector="broken_query",reason="http_status"}', 0) >= 2
        ),
    )
    assert page['anomaly_exporter_up{detector="broken_query"}'] == 0
    assert not scores(page, "broken_query")
    assert page['anomaly_exporter_up{detector="latency"}'] == 1
    assert routes_scored(page) == set(ROUTES)
    assert "parse error" in stack.exporter_log.read_text()


def test_a_detector_without_champion_is_down_and_says_why(stack: Stack) -> None:
    page = stack.samples()
    assert page['anomaly_exporter_up{detector="no_champion"}'] == 0
    assert not scores(page, "no_champion")
    assert "no_champion@champion" in stack.exporter_log.read_text()


def test_a_new_champion_is_picked_up_and_a_broken_one_is_not(stack: Stack) -> None:
    history = fetch_range(
        stack.prometheus.url, METRIC, start=time.time() - HISTORY_SECONDS, end=time.time(), step_seconds=STEP
    )
    retrained, _ = fit_detector_model(history.values, LATENCY, seed=1)
    new_version = register(stack.settings, LATENCY, retrained, champion=True)
    page = stack.wait_for(f"model version {new_version}", lambda p: model_versions(p) == {new_version}, 30)
    assert page['anomaly_exporter_model_swaps_total{detector="latency"}'] >= 2

    # A version whose metadata no longer matches the code's features cannot be served.
    unservable = dataclasses.replace(retrained, feature_names=("feature_this_code_does_not_build",))
    broken_version = register(stack.settings, LATENCY, unservable, champion=True)
    page = stack.wait_for(
        "a counted model load error",
        lambda p: p['anomaly_exporter_model_load_errors_total{detector="latency"}'] >= 1,
        30,
    )
    cycles = page["anomaly_exporter_cycle_duration_seconds_count"]
    page = stack.wait_for(
        "two more cycles", lambda p: p["anomaly_exporter_cycle_duration_seconds_count"] >= cycles + 2
    )
    assert model_versions(page) == {new_version}, f"v{broken_version} must not be swapped in"
    assert page['anomaly_exporter_up{detector="latency"}'] == 1
    assert routes_scored(page) == set(ROUTES)
    assert f"champion v{broken_version} was not swapped in" in stack.exporter_log.read_text()


def test_a_pickled_champion_is_refused_and_the_loaded_model_keeps_serving(stack: Stack) -> None:
    serving = model_versions(stack.samples())
    assert serving, "a model serves before the attack"
    marker = stack.folder / "pickle-payload-ran"
    hostile = register_pickle_version(stack.settings, LATENCY.name, marker)
    move_champion_directly(stack.settings, LATENCY.name, hostile)
    refusals = 'anomaly_exporter_model_load_refusals_total{detector="latency",reason="serialization_format"}'
    page = stack.wait_for("a counted refusal", lambda p: p[refusals] >= 1, 60)
    cycles = page["anomaly_exporter_cycle_duration_seconds_count"]
    page = stack.wait_for(
        "two more cycles", lambda p: p["anomaly_exporter_cycle_duration_seconds_count"] >= cycles + 2
    )
    assert model_versions(page) == serving, f"v{hostile} must not be swapped in"
    assert page['anomaly_exporter_up{detector="latency"}'] == 1
    assert routes_scored(page) == set(ROUTES)
    assert not marker.exists(), "the exporter ran the pickled version's code"
    log = stack.exporter_log.read_text()
    assert f"champion v{hostile} was not swapped in" in log
    assert "refused to load (serialization_format)" in log


def test_a_series_that_vanishes_disappears(stack: Stack) -> None:
    stack.wait_for("a score for every route", lambda p: routes_scored(p) == set(ROUTES))
    stack.target.drop_route("/vanishing")
    page = stack.wait_for("the vanished route to go", lambda p: "/vanishing" not in routes_scored(p), 60)
    assert routes_scored(page) == set(ROUTES) - {"/vanishing"}
    assert not any('route="/vanishing"' in series for series in page if series.startswith("anomaly_tail"))


def test_prometheus_outage_keeps_metrics_up_and_scores_return(stack: Stack) -> None:
    port, data_dir = stack.prometheus.port, stack.folder / "prometheus-data"
    stack.prometheus.stop()
    # The self-metrics (up) are live while the scores page is published at the end of the cycle:
    # a scrape in between sees up=0 next to the last page, so wait for the published page too.
    page = stack.wait_for(
        "up=0 and no stale scores while Prometheus is down",
        lambda p: p['anomaly_exporter_up{detector="latency"}'] == 0 and not scores(p),
    )
    # Nothing listens on the port: "unreachable", not a timeout or a bad answer.
    errors_during_outage = page[
        'anomaly_exporter_query_errors_total{detector="latency",reason="unreachable"}'
    ]
    assert errors_during_outage >= 1
    assert stack.exporter.poll() is None

    stack.prometheus = launch.start_prometheus(
        config_file=stack.prometheus_config, data_dir=data_dir, port=port
    )
    cycles = "anomaly_exporter_cycle_duration_seconds_count"
    cycles_when_ready = stack.samples()[cycles]
    page = stack.wait_for(
        "scores after Prometheus came back", lambda p: routes_scored(p) == set(ROUTES) - {"/vanishing"}, 30
    )
    # Counted in cycles, not seconds (a busy machine only makes cycles slower): the one in flight
    # when Prometheus came back, then the next one scores. The history is on disk: no re-warm-up.
    assert page[cycles] - cycles_when_ready <= 2, f"scores took {page[cycles] - cycles_when_ready:g} cycles"
    assert page['anomaly_exporter_up{detector="latency"}'] == 1
