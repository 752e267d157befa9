"""Webhook throughput and latency: 10-alert notifications against gunicorn + PostgreSQL.

    .venv/bin/python benchmarks/bench_webhook.py [--requests 2000] [--concurrency 1,4,8]

Starts `slo-pipeline webhook` (real gunicorn) on a throw-away database of the PostgreSQL at
--server (default: the local one), sends distinct notifications (every one inserts 10 incidents
in one transaction), and prints req/s and latency percentiles per client concurrency. The
client runs on the same machine, so on 2 cores it competes with the server: compare runs, not
absolute numbers across machines.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from slo_pipeline.adapters.postgres import connect, migrate, with_dbname
from slo_pipeline.devstack import launch

TOKEN = "bench-token"
ALERTS_PER_NOTIFICATION = 10


def notification(index: int) -> bytes:
    alerts = [
        {
            "status": "firing",
            "labels": {"alertname": "AnomalyScoreHigh", "detector": "bench", "series": f"s{n}"},
            "annotations": {"summary": "benchmark"},
            "startsAt": "2024-05-01T10:00:00Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://127.0.0.1:9090/graph",
            "fingerprint": f"{index:08x}{n:04x}",
        }
        for n in range(ALERTS_PER_NOTIFICATION)
    ]
    body = {
        "version": "4",
        "groupKey": f"bench:{index}",
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": "bench",
        "groupLabels": {},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://127.0.0.1:9093",
        "alerts": alerts,
    }
    return json.dumps(body).encode()


def send(port: int, body: bytes) -> tuple[int, float]:
    started = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(
            "POST",
            "/alerts",
            body=body,
            headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
        )
        status = conn.getresponse().status
    finally:
        conn.close()
    return status, time.perf_counter() - started


def run_round(port: int, first_index: int, count: int, concurrency: int) -> dict[str, float]:
    bodies = [notification(first_index + i) for i in range(count)]
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        results = list(pool.map(lambda body: send(port, body), bodies))
    elapsed = time.perf_counter() - started
    failures = sum(1 for status, _ in results if status != 200)
    latencies = sorted(latency for _, latency in results)
    return {
        "concurrency": concurrency,
        "requests": count,
        "failures": failures,
        "req_per_s": count / elapsed,
        "alerts_per_s": count * ALERTS_PER_NOTIFICATION / elapsed,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000,
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--server",
        default=os.environ.get("SLO_PIPELINE_TEST_DATABASE_URL")
        or "postgresql://postgres@127.0.0.1:5432/postgres",
        help="PostgreSQL server to create the throw-away database on (default: "
        "SLO_PIPELINE_TEST_DATABASE_URL, else the local server)",
    )
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", default="1,4,8")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    dbname = f"slo_bench_{uuid.uuid4().hex[:8]}"
    admin = connect(args.server)
    admin.autocommit = True
    admin.cursor().execute(f'CREATE DATABASE "{dbname}"')
    database_url = with_dbname(args.server, dbname)
    scratch = Path(tempfile.mkdtemp(prefix="slo-bench-"))
    webhook = None
    try:
        migrate(database_url)
        port = launch.free_port()
        env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "WEBHOOK_TOKEN": TOKEN,
            "SLO_PIPELINE_WEBHOOK_METRICS_DIR": str(scratch / "metrics"),
            "SLO_PIPELINE_CONFIG": str(scratch / "none.yml"),
        }
        log_path = scratch / "webhook.log"
        cli = [sys.executable, "-m", "slo_pipeline.cli", "--log-level", "WARNING", "webhook"]
        with log_path.open("ab") as log:
            popen = subprocess.Popen(
                [*cli, "--listen", f"127.0.0.1:{port}", "--workers", str(args.workers)],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        webhook = launch.ManagedProcess("webhook", popen, port, log_path)
        launch.wait_for_http(f"{webhook.url}/healthz", 30)
        run_round(port, 10_000_000, 50, 2)  # warm-up: connections, imports, page cache

        rows = []
        index = 0
        for concurrency in (int(c) for c in args.concurrency.split(",")):
            rows.append(run_round(port, index, args.requests, concurrency))
            index += args.requests
        print(
            f"webhook: {args.workers} gunicorn gthread workers, {ALERTS_PER_NOTIFICATION} alerts/notification"
        )
        columns = (("clients", 7), ("requests", 8), ("fail", 4), ("req/s", 8), ("alerts/s", 9))
        header = " ".join(f"{name:>{width}}" for name, width in (*columns, ("p50 ms", 7), ("p99 ms", 7)))
        print(header)
        print("-" * len(header))
        for row in rows:
            print(
                f"{row['concurrency']:>7} {row['requests']:>8} {row['failures']:>4} {row['req_per_s']:>8.0f} "
                f"{row['alerts_per_s']:>9.0f} {row['p50_ms']:>7.1f} {row['p99_ms']:>7.1f}"
            )
        return 1 if any(row["failures"] for row in rows) else 0
    finally:
        if webhook is not None:
            webhook.stop()
        admin.cursor().execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
        admin.close()
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
