"""Webhook throughput and latency against its floor: 10-alert notifications, gunicorn + PostgreSQL.

    .venv/bin/python benchmarks/bench_webhook.py [--requests 2000] [--concurrency 1,4,8] [--rows-out FILE]

Starts `slo-pipeline webhook` (real gunicorn) and the floor app (benchmarks/webhook_floor_app.py:
Flask + one batched upsert, same gunicorn setup) on a throw-away database of the PostgreSQL at
--server (default: the local one), sends the same distinct notifications to both from this
process (a second process to the servers), rounds interleaved, and prints req/s and latency
percentiles per client concurrency. Then it counts the stored alerts: every alert sent must be in
the database. The client runs on the same machine, so on 2 cores it competes with the servers:
compare the two apps of one run, not absolute numbers across machines.
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

sys.path.insert(0, str(Path(__file__).resolve().parent))

from rowtable import Row, format_table, write_rows
from webhook_floor_app import CREATE_TABLE_SQL

from slo_pipeline.adapters.postgres import connect, migrate, with_dbname
from slo_pipeline.devstack import launch
from slo_pipeline.settings import load_settings

TOKEN = "bench-token"
ALERTS_PER_NOTIFICATION = 10
THROUGHPUT_TARGET = 0.8  # of the floor app's, measured in the same run


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


def start_server(
    name: str, command: list[str], env: dict[str, str], port: int, scratch: Path
) -> launch.ManagedProcess:
    log_path = scratch / f"{name}.log"
    with log_path.open("ab") as log:
        popen = subprocess.Popen(
            command,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=Path(__file__).resolve().parent,
        )
    server = launch.ManagedProcess(name, popen, port, log_path)
    launch.wait_for_http(f"{server.url}/healthz", 60)
    return server


def count(database_url: str, sql: str) -> int:
    conn = connect(database_url)
    try:
        with conn.cursor() as cursor:
            cursor.execute(sql)
            return int(cursor.fetchone()[0])
    finally:
        conn.close()


def result_rows(
    rounds: list[tuple[dict[str, float], dict[str, float]]], sent: int, missing: dict[str, int]
) -> list[Row]:
    out: list[Row] = []
    for webhook_row, floor_row in rounds:
        clients = int(webhook_row["concurrency"])
        out.append(
            Row(
                f"webhook throughput, {clients} client(s), {ALERTS_PER_NOTIFICATION}-alert notifications",
                webhook_row["req_per_s"],
                "req/s",
                floor_row["req_per_s"],
                "Flask + one upsert",
                f">= {THROUGHPUT_TARGET}",
            )
        )
        out.append(
            Row(
                f"webhook p99 latency, {clients} client(s)",
                webhook_row["p99_ms"],
                "ms",
                floor_row["p99_ms"],
                "Flask + one upsert",
                f">= {THROUGHPUT_TARGET}",
                inverted=True,  # floor p99 / webhook p99: 0.8 = 1.25x the floor's latency
            )
        )
    for app, lost in missing.items():
        out.append(
            Row(
                f"{app}: alerts sent but not stored (of {sent:,}, failed requests included)",
                lost,
                "",
                target="<= 0",
            )
        )
    return out


def main(argv: list[str] | None = None) -> int:
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
    parser.add_argument("--rows-out", help="write the result rows as JSON to this file")
    args = parser.parse_args(argv)

    dbname = f"slo_bench_{uuid.uuid4().hex[:8]}"
    admin = connect(args.server)
    admin.autocommit = True
    admin.cursor().execute(f'CREATE DATABASE "{dbname}"')
    database_url = with_dbname(args.server, dbname)
    scratch = Path(tempfile.mkdtemp(prefix="slo-bench-"))
    servers: list[launch.ManagedProcess] = []
    try:
        migrate(database_url)
        conn = connect(database_url)
        with conn, conn.cursor() as cursor:
            cursor.execute(CREATE_TABLE_SQL)
        conn.close()
        env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "WEBHOOK_TOKEN": TOKEN,
            "SLO_PIPELINE_WEBHOOK_METRICS_DIR": str(scratch / "metrics"),
            "SLO_PIPELINE_CONFIG": str(scratch / "none.yml"),
        }
        settings = load_settings()
        webhook_port, floor_port = launch.free_port(), launch.free_port()
        cli = [sys.executable, "-m", "slo_pipeline.cli", "--log-level", "WARNING", "webhook"]
        webhook_cmd = [*cli, "--listen", f"127.0.0.1:{webhook_port}", "--workers", str(args.workers)]
        floor_cmd = [
            sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{floor_port}",
            "--workers", str(args.workers), "--worker-class", "gthread",
            "--threads", str(settings.webhook_threads), "--log-level", "warning",
            "webhook_floor_app:create_app()",
        ]  # fmt: skip
        servers.append(start_server("webhook", webhook_cmd, env, webhook_port, scratch))
        servers.append(start_server("floor", floor_cmd, env, floor_port, scratch))
        # warm-up: connections, imports, page cache
        run_round(webhook_port, 10_000_000, 50, 2)
        run_round(floor_port, 10_000_000, 50, 2)
        sent = 50 * ALERTS_PER_NOTIFICATION

        rounds = []
        index = 0
        # Interleaved, so that both apps see the same load from the rest of the machine.
        for concurrency in (int(c) for c in args.concurrency.split(",")):
            webhook_row = run_round(webhook_port, index, args.requests, concurrency)
            floor_row = run_round(floor_port, index, args.requests, concurrency)
            rounds.append((webhook_row, floor_row))
            index += args.requests
            sent += args.requests * ALERTS_PER_NOTIFICATION
        stored_sql = "SELECT count(DISTINCT fingerprint) FROM {}"
        missing = {
            "webhook": sent - count(database_url, stored_sql.format("incidents")),
            "floor app": sent - count(database_url, stored_sql.format("floor_incidents")),
        }
        print(
            f"webhook: {args.workers} gunicorn gthread workers x {settings.webhook_threads} threads, "
            f"{ALERTS_PER_NOTIFICATION} alerts/notification; floor: Flask + one upsert, same gunicorn setup"
        )
        columns = (("app", 9), ("clients", 7), ("requests", 8), ("fail", 4), ("req/s", 8), ("alerts/s", 9))
        header = " ".join(f"{name:>{width}}" for name, width in (*columns, ("p50 ms", 7), ("p99 ms", 7)))
        print(header)
        print("-" * len(header))
        for pair in rounds:
            for app, row in zip(("webhook", "floor"), pair, strict=True):
                print(
                    f"{app:>9} {row['concurrency']:>7} {row['requests']:>8} {row['failures']:>4} "
                    f"{row['req_per_s']:>8.0f} {row['alerts_per_s']:>9.0f} "
                    f"{row['p50_ms']:>7.1f} {row['p99_ms']:>7.1f}"
                )
        result = result_rows(rounds, sent, missing)
        print("\n" + format_table(result))
        write_rows(result, args.rows_out)
        return 1 if any(row["failures"] for pair in rounds for row in pair) else 0
    finally:
        for server in servers:
            server.stop()
        admin.cursor().execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
        admin.close()
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
