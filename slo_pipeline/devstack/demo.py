"""`slo-pipeline demo`: the whole stack against a simulated service, until Ctrl-C."""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import signal
import time
import urllib.request
from pathlib import Path
from types import FrameType

from slo_pipeline.devstack.launch import REPO_ROOT
from slo_pipeline.devstack.stack import StackOptions, start_stack

log = logging.getLogger(__name__)

INCIDENT_KINDS = ("latency_spike", "error_burst", "traffic_drop")
FIRST_INCIDENT_AFTER_SECONDS = 0.0
INCIDENT_SECONDS = 180.0


def inject_incident(simulator_url: str, kind: str, duration_seconds: float) -> dict[str, object]:
    body = json.dumps({"kind": kind, "duration_seconds": duration_seconds}).encode()
    request = urllib.request.Request(
        f"{simulator_url}/incidents", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())


def run_demo(*, data_dir: str | None, days: float, incident_every: float, with_ui: bool) -> int:
    options = StackOptions(
        data_dir=Path(data_dir) if data_dir else REPO_ROOT / ".data" / "demo",
        history_days=days,
        with_ui=with_ui,
        # The demo keeps production timings except these, so something visible happens in minutes.
        scrape_interval="5s",
        evaluation_interval="5s",
        exporter_interval_seconds=15.0,
        alertmanager_group_wait="5s",
        alertmanager_group_interval="30s",
        retrain_cooldown_seconds=900.0,
        # SLO edits in the UI reach the demo's Prometheus within one sync interval.
        slo_sync=True,
        backfill_slo_rules=True,
        # History beyond Prometheus' retention: the lake fills while the demo runs.
        lake_sync=True,
        mlflow_ui=True,
    )
    stopping = False

    def request_stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    print("starting the demo stack (backfill, first training, services) ...", flush=True)
    startup_log = options.data_dir / "logs" / "startup.log"
    startup_log.parent.mkdir(parents=True, exist_ok=True)
    # The first training runs in this process: MLflow's own notices and warnings ("Successfully
    # registered model", dataset-source and type-hint warnings) go to a log, not the console; the
    # pipeline's logging keeps its handler on the real stderr.
    with startup_log.open("a") as quiet, contextlib.redirect_stderr(quiet):
        stack = start_stack(options)
    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    try:
        print("\nslo-pipeline demo is running:")
        for name, url in stack.urls.items():
            print(f"  {name:<12} {url}")
        print(f"  logs         {options.data_dir / 'logs'} (MLflow's startup notices: logs/startup.log)")
        if stack.ui_sign_in is not None:
            user, password = stack.ui_sign_in
            print(f"  ui sign-in   {user} / {password}  (editor; in {options.data_dir / 'ui_password'})")
        print(
            f"  rules sync   every {options.slo_sync_interval_seconds:g}s: SLO edits (UI or CLI) reach "
            "Prometheus without `rules render`"
        )
        print("Ctrl-C stops everything.\n", flush=True)
        kinds = itertools.cycle(INCIDENT_KINDS)
        # The first incident right with the URLs: detection (~1-1.5 min of the exporter's windows),
        # the alert rules' `for: 2m` and delivery bring it to the Incidents page ~3.3 min later
        # (measured 3 min 56 s when injected 30 s after the URLs on a loaded machine).
        first = min(incident_every, FIRST_INCIDENT_AFTER_SECONDS)
        next_incident = time.monotonic() + first if incident_every > 0 else float("inf")
        while not stopping:
            time.sleep(0.5)
            if time.monotonic() >= next_incident:
                kind = next(kinds)
                try:
                    inject_incident(stack.urls["simulator"], kind, INCIDENT_SECONDS)
                    print(f"injected incident: {kind} for {INCIDENT_SECONDS:.0f}s", flush=True)
                except OSError as err:
                    log.warning("could not inject an incident: %s", err)
                next_incident = time.monotonic() + incident_every
    finally:
        print("stopping ...", flush=True)
        stack.stop()
    return 0
