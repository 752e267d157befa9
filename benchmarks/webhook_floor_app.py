"""The webhook benchmark's floor: the least a receiver of Alertmanager notifications can do.

A minimal Flask app, served by gunicorn exactly like the real webhook (same workers, gthread,
threads): check the bearer token, parse the JSON, write every alert with ONE batched upsert and
commit. No delivery log, no validation beyond what the upsert needs, no retrain queue, no
metrics. `bench_webhook.py` starts it with `gunicorn webhook_floor_app:create_app()`.
"""

from __future__ import annotations

import hmac
import json
import os
import threading
from typing import Any

import psycopg2
import psycopg2.extras
from flask import Flask, Response, request

CREATE_TABLE_SQL = """
CREATE TABLE IF NOT EXISTS floor_incidents (
    fingerprint text NOT NULL,
    starts_at timestamptz NOT NULL,
    status text NOT NULL,
    labels jsonb NOT NULL,
    PRIMARY KEY (fingerprint, starts_at)
)
"""

UPSERT_SQL = """
INSERT INTO floor_incidents (fingerprint, starts_at, status, labels) VALUES %s
ON CONFLICT (fingerprint, starts_at) DO UPDATE SET status = EXCLUDED.status, labels = EXCLUDED.labels
"""


def create_app() -> Flask:
    database_url = os.environ["DATABASE_URL"]
    expected = f"Bearer {os.environ['WEBHOOK_TOKEN']}".encode()
    local = threading.local()
    app = Flask(__name__)

    def connection() -> Any:
        if getattr(local, "conn", None) is None:
            local.conn = psycopg2.connect(database_url)
        return local.conn

    @app.post("/alerts")
    def receive() -> Response:
        if not hmac.compare_digest(request.headers.get("Authorization", "").encode(), expected):
            return Response("unauthorized\n", status=401)
        alerts = json.loads(request.get_data())["alerts"]
        rows = [(a["fingerprint"], a["startsAt"], a["status"], json.dumps(a["labels"])) for a in alerts]
        conn = connection()
        with conn.cursor() as cursor:
            psycopg2.extras.execute_values(cursor, UPSERT_SQL, rows)
        conn.commit()
        return Response('{"status": "ok"}\n', mimetype="application/json")

    @app.get("/healthz")
    def healthz() -> Response:
        return Response("ok\n")

    return app
