"""Start real Prometheus/Alertmanager processes on loopback and derive their configs from the repo's.

Used by the integration tests and the demo, so both run the very configs and rules users deploy,
only with local addresses, short timings and (optionally) compressed time. Every process is started
in its own session so `stop()` can kill the whole process group, children included.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import yaml

from slo_pipeline.core.durations import DURATION_PATTERN, format_duration_ms, parse_duration_ms

REPO_ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_TEMPLATE = REPO_ROOT / "prometheus" / "prometheus.yml"
ALERTMANAGER_TEMPLATE = REPO_ROOT / "alertmanager" / "alertmanager.yml"
RULES_DIR = REPO_ROOT / "rules"

PROMETHEUS_BINARY = "prometheus"
ALERTMANAGER_BINARY = "prometheus-alertmanager"
PROMTOOL_BINARY = "promtool"

# Prometheus re-sends firing alerts at most this often; the default (1m) would make tests wait.
TEST_ALERT_RESEND_DELAY = "2s"
READY_TIMEOUT_SECONDS = 30.0
# `mlflow ui` imports most of MLflow before it listens: slow on a busy machine.
MLFLOW_UI_READY_TIMEOUT_SECONDS = 120.0
LOG_TAIL_LINES = 40
# A free port can be taken by someone else between `free_port()` and the child's bind.
PORT_RACE_RETRIES = 3


class LaunchError(RuntimeError):
    """A service could not be started or configured; the message carries its log tail."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _require_binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise LaunchError(f"{name!r} is not on PATH; install it (Debian package of the same family)")
    return path


def _tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no log written)"
    return "\n".join(text.splitlines()[-lines:]) or "(log is empty)"


class ManagedProcess:
    """A started service: where it listens, where it logs, and how to stop it (and its children)."""

    def __init__(self, name: str, popen: subprocess.Popen[bytes], port: int, log_path: Path) -> None:
        self.name = name
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = log_path
        self.popen = popen

    @property
    def pid(self) -> int:
        return self.popen.pid

    def is_running(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        return _tail(self.log_path, lines)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the process group, then SIGKILL whatever is still alive after `timeout` seconds."""
        if self.popen.poll() is None:
            self._signal_group(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout=timeout)
        # Children may outlive a leader that exited on its own; the group id stays the leader's pid.
        self._signal_group(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=timeout)

    def _signal_group(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, signum)

    def __enter__(self) -> ManagedProcess:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.is_running() else f"exited({self.popen.returncode})"
        return f"ManagedProcess({self.name!r}, url={self.url!r}, pid={self.pid}, {state})"


def wait_for_http(url: str, timeout: float, expect_status: int = 200) -> None:
    """Poll `url` until it answers `expect_status`; raise TimeoutError naming the last answer."""
    _wait_for_http(url, timeout, expect_status, still_alive=None)


def _wait_for_http(
    url: str, timeout: float, expect_status: int, still_alive: Callable[[], bool] | None
) -> None:
    deadline = time.monotonic() + timeout
    last = "no answer yet"
    delay = 0.05
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2.0) as response:
                status = response.status
        except urllib.error.HTTPError as err:
            status = err.code
        except (urllib.error.URLError, OSError) as err:
            status = None
            last = f"{type(err).__name__}: {err}"
        if status == expect_status:
            return
        if status is not None:
            last = f"HTTP {status}"
        if still_alive is not None and not still_alive():
            raise LaunchError(f"process behind {url} exited before answering ({last})")
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{url} did not answer HTTP {expect_status} within {timeout:.0f}s ({last})")
        time.sleep(delay)
        delay = min(delay * 2, 0.5)


def start_service(
    name: str,
    build_argv: Callable[[int], list[str]],
    *,
    port: int | None,
    log_path: Path,
    ready_path: str | None,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    ready_timeout: float = READY_TIMEOUT_SECONDS,
) -> ManagedProcess:
    """Start any process in its own session, logging to `log_path`, and wait until it is ready.

    `build_argv(port)` returns the command line for the chosen port (a free one when `port` is
    None; retried on a lost port race). With `ready_path` (e.g. "/healthz") the call returns once
    `http://127.0.0.1:PORT{ready_path}` answers 200; without it (a worker that does not listen)
    it returns as soon as the process is started, with `port` 0 and an empty `url` unless a
    `port` was given. `env` is the child's whole environment (default: this one's).
    """
    listens = ready_path is not None or port is not None
    attempts = PORT_RACE_RETRIES if port is None and ready_path is not None else 1
    for attempt in range(1, attempts + 1):
        chosen_port = port if port is not None else (free_port() if ready_path is not None else 0)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab") as log:
            popen = subprocess.Popen(
                build_argv(chosen_port),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                env=None if env is None else dict(env),
                start_new_session=True,  # own process group: stop() reaches every child
            )
        process = ManagedProcess(name, popen, chosen_port, log_path)
        if not listens:
            process.url = ""
        if ready_path is None:
            if not process.is_running():
                raise LaunchError(f"{name} exited at once (code {popen.returncode}):\n{process.log_tail()}")
            return process
        try:
            _wait_for_http(process.url + ready_path, ready_timeout, 200, process.is_running)
        except (LaunchError, TimeoutError) as err:
            process.stop()
            tail = process.log_tail()
            if attempt < attempts and "address already in use" in tail.lower():
                continue
            raise LaunchError(f"{name} did not become ready on port {chosen_port}: {err}\n{tail}") from err
        return process
    raise AssertionError("unreachable")  # the loop either returns or raises


def start_mlflow_ui(
    tracking_uri: str, *, log_path: Path, env: Mapping[str, str] | None = None
) -> ManagedProcess:
    """`mlflow ui` over `tracking_uri` on a free loopback port (its own process group: gunicorn
    or uvicorn workers are stopped with it). Started from this interpreter's environment."""
    bin_dir = Path(sys.executable).parent
    child_env = dict(env if env is not None else os.environ)
    child_env["PATH"] = f"{bin_dir}{os.pathsep}{child_env.get('PATH', '')}"
    return start_service(
        "mlflow-ui",
        lambda port: [
            str(bin_dir / "mlflow"),
            "ui",
            "--backend-store-uri",
            tracking_uri,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            # One worker: a UI for one person; MLflow's default of four costs seconds of CPU.
            "--workers",
            "1",
        ],
        port=None,
        log_path=log_path,
        ready_path="/health",
        env=child_env,
        ready_timeout=MLFLOW_UI_READY_TIMEOUT_SECONDS,
    )


def start_prometheus(
    *,
    config_file: Path,
    data_dir: Path,
    port: int | None = None,
    extra_args: Sequence[str] = (),
) -> ManagedProcess:
    """Start Prometheus on 127.0.0.1 with lifecycle API and quick alert re-sends; wait for /-/ready.

    Backfill history (`backfill_openmetrics`) into `data_dir` *before* starting: Prometheus only
    loads blocks created behind its back at the next reload of its block list.
    """
    binary = _require_binary(PROMETHEUS_BINARY)
    data_dir.mkdir(parents=True, exist_ok=True)

    def argv(chosen_port: int) -> list[str]:
        return [
            binary,
            f"--config.file={config_file}",
            f"--storage.tsdb.path={data_dir}",
            f"--web.listen-address=127.0.0.1:{chosen_port}",
            "--web.enable-lifecycle",
            f"--rules.alert.resend-delay={TEST_ALERT_RESEND_DELAY}",
            *extra_args,
        ]

    log_path = data_dir / "prometheus.log"
    return start_service("prometheus", argv, port=port, log_path=log_path, ready_path="/-/ready")


def start_alertmanager(*, config_file: Path, data_dir: Path, port: int | None = None) -> ManagedProcess:
    """Start a single, non-clustered Alertmanager on 127.0.0.1 and wait for /-/ready."""
    binary = _require_binary(ALERTMANAGER_BINARY)
    data_dir.mkdir(parents=True, exist_ok=True)

    def argv(chosen_port: int) -> list[str]:
        return [
            binary,
            f"--config.file={config_file}",
            f"--storage.path={data_dir}",
            f"--web.listen-address=127.0.0.1:{chosen_port}",
            # Empty: no gossip listener, so parallel tests never fight over port 9094.
            "--cluster.listen-address=",
        ]

    return start_service(
        "alertmanager", argv, port=port, log_path=data_dir / "alertmanager.log", ready_path="/-/ready"
    )


def _load_yaml(path: Path) -> dict[str, Any]:
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as err:
        raise LaunchError(f"could not read config template {str(path)!r}: {err}") from err
    if not isinstance(loaded, dict):
        raise LaunchError(f"config template {str(path)!r} is not a YAML mapping")
    return loaded


def _write_yaml(out: Path, document: dict[str, Any]) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return out


def write_prometheus_config(
    out: Path,
    *,
    scrape_targets: dict[str, list[str]],
    alertmanager_url: str | None,
    rule_files: Sequence[Path],
    scrape_interval: str = "15s",
    evaluation_interval: str = "15s",
) -> Path:
    """Write a copy of prometheus/prometheus.yml pointed at local processes.

    Jobs keep their names and settings (metrics_path, relabelling) with targets replaced by the
    given `host:port` lists; template jobs not in `scrape_targets` are dropped; a job name the
    template does not know is added as a plain job, so tests can scrape helpers of their own.
    Per-job intervals are removed so the given global intervals apply everywhere.
    """
    document = _load_yaml(PROMETHEUS_TEMPLATE)
    document["global"] = {
        **(document.get("global") or {}),
        "scrape_interval": scrape_interval,
        "evaluation_interval": evaluation_interval,
    }
    document["global"].pop("scrape_timeout", None)  # defaults to min(10s, scrape_interval)

    template_jobs = {job["job_name"]: job for job in document.get("scrape_configs") or []}
    jobs = []
    for job_name, targets in scrape_targets.items():
        job = dict(template_jobs.get(job_name, {"job_name": job_name}))
        job.pop("scrape_interval", None)
        job.pop("scrape_timeout", None)
        job.pop("file_sd_configs", None)
        job.pop("dns_sd_configs", None)
        static_labels = (job.get("static_configs") or [{}])[0].get("labels")
        static_config: dict[str, Any] = {"targets": list(targets)}
        if static_labels:
            static_config["labels"] = static_labels
        job["static_configs"] = [static_config]
        jobs.append(job)
    document["scrape_configs"] = jobs
    document["rule_files"] = [str(Path(path).resolve()) for path in rule_files]

    if alertmanager_url is None:
        document.pop("alerting", None)
    else:
        parts = urlsplit(alertmanager_url)
        if not parts.netloc:
            raise ValueError(f"alertmanager_url {alertmanager_url!r} must look like http://host:port")
        alertmanager: dict[str, Any] = {
            "scheme": parts.scheme or "http",
            "static_configs": [{"targets": [parts.netloc]}],
        }
        if parts.path.strip("/"):
            alertmanager["path_prefix"] = parts.path
        document["alerting"] = {"alertmanagers": [alertmanager]}
    return _write_yaml(out, document)


def _replace_url_base(url: str, base: str) -> str:
    """`http://webhook:8080/alerts` + `http://127.0.0.1:5000` -> `http://127.0.0.1:5000/alerts`."""
    original, replacement = urlsplit(url), urlsplit(base)
    path = replacement.path.rstrip("/") + original.path
    return urlunsplit((replacement.scheme, replacement.netloc, path, original.query, original.fragment))


def _override_route_timings(route: dict[str, Any], overrides: dict[str, str], is_root: bool) -> None:
    for key, value in overrides.items():
        # Sub-routes inherit from the root; only those that set their own value need it replaced.
        if is_root or key in route:
            route[key] = value
    for child in route.get("routes") or []:
        _override_route_timings(child, overrides, is_root=False)


def write_alertmanager_config(
    out: Path,
    *,
    webhook_base_url: str,
    token_file: Path,
    group_wait: str | None = None,
    group_interval: str | None = None,
    repeat_interval: str | None = None,
) -> Path:
    """Write a copy of alertmanager/alertmanager.yml whose receivers call `webhook_base_url`.

    Receiver URL paths (e.g. `/alerts`) are kept; every `credentials_file` becomes `token_file`.
    Timing overrides apply to the root route and to every sub-route that sets its own value.
    """
    document = _load_yaml(ALERTMANAGER_TEMPLATE)
    for receiver in document.get("receivers") or []:
        for webhook in receiver.get("webhook_configs") or []:
            webhook["url"] = _replace_url_base(webhook["url"], webhook_base_url)
            authorization = (webhook.get("http_config") or {}).get("authorization")
            if authorization is not None and "credentials_file" in authorization:
                authorization["credentials_file"] = str(Path(token_file).resolve())
    overrides = {
        key: value
        for key, value in (
            ("group_wait", group_wait),
            ("group_interval", group_interval),
            ("repeat_interval", repeat_interval),
        )
        if value is not None
    }
    _override_route_timings(document.setdefault("route", {}), overrides, is_root=True)
    return _write_yaml(out, document)


# --- time compression of rules (a test/demo facility, never for production) -----------------------

# `[5m]`, `[1h:30s]`, `[1h:]` range selectors and subqueries, and `offset 1h`.
_RANGE_SELECTOR = re.compile(rf"\[\s*({DURATION_PATTERN})\s*(?::\s*({DURATION_PATTERN})?\s*)?\]")
_OFFSET = re.compile(rf"(\boffset\s+-?)({DURATION_PATTERN})\b")


def scale_duration(text: str, time_scale: float) -> str:
    """Scale one duration, rounding to whole milliseconds and never below 1 ms (0 stays 0)."""
    ms = parse_duration_ms(text)
    if ms == 0:
        return text
    return format_duration_ms(max(1, round(ms * time_scale)))


def scale_promql_durations(expr: str, time_scale: float) -> str:
    """Scale range selectors, subquery ranges/steps and offsets; numeric literals stay untouched."""

    def range_selector(match: re.Match[str]) -> str:
        scaled = scale_duration(match.group(1), time_scale)
        if ":" not in match.group(0):
            return f"[{scaled}]"
        step = match.group(2)
        return f"[{scaled}:{scale_duration(step, time_scale) if step else ''}]"

    expr = _RANGE_SELECTOR.sub(range_selector, expr)
    return _OFFSET.sub(lambda m: m.group(1) + scale_duration(m.group(2), time_scale), expr)


def scale_rule_groups(document: dict[str, Any], time_scale: float) -> dict[str, Any]:
    """Return `document` (a rule file) with every duration multiplied by `time_scale`."""
    for group in document.get("groups") or []:
        if "interval" in group:
            group["interval"] = scale_duration(str(group["interval"]), time_scale)
        for rule in group.get("rules") or []:
            rule["expr"] = scale_promql_durations(str(rule["expr"]), time_scale)
            for key in ("for", "keep_firing_for"):
                if key in rule:
                    rule[key] = scale_duration(str(rule[key]), time_scale)
    return document


def default_rule_sources() -> list[Path]:
    """Every rule file under rules/ (e.g. rules/*.yml and the generated rules/slo/*.yml), not tests."""
    return sorted(
        path for path in RULES_DIR.rglob("*.yml") if "tests" not in path.relative_to(RULES_DIR).parts
    )


def _rule_target(out_dir: Path, source: Path) -> Path:
    # Keep sub-folders (rules/slo/x.yml -> out_dir/slo/x.yml) so equal names cannot collide.
    try:
        return out_dir / source.resolve().relative_to(RULES_DIR)
    except ValueError:
        return out_dir / source.name


def write_rules(
    out_dir: Path, *, time_scale: float = 1.0, sources: Sequence[Path] | None = None
) -> list[Path]:
    """Copy the rule files (default: every *.yml under rules/ except rules/tests) into `out_dir`.

    Files from rules/ keep their sub-folder (rules/slo/a.yml -> out_dir/slo/a.yml); others land
    directly in `out_dir`. Returns the written paths, ready for `rule_files`.

    TEST/DEMO FACILITY: with `time_scale < 1` every `for:`, `keep_firing_for:`, group `interval:`
    and PromQL range/subquery/offset duration is multiplied by it (at 1/60, `[1h]` -> `[1m]`,
    `for: 15m` -> `15s`), so an end-to-end test exercises the real rules in seconds. Numeric
    literals (thresholds, `time() - x > 300`) and label values are not touched. Choose the scale
    so the shortest range still spans at least two scrapes of the compressed setup.
    """
    if time_scale <= 0:
        raise ValueError(f"time_scale must be > 0, got {time_scale}")
    sources = default_rule_sources() if sources is None else list(sources)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for source in sources:
        target = _rule_target(out_dir, Path(source))
        target.parent.mkdir(parents=True, exist_ok=True)
        if time_scale == 1.0:
            shutil.copyfile(source, target)
        else:
            document = _load_yaml(Path(source))
            _write_yaml(target, scale_rule_groups(document, time_scale))
        written.append(target)
    return written


def backfill_openmetrics(openmetrics_file: Path, data_dir: Path) -> None:
    """Turn an OpenMetrics file into TSDB blocks in `data_dir` with promtool."""
    promtool = _require_binary(PROMTOOL_BINARY)
    data_dir.mkdir(parents=True, exist_ok=True)
    completed = subprocess.run(
        [promtool, "tsdb", "create-blocks-from", "openmetrics", str(openmetrics_file), str(data_dir)],
        capture_output=True,
        text=True,
        check=False,
    )
    if completed.returncode != 0:
        raise LaunchError(
            f"promtool could not backfill {str(openmetrics_file)!r} into {str(data_dir)!r} "
            f"(exit {completed.returncode}): {completed.stderr.strip() or completed.stdout.strip()}"
        )


# --- recording-rule history (promtool tsdb create-blocks-from rules) -------------------------------

# A PromQL identifier; metric names may contain colons (`slo:sli_error:ratio_rate5m`).
_PROMQL_NAME = re.compile(r"(?<![\w:])[A-Za-z_:][\w:]*")


def recording_rule_stages(rule_files: Sequence[Path], out_dir: Path) -> list[Path]:
    """Write the recording rules of `rule_files` into one rule file per dependency level.

    `promtool tsdb create-blocks-from rules` evaluates every rule against the Prometheus it is
    given, so a rule that reads another recording rule (`slo:current_burn_rate:ratio` reads
    `slo:sli_error:ratio_rate5m`) finds nothing unless that rule was backfilled, and its blocks
    loaded, in an earlier run. Level 1 reads raw series only; level n reads levels below n.
    Groups keep their `interval`; alerting rules are dropped (promtool does not evaluate them).
    Returns the files, level 1 first.
    """
    rules: list[tuple[str, dict[str, Any], dict[str, Any]]] = []  # (group key, group, rule)
    for source in rule_files:
        for group in _load_yaml(Path(source)).get("groups") or []:
            key = f"{Path(source).name}:{group['name']}"
            rules += [(key, group, rule) for rule in group.get("rules") or [] if "record" in rule]
    recorded: dict[str, list[int]] = {}
    for index, (_, _, rule) in enumerate(rules):
        recorded.setdefault(str(rule["record"]), []).append(index)
    reads = [
        {name for name in _PROMQL_NAME.findall(str(rule["expr"])) if name in recorded} for _, _, rule in rules
    ]
    levels: dict[int, int] = {}

    def level(index: int, path: tuple[int, ...]) -> int:
        if index in path:
            cycle = " -> ".join(str(rules[i][2]["record"]) for i in (*path, index))
            raise LaunchError(f"recording rules depend on each other in a cycle: {cycle}")
        if index not in levels:
            deeper = [level(dep, (*path, index)) for name in reads[index] for dep in recorded[name]]
            levels[index] = 1 + max(deeper, default=0)
        return levels[index]

    by_level: dict[int, dict[str, dict[str, Any]]] = {}
    for index, (key, group, rule) in enumerate(rules):
        interval = {"interval": group["interval"]} if "interval" in group else {}
        staged = by_level.setdefault(level(index, ()), {})
        staged.setdefault(key, {"name": key, **interval, "rules": []})["rules"].append(rule)
    return [
        _write_yaml(out_dir / f"level-{n}.rules.yml", {"groups": list(by_level[n].values())})
        for n in sorted(by_level)
    ]


def backfill_rules(
    prometheus_url: str,
    rule_file: Path,
    *,
    start: float,
    end: float,
    out_dir: Path,
    eval_interval_seconds: float = 60.0,
) -> list[Path]:
    """Evaluate the recording rules of `rule_file` over `[start, end]` against `prometheus_url` and
    write the results as TSDB blocks into `out_dir` (promtool); returns the block folders."""
    promtool = _require_binary(PROMTOOL_BINARY)
    out_dir.mkdir(parents=True, exist_ok=True)
    completed = subprocess.run(
        [
            promtool,
            "tsdb",
            "create-blocks-from",
            "rules",
            f"--start={int(start)}",
            f"--end={int(end)}",
            f"--url={prometheus_url}",
            f"--output-dir={out_dir}",
            f"--eval-interval={format_duration_ms(round(eval_interval_seconds * 1000))}",
            "--quiet",
            str(rule_file),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if completed.returncode != 0:
        # promtool logs progress at level=info on stderr too; the error lines are the others.
        errors = [line for line in completed.stderr.splitlines() if line and "level=info" not in line]
        raise LaunchError(
            f"promtool could not backfill the rules of {str(rule_file)!r} from {prometheus_url} "
            f"(exit {completed.returncode}): {' | '.join(errors) or completed.stderr.strip()}"
        )
    return sorted(path for path in out_dir.iterdir() if (path / "meta.json").is_file())


def backfill_recording_rules(
    rule_files: Sequence[Path],
    *,
    data_dir: Path,
    start: float,
    end: float,
    work_dir: Path,
    start_prometheus: Callable[[Path], ManagedProcess],
    eval_interval_seconds: float = 60.0,
) -> int:
    """Give a backfilled TSDB the history of recording rules, as if they had run over `[start, end]`.

    One promtool run per dependency level (`recording_rule_stages`): each run reads a Prometheus
    started by `start_prometheus(data_dir)` on the blocks of the levels before it and is stopped
    afterwards (a running Prometheus does not pick up blocks written behind its back at once; at
    start it loads them all and merges the overlapping ones itself, which 2.39+ allows by
    default). Returns the number of blocks added to `data_dir`.
    """
    added = 0
    for number, stage in enumerate(recording_rule_stages(rule_files, work_dir / "stages"), start=1):
        prometheus = start_prometheus(data_dir)
        try:
            blocks = backfill_rules(
                prometheus.url,
                stage,
                start=start,
                end=end,
                out_dir=work_dir / f"blocks-{number}",
                eval_interval_seconds=eval_interval_seconds,
            )
        finally:
            prometheus.stop()
        for block in blocks:
            shutil.move(block, data_dir / block.name)
        added += len(blocks)
    return added
