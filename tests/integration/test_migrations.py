"""Migrations (sql/NNN_*.sql) and the schema's guarantees, on the machine's real PostgreSQL."""

from __future__ import annotations

import subprocess
import sys
import threading
import uuid
from pathlib import Path

import psycopg2
import psycopg2.errors
import pytest

from slo_pipeline.adapters.postgres import (
    DatabaseError,
    applied_migrations,
    connect,
    discover_migrations,
    ensure_database,
    migrate,
    with_dbname,
)
from tests.fixtures.database import SERVER_URL, drop_database, fetch_all
from tests.fixtures.paths import REPO_ROOT

pytestmark = pytest.mark.integration

REPO_MIGRATIONS = [m.version for m in discover_migrations(REPO_ROOT / "sql")]


def test_migrate_is_idempotent(empty_database_url: str) -> None:
    assert "001_init" in REPO_MIGRATIONS
    assert migrate(empty_database_url) == REPO_MIGRATIONS
    assert migrate(empty_database_url) == []
    assert applied_migrations(empty_database_url) == REPO_MIGRATIONS
    tables = {
        row[0]
        for row in fetch_all(
            empty_database_url, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
        )
    }
    assert {"schema_migrations", "alert_deliveries", "incidents", "retrain_jobs"} <= tables


def test_incident_driver_column_is_added_to_an_existing_schema_without_touching_rows(
    empty_database_url: str, tmp_path: Path
) -> None:
    # A database migrated before 003 existed, holding an incident, is brought up to date.
    for name in ("001_init.sql", "002_slos.sql"):
        (tmp_path / name).write_bytes((REPO_ROOT / "sql" / name).read_bytes())
    assert migrate(empty_database_url, tmp_path) == ["001_init", "002_slos"]
    execute(
        empty_database_url,
        "INSERT INTO alert_deliveries (body_sha256, body) VALUES (repeat('a', 64), '{}');"
        "INSERT INTO incidents (fingerprint, starts_at, status, first_seen_delivery_id, "
        "last_seen_delivery_id) SELECT 'old', now(), 'firing', id, id FROM alert_deliveries",
    )
    assert migrate(empty_database_url) == REPO_MIGRATIONS[2:]  # only what came after, 003 first
    assert REPO_MIGRATIONS[2] == "003_incident_driver"
    assert fetch_all(empty_database_url, "SELECT fingerprint, driver FROM incidents") == [("old", None)]
    column = fetch_all(
        empty_database_url,
        "SELECT data_type, is_nullable FROM information_schema.columns "
        "WHERE table_name = 'incidents' AND column_name = 'driver'",
    )
    assert column == [("text", "YES")]
    # 004: the existing incident has no recorded lookup, so the worker's retry pass may take it.
    lookup = fetch_all(empty_database_url, "SELECT driver_lookup, driver_lookup_attempts FROM incidents")
    assert lookup == [(None, 0)]


def test_concurrent_migrators_apply_each_file_once(empty_database_url: str) -> None:
    results: list[list[str]] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def run() -> None:
        barrier.wait()
        try:
            results.append(migrate(empty_database_url))
        except BaseException as err:  # collected and asserted below
            errors.append(err)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert sorted(results, key=len) == [[], [], [], REPO_MIGRATIONS]


def test_a_failing_migration_is_rolled_back_and_named(empty_database_url: str, tmp_path: Path) -> None:
    (tmp_path / "001_good.sql").write_text("CREATE TABLE good (id int);")
    (tmp_path / "002_bad.sql").write_text("CREATE TABLE half (id int);\nSELECT no_such_function();")
    (tmp_path / "README.md").write_text("not a migration")
    with pytest.raises(DatabaseError, match=r"002_bad\.sql"):
        migrate(empty_database_url, tmp_path)
    assert applied_migrations(empty_database_url) == ["001_good"]
    assert fetch_all(empty_database_url, "SELECT to_regclass('half')") == [(None,)]
    (tmp_path / "002_bad.sql").write_text("CREATE TABLE half (id int);")
    assert migrate(empty_database_url, tmp_path) == ["002_bad"]


def test_two_migrations_with_one_number_are_refused(tmp_path: Path) -> None:
    (tmp_path / "003_a.sql").write_text("SELECT 1;")
    (tmp_path / "003_b.sql").write_text("SELECT 1;")
    with pytest.raises(DatabaseError, match="two migrations share number 003"):
        discover_migrations(tmp_path)


def test_ensure_database_creates_once() -> None:
    url = with_dbname(SERVER_URL, f"slo_ensure_{uuid.uuid4().hex[:10]}")
    try:
        assert ensure_database(url) is True
        assert ensure_database(url) is False
        connect(url).close()
    finally:
        drop_database(url)


def test_connect_error_names_the_target_without_password() -> None:
    with pytest.raises(DatabaseError) as caught:
        connect("postgresql://someone:hunter2@127.0.0.1:1/nowhere", connect_timeout=1)
    message = str(caught.value)
    assert "host=127.0.0.1" in message and "port=1" in message and "dbname=nowhere" in message
    assert "hunter2" not in message


def test_cli_db_migrate_creates_and_migrates(tmp_path: Path) -> None:
    url = with_dbname(SERVER_URL, f"slo_cli_{uuid.uuid4().hex[:10]}")
    env = {"DATABASE_URL": url, "SLO_PIPELINE_CONFIG": str(tmp_path / "none.yml"), "PATH": "/usr/bin"}
    try:
        for _ in range(2):
            completed = subprocess.run(
                [sys.executable, "-m", "slo_pipeline.cli", "db", "migrate"],
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            assert completed.returncode == 0, completed.stderr
        assert applied_migrations(url) == REPO_MIGRATIONS
    finally:
        drop_database(url)


def execute(database_url: str, statement: str) -> None:
    conn = connect(database_url)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(statement)
    finally:
        conn.close()


def test_at_most_one_queued_or_running_job_per_detector(database_url: str) -> None:
    execute(database_url, "INSERT INTO retrain_jobs (detector) VALUES ('d1'), ('d2')")
    with pytest.raises(psycopg2.errors.UniqueViolation):
        execute(database_url, "INSERT INTO retrain_jobs (detector) VALUES ('d1')")
    with pytest.raises(psycopg2.errors.UniqueViolation):
        execute(
            database_url,
            "INSERT INTO retrain_jobs (detector, status, worker_id, lease_expires_at) "
            "VALUES ('d1', 'running', 'w', now())",
        )
    execute(
        database_url,
        "INSERT INTO retrain_jobs (detector, status) VALUES ('d1', 'succeeded'), ('d1', 'failed')",
    )
    assert fetch_all(database_url, "SELECT count(*) FROM retrain_jobs WHERE detector = 'd1'") == [(3,)]


def test_schema_refuses_inconsistent_rows(database_url: str) -> None:
    execute(
        database_url,
        "INSERT INTO alert_deliveries (body_sha256, body) VALUES (repeat('a', 64), '{}')",
    )
    # the dedup key treats missing (NULL) fields as equal: a malformed body is stored once
    with pytest.raises(psycopg2.errors.UniqueViolation):
        execute(
            database_url, "INSERT INTO alert_deliveries (body_sha256, body) VALUES (repeat('a', 64), '{}')"
        )
    with pytest.raises(psycopg2.errors.CheckViolation):
        execute(
            database_url,
            "INSERT INTO incidents (fingerprint, starts_at, status, first_seen_delivery_id, "
            "last_seen_delivery_id) SELECT 'f', now(), 'resolved', id, id FROM alert_deliveries",
        )
    with pytest.raises(psycopg2.errors.CheckViolation):
        execute(
            database_url,
            "INSERT INTO incidents (fingerprint, starts_at, status, first_seen_delivery_id, "
            "last_seen_delivery_id, feedback, feedback_at) "
            "SELECT 'f', now(), 'firing', id, id, 'maybe', now() FROM alert_deliveries",
        )
    with pytest.raises(psycopg2.errors.CheckViolation):
        execute(database_url, "INSERT INTO retrain_jobs (detector, status) VALUES ('d9', 'running')")
