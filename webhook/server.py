"""Run the webhook under gunicorn, in this process (no config file, no second settings load).

Threaded workers (gthread): a connection waiting for its first bytes sits in the worker's poller
without a thread, so slow or idle clients cannot hold the worker the way they hold a sync one.
A client that starts a request and then stalls does hold a thread, so every client socket gets a
kernel receive/send timeout (SO_RCVTIMEO/SO_SNDTIMEO) that ends such a connection.

prometheus_client decides at import time whether it runs in multiprocess mode, so the
PROMETHEUS_MULTIPROC_DIR variable is set (and the folder emptied of a previous run's files)
before anything here imports it; gunicorn's workers inherit the variable when they fork.
"""

from __future__ import annotations

import logging
import os
import socket
import struct
import sys
from pathlib import Path
from typing import Any

from slo_pipeline.adapters.listen_address import parse_listen
from slo_pipeline.settings import Settings
from webhook.auth import WebhookSettingsError, check_startup_token

__all__ = ["WebhookSettingsError", "run"]

log = logging.getLogger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# Alertmanager's notifications are small and quick; a request that takes this long is stuck.
WORKER_TIMEOUT_SECONDS = 30
GRACEFUL_TIMEOUT_SECONDS = 10


def socket_timeout_option(seconds: float) -> bytes:
    """A `struct timeval` for SO_RCVTIMEO/SO_SNDTIMEO."""
    whole = int(seconds)
    return struct.pack("ll", whole, int((seconds - whole) * 1_000_000))


def prepare_multiprocess_dir(path: Path) -> None:
    """Create the metrics folder and remove an earlier run's files from it: files of dead pids
    would be summed into this run's counters. Only prometheus_client's own `*.db` files are
    removed, so a folder pointed somewhere shared (say /tmp) loses nothing else."""
    path.mkdir(parents=True, exist_ok=True)
    for stale in path.glob("*.db"):
        stale.unlink(missing_ok=True)


def _child_exit(_server: Any, worker: Any) -> None:
    """gunicorn hook: a dead worker's live-gauge files must not be reported any more."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def run(settings: Settings, listen: str, workers: int | None = None) -> int:
    """Serve until SIGTERM/SIGINT; returns the process exit code."""
    host, port = parse_listen(listen)
    if port == 0:
        raise ValueError(f"--listen needs a fixed port: Alertmanager must know where to post, got {listen!r}")
    check_startup_token(settings.webhook_token)
    if "prometheus_client" in sys.modules and not os.environ.get(MULTIPROC_ENV):
        raise RuntimeError(
            "prometheus_client was imported before webhook.server.run set PROMETHEUS_MULTIPROC_DIR; "
            "its multiprocess mode would be off and /metrics would show one worker only"
        )
    metrics_dir = Path(settings.webhook_metrics_dir)
    prepare_multiprocess_dir(metrics_dir)
    os.environ[MULTIPROC_ENV] = str(metrics_dir)

    from gunicorn.app.base import BaseApplication
    from gunicorn.workers.gthread import ThreadWorker

    from webhook.app import create_app

    timeval = socket_timeout_option(settings.webhook_client_timeout_seconds)

    class TimeoutThreadWorker(ThreadWorker):
        """gthread with a kernel timeout on every client socket: a stalled half-sent request
        fails its read (the connection is closed) instead of holding a thread forever."""

        def enqueue_req(self, conn: Any) -> None:
            conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval)
            conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval)
            super().enqueue_req(conn)

    options: dict[str, Any] = {
        "bind": f"[{host}]:{port}" if ":" in host else f"{host}:{port}",
        "workers": workers or settings.webhook_workers,
        "worker_class": TimeoutThreadWorker,
        "threads": settings.webhook_threads,
        # idle keep-alive connections wait in the poller, without a thread, this long
        "keepalive": 5,
        "timeout": WORKER_TIMEOUT_SECONDS,
        "graceful_timeout": GRACEFUL_TIMEOUT_SECONDS,
        "child_exit": _child_exit,
        # the default control socket is one path per user: two webhooks would fight over it
        "control_socket_disable": True,
        "errorlog": "-",
        "loglevel": logging.getLevelName(logging.getLogger().getEffectiveLevel()).lower(),
        "proc_name": "slo-pipeline-webhook",
    }

    class WebhookApplication(BaseApplication):
        def load_config(self) -> None:
            for key, value in options.items():
                self.cfg.set(key, value)

        def load(self) -> Any:
            # Called in each worker after the fork: connections and metrics are per process.
            return create_app(settings)

    log.info(
        "webhook listening on %s:%d with %d workers x %d threads",
        host,
        port,
        options["workers"],
        options["threads"],
    )
    try:
        WebhookApplication().run()
    except SystemExit as exit_:
        return int(exit_.code or 0) if not isinstance(exit_.code, str) else 1
    return 0
