"""`make chaos`, the pipeline's part: the worker, MLflow and Prometheus failing under real services.

One environment serves the three scenarios: a real Prometheus backfilled with simulated history
(slo_pipeline/devstack/simulator), a real `mlflow server` (sqlite store, own process group), a
fresh database on the shared PostgreSQL, and the real `slo-pipeline worker` / `exporter`
processes. See docs/reliability.md for what each row shows.

- worker-kill: one retrain job; the worker is SIGKILLed while it fits, its successor is
  SIGKILLed while its MLflow run is open (logging the model, before promotion); a third worker
  finishes the job. Counted: job finished once, @champion moves, runs left RUNNING.
- mlflow-down: with the exporter scoring and a retrain job queued, the MLflow server's process
  group is stopped for `--mlflow-outage` seconds (5 minutes) and started again on the same port.
- prometheus-faults: the exporter reads through a proxy in front of the real Prometheus that,
  for one detector's query only, answers 500, hangs, drips, sends an answer over the size cap,
  cuts the answer short, or drops half the series' newest points, one fault after another.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import requests
from chaos import SHARED_SERVER, Row, fresh_database, query

from slo_pipeline.devstack import launch
from slo_pipeline.devstack.simulator.history import write_history

DETECTOR = "chaos_request_rate"
OTHER = "chaos_error_rate"
DAY = 86400
EXPORTER_INTERVAL = 5.0
QUERY_TIMEOUT = 3.0
FAULT_CAP_BYTES = 2_000_000
PIPELINE = {
    "detectors": [
        {
            "name": DETECTOR,
            "query": "sum by (route) (rate(demo_http_requests_total[5m]))",
            "step_seconds": 60,
            "training_window_seconds": DAY,
            "n_estimators": 50,
            "false_alarms_per_week": 3,
        },
        {
            "name": OTHER,
            "query": 'sum by (route) (rate(demo_http_requests_total{code=~"5.."}[5m])) '
            "/ sum by (route) (rate(demo_http_requests_total[5m]))",
            "step_seconds": 60,
            "training_window_seconds": DAY,
            "n_estimators": 50,
            "false_alarms_per_week": 3,
        },
    ]
}


class Environment:
    """The services every scenario uses; `close()` stops every process started."""

    def __init__(self, scratch: Path, database_url: str) -> None:
        self.scratch = scratch
        self.database_url = database_url
        self.processes: list[launch.ManagedProcess] = []
        self.third_worker: launch.ManagedProcess | None = None
        now = time.time()
        history = scratch / "history.om"
        write_history(
            history, start=now - 1.3 * DAY, end=now, step_seconds=60, seed=7, written_until=now - 60
        )
        tsdb = scratch / "tsdb"
        launch.backfill_openmetrics(history, tsdb)
        config = launch.write_prometheus_config(
            scratch / "prometheus.yml", scrape_targets={}, alertmanager_url=None, rule_files=()
        )
        self.prometheus = self._keep(launch.start_prometheus(config_file=config, data_dir=tsdb))
        self.mlflow_port = launch.free_port()
        self.mlflow = self.start_mlflow()
        self.config = scratch / "slo-pipeline.yml"
        self.config.write_text(json.dumps(PIPELINE), "utf-8")

    def _keep(self, process: launch.ManagedProcess) -> launch.ManagedProcess:
        self.processes.append(process)
        return process

    def start_mlflow(self) -> launch.ManagedProcess:
        bin_dir = Path(sys.executable).parent
        store = f"sqlite:///{self.scratch / 'mlflow.db'}"
        artifacts = self.scratch / "mlartifacts"

        def argv(port: int) -> list[str]:
            return [
                str(bin_dir / "mlflow"),
                "server",
                "--backend-store-uri",
                store,
                "--default-artifact-root",
                str(artifacts),
                "--no-serve-artifacts",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                "1",
            ]

        env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
        return self._keep(
            launch.start_service(
                "mlflow-server",
                argv,
                port=self.mlflow_port,
                log_path=self.scratch / "mlflow.log",
                ready_path="/health",
                env=env,
                cwd=self.scratch,
                ready_timeout=180,
            )
        )

    def env(self, **extra: str) -> dict[str, str]:
        return {
            **os.environ,
            "DATABASE_URL": self.database_url,
            "PROMETHEUS_URL": self.prometheus.url,
            "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{self.mlflow_port}",
            "SLO_PIPELINE_CONFIG": str(self.config),
            "SLO_PIPELINE_DATA_LAKE": str(self.scratch / "lake"),
            "SLO_PIPELINE_WORKER_LEASE": "6",
            "SLO_PIPELINE_WORKER_POLL": "0.5",
            "SLO_PIPELINE_WORKER_RETRY_BACKOFF": "10",
            "SLO_PIPELINE_EXPORTER_INTERVAL": str(EXPORTER_INTERVAL),
            "SLO_PIPELINE_QUERY_TIMEOUT": str(QUERY_TIMEOUT),
            **extra,
        }

    def start_worker(self, name: str) -> launch.ManagedProcess:
        cli = [sys.executable, "-m", "slo_pipeline.cli", "--log-level", "INFO", "worker"]
        return self._keep(
            launch.start_service(
                name,
                lambda _port: [*cli, "--worker-id", name, "--metrics-listen", ""],
                port=None,
                log_path=self.scratch / f"{name}.log",
                ready_path=None,
                env=self.env(),
            )
        )

    def start_exporter(
        self, prometheus_url: str | None = None, query_timeout: float = QUERY_TIMEOUT
    ) -> launch.ManagedProcess:
        cli = [sys.executable, "-m", "slo_pipeline.cli", "--log-level", "INFO", "exporter"]
        extra = {"PROMETHEUS_URL": prometheus_url} if prometheus_url else {}
        extra["PROMETHEUS_MAX_RESPONSE_BYTES"] = str(FAULT_CAP_BYTES)
        extra["SLO_PIPELINE_QUERY_TIMEOUT"] = str(query_timeout)
        return self._keep(
            launch.start_service(
                "exporter",
                lambda port: [*cli, "--listen", f"127.0.0.1:{port}"],
                port=None,
                log_path=self.scratch / "exporter.log",
                ready_path="/healthz",
                env=self.env(**extra),
                ready_timeout=120,
            )
        )

    def enqueue(self, detector: str) -> int:
        rows = query(
            self.database_url,
            "INSERT INTO retrain_jobs (detector, reason) VALUES (%s, 'chaos') RETURNING id",
            (detector,),
        )
        return int(rows[0][0])

    def job(self, job_id: int) -> dict[str, Any]:
        columns = "status, attempts, transient_failures, model_version, decision, error, finished_at"
        row = query(self.database_url, f"SELECT {columns} FROM retrain_jobs WHERE id = %s", (job_id,))[0]
        return dict(zip(columns.split(", "), row, strict=True))

    def mlflow_client(self) -> Any:
        from mlflow import MlflowClient

        return MlflowClient(tracking_uri=f"http://127.0.0.1:{self.mlflow_port}")

    def close(self) -> None:
        for process in reversed(self.processes):
            process.stop()


def _kill(process: launch.ManagedProcess) -> None:
    os.killpg(process.pid, signal.SIGKILL)
    process.popen.wait(timeout=10)


def _wait(condition: Callable[[], Any], timeout: float, interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    return condition()


def _log_has(process: launch.ManagedProcess, pattern: str) -> bool:
    try:
        return re.search(pattern, process.log_path.read_text("utf-8", "replace")) is not None
    except FileNotFoundError:
        return False


def _runs(env: Environment, detector: str) -> list[Any]:
    client = env.mlflow_client()
    experiment = client.get_experiment_by_name(f"slo-pipeline/{detector}")
    return [] if experiment is None else list(client.search_runs([experiment.experiment_id]))


def _promotions(env: Environment, detector: str) -> list[str]:
    versions = env.mlflow_client().search_model_versions(f"name = '{detector}'")
    return sorted(v.version for v in versions if v.tags.get("slo_pipeline.decision") == "promoted")


# --- worker SIGKILLed twice ---------------------------------------------------------------------


def worker_kill(env: Environment) -> Row:
    job = env.enqueue(DETECTOR)
    first = env.start_worker("chaos-worker-1")
    _wait(lambda: _log_has(first, rf"claimed job {job}\b"), 120, 0.05)
    time.sleep(1.5)  # past the history read, into the fit (the log shows how far it got)
    runs_at_first_kill = len(_runs(env, DETECTOR))
    _kill(first)
    registered_before_kill = _log_has(first, r"registered ")
    first_kill = time.monotonic()

    second = env.start_worker("chaos-worker-2")

    def run_open() -> bool:
        return any(
            r.info.status == "RUNNING" and r.data.tags.get("slo_pipeline.retrain_job") == str(job)
            for r in _runs(env, DETECTOR)
        )

    opened = _wait(run_open, 240, 0.05)  # the successor takes over once the 6 s lease expired
    _kill(second)
    second_kill = time.monotonic()
    left_running = sum(r.info.status == "RUNNING" for r in _runs(env, DETECTOR))

    env.third_worker = env.start_worker("chaos-worker-3")
    finished = _wait(lambda: env.job(job)["status"] in ("succeeded", "failed"), 300, 0.5)
    done = time.monotonic()
    row = env.job(job)
    runs = _runs(env, DETECTOR)
    statuses: dict[str, int] = {}
    for run in runs:
        statuses[run.info.status] = statuses.get(run.info.status, 0) + 1
    promotions = _promotions(env, DETECTOR)
    champion = (
        env.mlflow_client().get_model_version_by_alias(DETECTOR, "champion").version if promotions else None
    )
    notes = (
        f"kill 1 at claim + 1.5 s ({runs_at_first_kill} runs, registered: {registered_before_kill}), "
        f"kill 2 inside the open MLflow run "
        f"({'seen' if opened else 'NOT seen'}; {left_running} RUNNING after it); job {row['status']} "
        f"after {row['attempts']} claims, decision {row['decision']}; runs {statuses}; "
        f"promoted versions {promotions}, @champion v{champion}"
    )
    return Row(
        scenario="worker SIGKILLed twice mid-training (1 retrain job)",
        sent=1,
        stored=int(row["status"] == "succeeded"),
        lost=int(not finished or row["status"] != "succeeded"),
        duplicated=max(0, len(promotions) - 1),
        server_errors=statuses.get("RUNNING", 0),
        recovery=f"{done - second_kill:.0f} s (first kill -> done {done - first_kill:.0f} s)",
        notes=notes,
    )


# --- MLflow down --------------------------------------------------------------------------------


def _scrape(url: str) -> tuple[int, dict[str, float]]:
    try:
        response = requests.get(f"{url}/metrics", timeout=10)
    except requests.RequestException:
        return -1, {}
    values: dict[str, float] = {}
    for line in response.text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            try:
                values[name] = float(value)
            except ValueError:
                continue
    return response.status_code, values


def _scores(page: dict[str, float], detector: str) -> int:
    return sum(1 for key in page if key.startswith(f'anomaly_score{{detector="{detector}"'))


def _span(seconds: float) -> str:
    return f"{seconds / 60:g} min" if seconds >= 60 else f"{seconds:g} s"


def mlflow_down(env: Environment, outage: float) -> list[Row]:
    # The product's default query timeout is 30 s; 10 s keeps a loaded machine's slow query from
    # passing for an MLflow effect (the faults scenario uses 3 s on purpose).
    exporter = env.start_exporter(query_timeout=10.0)
    _wait(lambda: _scores(_scrape(exporter.url)[1], DETECTOR) > 0, 120, 1.0)
    worker = env.start_worker("chaos-worker-4")
    env.mlflow.stop()  # SIGTERM to the server's process group
    down_at = time.monotonic()
    job = env.enqueue(DETECTOR)
    scrapes = scored = errors = 0
    missed: list[str] = []  # why a scrape had no scores
    statuses: set[str] = set()
    max_retries = 0
    while time.monotonic() - down_at < outage:
        status, page = _scrape(exporter.url)
        scrapes += 1
        errors += status >= 500 or status < 0
        up = page.get(f'anomaly_exporter_up{{detector="{DETECTOR}"}}') == 1
        scored += up and _scores(page, DETECTOR) > 0
        if not (up and _scores(page, DETECTOR) > 0):
            failed = {
                key.split('reason="')[1].rstrip('"}'): int(value)
                for key, value in page.items()
                if key.startswith(f'anomaly_exporter_query_errors_total{{detector="{DETECTOR}"') and value
            }
            up_value = page.get(f'anomaly_exporter_up{{detector="{DETECTOR}"}}')
            missed.append(f"up={up_value} errors {failed}")
        current = env.job(job)
        statuses.add(current["status"])
        max_retries = max(max_retries, current["transient_failures"])
        time.sleep(5.0)
    _, page = _scrape(exporter.url)
    registry_errors = page.get(f'anomaly_exporter_registry_errors_total{{detector="{DETECTOR}"}}', 0)
    stale_for = time.time() - page.get(
        f'anomaly_exporter_registry_last_success_timestamp_seconds{{detector="{DETECTOR}"}}', 0
    )
    during = env.job(job)
    env.processes.remove(env.mlflow)
    env.mlflow = env.start_mlflow()
    back_at = time.monotonic()

    def registry_answers() -> bool:
        _, current = _scrape(exporter.url)
        key = f'anomaly_exporter_registry_last_success_timestamp_seconds{{detector="{DETECTOR}"}}'
        return current.get(key, 0) > time.time() - 2 * EXPORTER_INTERVAL

    _wait(registry_answers, 120, 1.0)
    exporter_back = time.monotonic() - back_at
    _wait(lambda: env.job(job)["status"] in ("succeeded", "failed"), 1200, 1.0)
    job_back = time.monotonic() - back_at
    final = env.job(job)
    worker.stop()
    exporter.stop()
    return [
        Row(
            scenario=f"MLflow down {_span(outage)}: exporter (scrapes every 5 s)",
            sent=scrapes,
            stored=scored,
            lost=scrapes - scored,
            duplicated=0,
            server_errors=errors,
            recovery=f"{exporter_back:.0f} s",
            notes=(
                f"the loaded model kept scoring; anomaly_exporter_registry_errors_total "
                f"{registry_errors:.0f}, registry last success {stale_for:.0f} s old at the end of the "
                f"outage; scrapes without scores: {missed}"
            ),
        ),
        Row(
            scenario=f"MLflow down {_span(outage)}: retrain job queued during it",
            sent=1,
            stored=int(final["status"] == "succeeded"),
            lost=int(final["status"] != "succeeded"),
            duplicated=0,
            server_errors=0,
            recovery=f"{job_back:.0f} s",
            notes=(
                f"statuses seen while down {sorted(statuses)}, {max_retries} transient retries "
                f"(back-off 10 s doubling), error then: {str(during['error'])[:90]!r}; "
                f"finally {final['status']} ({final['decision']}) after {final['transient_failures']} retries"
            ),
        ),
    ]


# --- Prometheus faults --------------------------------------------------------------------------

FAULTS = ("status_500", "hang", "drip", "oversized", "partial", "cut")


class FaultProxy:
    """Forwards the Prometheus API to the real server; a query that mentions `target` gets the
    current `fault` instead (None: forwarded untouched)."""

    def __init__(self, upstream: str, target: str) -> None:
        self.upstream, self.target = upstream.rstrip("/"), target
        self.fault: str | None = None
        self.injected = 0
        self.stopping = threading.Event()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                upstream = requests.get(proxy.upstream + self.path, timeout=30)
                body, fault = upstream.content, proxy.fault
                query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query).get("query", [""])[0]
                if fault is None or proxy.target not in query:
                    self._send(upstream.status_code, body)
                    return
                proxy.injected += 1
                if fault == "status_500":
                    self._send(500, b'{"status":"error","errorType":"internal","error":"chaos"}')
                elif fault == "hang":
                    proxy.stopping.wait(3 * QUERY_TIMEOUT)
                elif fault == "drip":
                    self._headers(200, len(body))
                    for index in range(len(body)):
                        if proxy.stopping.wait(0.05):
                            return
                        self.wfile.write(body[index : index + 1])
                        self.wfile.flush()
                elif fault == "oversized":
                    padded = body + b" " * (FAULT_CAP_BYTES + 1)  # valid JSON, over the cap
                    self._send(200, padded)
                elif fault == "cut":
                    self._headers(200, len(body))
                    self.wfile.write(body[: len(body) // 2])
                    self.close_connection = True
                elif fault == "partial":
                    answer = json.loads(body)
                    for index, series in enumerate(answer["data"]["result"]):
                        if index % 2:
                            series["values"] = series["values"][: len(series["values"]) // 2]
                    self._send(200, json.dumps(answer).encode())

            def _headers(self, status: int, length: int) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(length))
                self.end_headers()

            def _send(self, status: int, body: bytes) -> None:
                try:
                    self._headers(status, len(body))
                    self.wfile.write(body)
                except OSError:
                    pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # the exporter hanging up on a fault is the point

        self.server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.stopping.set()
        self.server.shutdown()
        self.server.server_close()


def prometheus_faults(env: Environment, cycles_per_fault: int) -> Row:
    proxy = FaultProxy(env.prometheus.url, 'code=~"5.."')  # only the second detector's query
    exporter = env.start_exporter(proxy.url)
    try:
        _wait(lambda: _scores(_scrape(exporter.url)[1], DETECTOR) > 0, 120, 1.0)
        cycles_key = "anomaly_exporter_cycle_duration_seconds_count"
        good_failures = f'anomaly_exporter_query_errors_total{{detector="{DETECTOR}"'
        _, first_page = _scrape(exporter.url)
        first_cycle = first_page.get(cycles_key, 0)
        good_failed_before = sum(v for k, v in first_page.items() if k.startswith(good_failures))
        good_down_polls = 0
        partial_unscored = 0.0
        for fault in FAULTS:
            proxy.fault = fault
            _, page = _scrape(exporter.url)
            start_cycles = page.get(cycles_key, 0)
            # The cycle in flight when the fault began may not have seen it: count whole ones.
            while page.get(cycles_key, 0) < start_cycles + cycles_per_fault + 1:
                time.sleep(1.0)
                _, page = _scrape(exporter.url)
                good_down_polls += page.get(f'anomaly_exporter_up{{detector="{DETECTOR}"}}') != 1
            if fault == "partial":
                partial_unscored = sum(
                    value
                    for key, value in page.items()
                    if key.startswith(f'anomaly_exporter_unscorable_series{{detector="{OTHER}"')
                )
        cycles = int(page.get(cycles_key, 0) - first_cycle)
        good_failed = int(sum(v for k, v in page.items() if k.startswith(good_failures)) - good_failed_before)
        proxy.fault = None
        healed_at = time.monotonic()
        _wait(
            lambda: _scrape(exporter.url)[1].get(f'anomaly_exporter_up{{detector="{OTHER}"}}') == 1, 120, 0.5
        )
        recovery = time.monotonic() - healed_at
        _, page = _scrape(exporter.url)
        final = {
            key.split('reason="')[1].rstrip('"}'): int(value)
            for key, value in page.items()
            if key.startswith(f'anomaly_exporter_query_errors_total{{detector="{OTHER}"') and value
        }
    finally:
        exporter.stop()
        proxy.close()
    return Row(
        scenario=f"Prometheus faults on one detector's query ({', '.join(FAULTS)})",
        sent=cycles,
        stored=cycles - good_failed,
        lost=good_failed,
        duplicated=0,
        server_errors=proxy.injected,
        recovery=f"{recovery:.0f} s",
        notes=(
            f"the other detector's failed cycles {good_failed} (up=0 in {good_down_polls} scrapes); "
            f"faulty detector's query_errors_total by reason {final}; "
            f"partial answers: {partial_unscored:.0f} series counted unscorable, the rest scored"
        ),
    )


def run(scratch: Path, *, mlflow_outage: float, cycles_per_fault: int, only: str | None) -> list[Row]:
    rows: list[Row] = []
    folder = scratch / "pipeline"
    folder.mkdir(parents=True, exist_ok=True)
    with fresh_database(SHARED_SERVER) as database_url:
        env = Environment(folder, database_url)
        try:
            # Every scenario needs champions: the worker-kill scenario makes the first one, the
            # surviving worker then trains the second detector.
            rows.append(worker_kill(env))
            print(f"worker-kill done: {rows[-1]}", flush=True)
            second = env.enqueue(OTHER)
            _wait(lambda: env.job(second)["status"] in ("succeeded", "failed"), 600, 1.0)
            print(f"second detector trained: {env.job(second)}", flush=True)
            if env.third_worker is not None:
                env.third_worker.stop()
            if only in (None, "prometheus"):
                rows.append(prometheus_faults(env, cycles_per_fault))
                print(f"prometheus-faults done: {rows[-1]}", flush=True)
            if only in (None, "mlflow"):
                rows.extend(mlflow_down(env, mlflow_outage))
        finally:
            env.close()
    return rows
