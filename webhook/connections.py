"""One reusable PostgreSQL connection per worker thread that survives a database restart.

Reusing the connection saves a TCP handshake and a backend fork per notification. The price is
that after PostgreSQL restarts the kept connection is dead: a broken connection is dropped (never
handed out again), and work that failed on a *reused* connection is retried once on a fresh one,
so the first request after a restart does not fail needlessly. The retry is safe because every
unit of work here is one transaction that is idempotent (the delivery dedup key).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TypeVar

import psycopg2
import psycopg2.extensions

from slo_pipeline.adapters.postgres import connect

log = logging.getLogger(__name__)

T = TypeVar("T")


class ConnectionSource:
    def __init__(
        self,
        database_url: str,
        *,
        connect_timeout: float = 5,
        application_name: str,
        statement_timeout_seconds: float | None = None,
    ) -> None:
        self._database_url = database_url
        self._statement_timeout_seconds = statement_timeout_seconds
        self._connect_timeout = connect_timeout
        self._application_name = application_name
        self._local = threading.local()

    def run(self, work: Callable[[psycopg2.extensions.connection], T]) -> T:
        """Run `work(conn)`; raises postgres.DatabaseError or psycopg2.Error on failure."""
        kept: psycopg2.extensions.connection | None = getattr(self._local, "conn", None)
        if kept is not None and kept.closed:
            kept = None
        conn = kept or self._open()
        try:
            return work(conn)
        except psycopg2.Error:
            if not conn.closed:
                raise  # the connection is fine, the statement failed: keep it
            self._local.conn = None
            if kept is None:
                raise
            log.info("kept PostgreSQL connection was broken (server restarted?); retrying on a new one")
        conn = self._open()
        try:
            return work(conn)
        except psycopg2.Error:
            if conn.closed:
                self._local.conn = None
            raise

    def _open(self) -> psycopg2.extensions.connection:
        conn = connect(
            self._database_url,
            connect_timeout=self._connect_timeout,
            application_name=self._application_name,
            statement_timeout_seconds=self._statement_timeout_seconds,
        )
        self._local.conn = conn
        return conn

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None and not conn.closed:
            conn.close()
