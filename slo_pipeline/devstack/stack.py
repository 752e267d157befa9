"""Bring the whole stack up on loopback: the demo and the end-to-end test share this one path.

Order matters and mirrors production: PostgreSQL (migrated) -> history backfill -> Prometheus
(repo rules) -> SLO rules sync (optional) -> simulated service -> Alertmanager (repo routes) ->
first models -> webhook, worker, exporter, UI. Every process runs in its own process group and
`stop()` ends them all, newest first.
"""

from __future__ import annotations

import functools
import logging
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from slo_pipeline.devstack import launch
from slo_pipeline.devstack.launch import REPO_ROOT
from slo_pipeline.settings import Settings, load_settings

log = logging.getLogger(__name__)

DEMO_DATABASE = "slo_pipeline_demo"


@dataclass
class StackOptions:
    data_dir: Path
    pipeline_config: Path = REPO_ROOT / "slo-pipeline.yml"
    # SLOs applied to the database at start (their rules are the committed rules/slo/ files).
    slo_spec: Path | None = REPO_ROOT / "examples" / "slos.yml"
    history_days: float = 3.0
    history_step_seconds: float = 15.0
    # Rules and routes are the repo's; tests compress their durations (see launch.write_rules).
    rules_time_scale: float = 1.0
    scrape_interval: str = "15s"
    evaluation_interval: str = "15s"
    exporter_interval_seconds: float = 15.0
    alertmanager_group_wait: str | None = None
    alertmanager_group_interval: str | None = None
    alertmanager_repeat_interval: str | None = None
    retrain_cooldown_seconds: float = 3600.0
    worker_poll_seconds: float = 5.0
    database_url: str | None = None  # None: DATABASE_URL, else the local server, else a private one
    webhook_token: str = "demo-token"
    with_ui: bool = True
    ui_user: str = "demo"  # an editor account made (or given a new password) at every start
    train_first_models: bool = True
    # `slo-pipeline rules sync` re-renders the SLO rules Prometheus loads whenever the stored SLOs
    # change (e.g. a UI edit). Off by default: it writes production-timed rules, which would undo
    # the time compression of `rules_time_scale`, so only the demo turns it on.
    slo_sync: bool = False
    # Backfill the SLO recording rules over the history (promtool), as the demo does; tests that
    # do not look at SLO history skip the extra minute.
    backfill_slo_rules: bool = False
    slo_sync_interval_seconds: float = 10.0
    # `slo-pipeline lake sync`: the detectors' series copied into the stack's data lake every
    # `lake_sync_interval_seconds` (the demo's; tests of the lake drive the sync themselves).
    lake_sync: bool = False
    lake_sync_interval_seconds: float = 60.0
    # `mlflow ui` over the stack's tracking store (runs, datasets, versions, aliases); the demo's.
    mlflow_ui: bool = False

    def __post_init__(self) -> None:
        if self.slo_sync and self.rules_time_scale != 1.0:
            raise ValueError(
                "slo_sync renders rules at production timings, so it cannot be combined with "
                f"rules_time_scale={self.rules_time_scale}: it would overwrite the compressed SLO rules"
            )


@dataclass
class Stack:
    options: StackOptions
    settings: Settings | None = None
    processes: dict[str, object] = field(default_factory=dict)
    urls: dict[str, str] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    ui_sign_in: tuple[str, str] | None = None  # (user, password) of the UI's editor account

    def stop(self) -> None:
        for name, process in reversed(list(self.processes.items())):
            try:
                process.stop()  # type: ignore[attr-defined]
            except Exception as err:  # keep stopping the rest
                log.warning("could not stop %s cleanly: %s", name, err)
        self.processes.clear()

    def restart(self, name: str) -> None:
        """Stop and start one of our own services with the same port and environment."""
        starter = self._starters[name]
        self.processes[name].stop()  # type: ignore[attr-defined]
        self.processes[name] = starter()

    _starters: dict[str, Callable[[], object]] = field(default_factory=dict)


def _cli_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "slo_pipeline.cli", *args]


def ensure_ui_user(env: dict[str, str], name: str, password_file: Path) -> tuple[str, str]:
    """An editor account for the UI with a fresh random password, through the same CLI operators
    use (`ui user add`, or `ui user set` when an earlier run made it); the password is written to
    a 0600 file and returned for printing."""
    password = secrets.token_urlsafe(12)
    for argv in (["add", name, "--role", "editor"], ["set", name, "--role", "editor", "--password"]):
        done = subprocess.run(
            _cli_argv("ui", "user", *argv),
            input=password + "\n",
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=False,
        )
        if done.returncode == 0:
            password_file.write_text(password + "\n", encoding="utf-8")
            password_file.chmod(0o600)
            return name, password
        if "already exists" not in done.stderr:
            break
    raise RuntimeError(f"could not create the UI user {name!r}: {done.stderr.strip()}")


def resolve_database(options: StackOptions, stack: Stack) -> str:
    """DATABASE_URL, else the local server, else a private PostgreSQL in the data folder."""
    from slo_pipeline.adapters import postgres as db

    url = options.database_url or os.environ.get("DATABASE_URL")
    if url:
        db.ensure_database(url)
        return url
    local = f"postgresql://127.0.0.1:5432/{DEMO_DATABASE}"
    try:
        db.ensure_database(local)
        return local
    except Exception as err:
        log.info("no PostgreSQL on 127.0.0.1:5432 (%s); starting a private one", err)
    from slo_pipeline.devstack.pgserver import start_private_postgres

    server = start_private_postgres(options.data_dir / "postgres")
    stack.processes["postgres"] = server
    private_url = server.url.rsplit("/", 1)[0] + f"/{DEMO_DATABASE}"
    db.ensure_database(private_url)
    return private_url


def apply_slo_spec(database_url: str, spec_file: Path) -> None:
    """Store the SLOs (with an audit revision) so burn-rate pages can find their detectors."""
    from slo_pipeline.adapters import postgres as db
    from slo_pipeline.slo.spec import parse_specs
    from slo_pipeline.slo.store import apply_slos

    slos = parse_specs(spec_file.read_text(encoding="utf-8"), source=str(spec_file))
    conn = db.connect(database_url)
    try:
        apply_slos(conn, slos, changed_by="slo-pipeline stack", change_note=f"applied {spec_file.name}")
    finally:
        conn.close()


def slo_rules_dir_of(data: Path) -> Path:
    return data / "rules" / "slo"


def backfill_slo_rules(
    rule_files: list[Path], tsdb: Path, *, start: float, end: float, work_dir: Path
) -> int:
    """promtool's rule backfill of `rule_files` into `tsdb` (a Prometheus per dependency level)."""
    config = launch.write_prometheus_config(
        work_dir / "prometheus.yml", scrape_targets={}, alertmanager_url=None, rule_files=[]
    )
    added = launch.backfill_recording_rules(
        rule_files,
        data_dir=tsdb,
        start=start,
        end=end,
        work_dir=work_dir,
        start_prometheus=lambda data_dir: launch.start_prometheus(config_file=config, data_dir=data_dir),
        eval_interval_seconds=60.0,
    )
    shutil.rmtree(work_dir, ignore_errors=True)
    return added


def start_stack(options: StackOptions) -> Stack:
    stack = Stack(options=options)
    try:
        _start(stack)
    except BaseException:
        stack.stop()
        raise
    return stack


def _start(stack: Stack) -> None:
    from slo_pipeline.adapters import postgres as db
    from slo_pipeline.devstack.simulator.history import write_history

    options = stack.options
    data = options.data_dir
    data.mkdir(parents=True, exist_ok=True)

    database_url = resolve_database(options, stack)
    applied = db.migrate(database_url)
    log.info("database %s ready (%d migrations applied now)", database_url, len(applied))
    if options.slo_spec is not None:
        apply_slo_spec(database_url, options.slo_spec)

    ports = {
        name: launch.free_port()
        for name in ("simulator", "exporter", "webhook", "ui", "worker", "slo-sync", "lake-sync")
    }
    token_file = data / "webhook_token"
    token_file.write_text(options.webhook_token, encoding="utf-8")
    token_file.chmod(0o600)
    mlflow_dir = data / "mlflow"
    mlflow_dir.mkdir(exist_ok=True)

    # Fresh TSDB each start: the backfill must not overlap what an earlier run scraped.
    tsdb = data / "prometheus"
    shutil.rmtree(tsdb, ignore_errors=True)
    tsdb.mkdir(parents=True)
    history = data / "history.om"
    # As recent as possible: no sample exists between the history's end and the first live scrape,
    # and rate() does not extrapolate across a gap longer than ~1.1 samples, so every second of
    # it shows as a dip of the request rate that the detectors rightly flag (measured: a 80 s gap
    # read 22 % low and raised request-rate anomalies on every route for minutes).
    end = time.time() - 1
    start = end - options.history_days * 86400
    # One realisation of the simulated traffic for the whole start-up (its draws depend on the
    # number of steps): written up to `end` now and continued up to the last moment below.
    write_part = functools.partial(
        write_history,
        history,
        start=start,
        end=end + 86400,
        step_seconds=options.history_step_seconds,
        # The same labels the live scrape will attach, so history and live are one series set.
        labels={"job": "demo-service", "instance": f"127.0.0.1:{ports['simulator']}"},
    )
    write_part(written_until=end)
    launch.backfill_openmetrics(history, tsdb)
    history.unlink()

    rules = launch.write_rules(data / "rules", time_scale=options.rules_time_scale)
    if options.backfill_slo_rules:
        # The SLO recording rules as if they had run over the history: burn-downs and the SLO
        # validation of the first training have data from the start.
        slo_rule_files = [path for path in rules if path.parent == slo_rules_dir_of(data)]
        # The last day only: what the burn-downs and the first validation's held-out window
        # read, at a third of the cost (promtool writes a block per group and 2 h).
        added = backfill_slo_rules(
            slo_rule_files, tsdb, start=max(start, end - 86400), end=end, work_dir=data / "rule-backfill"
        )
        log.info("backfilled %d block(s) of SLO recording-rule history", added)
    # Backfilling took a while (a minute and more for days of history): continue the same traffic
    # up to now in a small second part, so the first live scrape follows the history within
    # seconds. A gap reads as a traffic dip, which the detectors rightly flag: that was the demo's
    # start-up alarm on the request rate two minutes after the URLs were printed.
    resumed = time.time() - 1
    if resumed - end >= options.history_step_seconds:  # at least one new sample to write
        write_part(written_until=resumed, written_after=end)
        launch.backfill_openmetrics(history, tsdb)
        history.unlink()
        end = start + options.history_step_seconds * ((resumed - start) // options.history_step_seconds)
    slo_rules_dir = slo_rules_dir_of(data)
    if options.slo_sync:
        # A glob, not the copied files: the sync adds a file when an SLO of a new service appears.
        rules = [path for path in rules if path.parent != slo_rules_dir] + [slo_rules_dir / "*.yml"]
    alertmanager_port = launch.free_port()
    prometheus_config = launch.write_prometheus_config(
        data / "prometheus.yml",
        scrape_targets={
            "slo-pipeline-exporter": [f"127.0.0.1:{ports['exporter']}"],
            "slo-pipeline-webhook": [f"127.0.0.1:{ports['webhook']}"],
            "demo-service": [f"127.0.0.1:{ports['simulator']}"],
            "slo-pipeline-worker": [f"127.0.0.1:{ports['worker']}"],
            **({"slo-pipeline-slo-sync": [f"127.0.0.1:{ports['slo-sync']}"]} if options.slo_sync else {}),
            **({"slo-pipeline-lake-sync": [f"127.0.0.1:{ports['lake-sync']}"]} if options.lake_sync else {}),
        },
        alertmanager_url=f"http://127.0.0.1:{alertmanager_port}",
        rule_files=rules,
        scrape_interval=options.scrape_interval,
        evaluation_interval=options.evaluation_interval,
    )
    prometheus = launch.start_prometheus(config_file=prometheus_config, data_dir=tsdb)
    stack.processes["prometheus"] = prometheus

    stack.env = {
        **os.environ,
        "PROMETHEUS_URL": prometheus.url,
        "DATABASE_URL": database_url,
        "MLFLOW_TRACKING_URI": f"sqlite:///{mlflow_dir / 'mlflow.db'}",
        "SLO_PIPELINE_MLFLOW_ARTIFACT_ROOT": str(mlflow_dir / "artifacts"),
        "WEBHOOK_TOKEN": options.webhook_token,
        "SLO_PIPELINE_CONFIG": str(options.pipeline_config),
        "SLO_PIPELINE_DATA_LAKE": str(data / "lake"),
        "SLO_PIPELINE_EXPORTER_INTERVAL": str(options.exporter_interval_seconds),
        "SLO_PIPELINE_RETRAIN_COOLDOWN": str(options.retrain_cooldown_seconds),
        "SLO_PIPELINE_WORKER_POLL": str(options.worker_poll_seconds),
        "SLO_PIPELINE_WEBHOOK_METRICS_DIR": str(data / "webhook-metrics"),
        "MLFLOW_ALLOW_FILE_STORE": "true",
    }
    if options.slo_sync:
        stack.env["SLO_PIPELINE_SLO_SYNC_INTERVAL"] = str(options.slo_sync_interval_seconds)
    if options.lake_sync:
        stack.env["SLO_PIPELINE_LAKE_SYNC_INTERVAL"] = str(options.lake_sync_interval_seconds)
    stack.settings = load_settings(
        prometheus_url=stack.env["PROMETHEUS_URL"],
        database_url=database_url,
        mlflow_tracking_uri=stack.env["MLFLOW_TRACKING_URI"],
        mlflow_artifact_root=stack.env["SLO_PIPELINE_MLFLOW_ARTIFACT_ROOT"],
        webhook_token=options.webhook_token,
        config_path=options.pipeline_config,
        data_lake=stack.env["SLO_PIPELINE_DATA_LAKE"],
    )

    def service(name: str, argv: list[str], port: int | None, ready_path: str | None) -> Callable[[], object]:
        def start() -> object:
            return launch.start_service(
                name,
                lambda chosen: argv,
                port=port,
                log_path=data / "logs" / f"{name}.log",
                ready_path=ready_path,
                env=stack.env,
                cwd=REPO_ROOT,
            )

        stack._starters[name] = start
        return start

    if options.slo_sync:
        stack.processes["slo-sync"] = service(
            "slo-sync",
            _cli_argv(
                "rules",
                "sync",
                "--out",
                str(slo_rules_dir),
                "--metrics-listen",
                f"127.0.0.1:{ports['slo-sync']}",
            ),
            ports["slo-sync"],
            "/metrics",
        )()

    listen = "127.0.0.1:{}".format
    stack.processes["simulator"] = service(
        "simulator",
        # Counting from the history's end: no gap (and so no fake traffic dip) at the seam.
        _cli_argv("simulator", "serve", "--listen", listen(ports["simulator"]), "--counting-since", f"{end}"),
        ports["simulator"],
        "/healthz",
    )()

    alertmanager_config = launch.write_alertmanager_config(
        data / "alertmanager.yml",
        webhook_base_url=f"http://127.0.0.1:{ports['webhook']}",
        token_file=token_file,
        group_wait=options.alertmanager_group_wait,
        group_interval=options.alertmanager_group_interval,
        repeat_interval=options.alertmanager_repeat_interval,
    )
    stack.processes["alertmanager"] = launch.start_alertmanager(
        config_file=alertmanager_config, data_dir=data / "alertmanager", port=alertmanager_port
    )

    if options.train_first_models:
        from slo_pipeline.orchestration.retrain import retrain_detector

        for detector in stack.settings.pipeline.detectors:
            outcome = retrain_detector(stack.settings, detector.name)
            log.info("first model for %s: version %s", detector.name, outcome.model_version)

    stack.processes["webhook"] = service(
        "webhook",
        _cli_argv("webhook", "--listen", listen(ports["webhook"]), "--workers", "2"),
        ports["webhook"],
        "/healthz",
    )()
    stack.processes["worker"] = service(
        "worker",
        _cli_argv("worker", "--metrics-listen", listen(ports["worker"])),
        ports["worker"],
        "/metrics",
    )()
    if options.lake_sync:
        stack.processes["lake-sync"] = service(
            "lake-sync",
            _cli_argv("lake", "sync", "--metrics-listen", listen(ports["lake-sync"])),
            ports["lake-sync"],
            "/",
        )()
    stack.processes["exporter"] = service(
        "exporter",
        _cli_argv("exporter", "--listen", listen(ports["exporter"])),
        ports["exporter"],
        "/healthz",
    )()
    if options.with_ui:
        stack.ui_sign_in = ensure_ui_user(stack.env, options.ui_user, data / "ui_password")
        ui_script = REPO_ROOT / "streamlit_app" / "app.py"
        stack.processes["ui"] = service(
            "ui",
            [
                sys.executable,
                "-m",
                "streamlit",
                "run",
                str(ui_script),
                "--server.headless=true",
                "--server.address=127.0.0.1",
                f"--server.port={ports['ui']}",
                "--browser.gatherUsageStats=false",
            ],
            ports["ui"],
            "/_stcore/health",
        )()

    if options.mlflow_ui:
        stack.processes["mlflow-ui"] = launch.start_mlflow_ui(
            stack.env["MLFLOW_TRACKING_URI"], log_path=data / "logs" / "mlflow-ui.log", env=stack.env
        )

    stack.urls = {
        "prometheus": prometheus.url,
        "alertmanager": f"http://127.0.0.1:{alertmanager_port}",
        "simulator": f"http://127.0.0.1:{ports['simulator']}",
        "exporter": f"http://127.0.0.1:{ports['exporter']}",
        "webhook": f"http://127.0.0.1:{ports['webhook']}",
        "worker": f"http://127.0.0.1:{ports['worker']}",
        "database": database_url,
        "mlflow": stack.env["MLFLOW_TRACKING_URI"],
    }
    if options.slo_sync:
        stack.urls["slo-sync"] = f"http://127.0.0.1:{ports['slo-sync']}"
    if options.lake_sync:
        stack.urls["lake-sync"] = f"http://127.0.0.1:{ports['lake-sync']}"
    if options.with_ui:
        stack.urls["ui"] = f"http://127.0.0.1:{ports['ui']}"
    if options.mlflow_ui:
        stack.urls["mlflow ui"] = stack.processes["mlflow-ui"].url  # type: ignore[attr-defined]
