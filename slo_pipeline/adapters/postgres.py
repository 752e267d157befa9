"""PostgreSQL access shared by every service: connect, create the database, apply migrations.

Migrations are the numbered, forward-only files in `sql/` (`NNN_name.sql`). Each runs in its own
transaction and is recorded in `schema_migrations`, so `migrate` is idempotent; a session-level
advisory lock serialises concurrent migrators (two replicas starting at once).
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import psycopg2
import psycopg2.errors
import psycopg2.extensions
from psycopg2 import sql

from slo_pipeline.resources import shipped_folder

log = logging.getLogger(__name__)

MIGRATION_FILE_PATTERN = re.compile(r"^(?P<number>\d{3})_(?P<name>[a-z0-9_]+)\.sql$")
# Arbitrary but fixed: every migrator of every version of this project must use the same key.
MIGRATION_LOCK_KEY = 0x510_91BE


class DatabaseError(RuntimeError):
    """A database operation failed; the message names the database (never its password)."""


@dataclass(frozen=True)
class Migration:
    version: str  # file stem, e.g. "001_init"
    path: Path

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.path.read_bytes()).hexdigest()


def describe_dsn(dsn: str) -> str:
    """The connection target without secrets, for error messages and logs."""
    try:
        parts = psycopg2.extensions.parse_dsn(dsn)
    except psycopg2.ProgrammingError:
        return "<unparsable database URL>"
    shown = {key: parts[key] for key in ("user", "host", "port", "dbname") if key in parts}
    return " ".join(f"{key}={value}" for key, value in shown.items()) or "<default libpq target>"


def with_dbname(dsn: str, dbname: str) -> str:
    """The same server and credentials, another database; a URL stays a URL (others may parse it)."""
    parts = urlsplit(dsn)
    if parts.scheme in ("postgresql", "postgres"):
        return urlunsplit(parts._replace(path="/" + quote(dbname, safe="")))
    return psycopg2.extensions.make_dsn(dsn, dbname=dbname)


def dbname_of(dsn: str) -> str:
    try:
        name = psycopg2.extensions.parse_dsn(dsn).get("dbname")
    except psycopg2.ProgrammingError as err:
        raise DatabaseError(f"cannot parse database URL {describe_dsn(dsn)}: {err}") from err
    if not name:
        raise DatabaseError(f"database URL {describe_dsn(dsn)} names no database")
    return name


def connect(
    database_url: str,
    *,
    connect_timeout: float = 5,
    application_name: str = "slo-pipeline",
    statement_timeout_seconds: float | None = None,
) -> psycopg2.extensions.connection:
    """Open a connection or raise DatabaseError saying which server/database was unreachable.

    `statement_timeout_seconds` sets the session's statement_timeout and lock_timeout, so a
    statement stuck behind a lock or a slow server fails (SQLSTATE 57014/55P03) instead of hanging.
    """
    extra: dict[str, str] = {}
    if statement_timeout_seconds is not None:
        millis = max(1, round(statement_timeout_seconds * 1000))
        extra["options"] = f"-c statement_timeout={millis} -c lock_timeout={millis}"
    try:
        return psycopg2.connect(
            database_url,
            # libpq takes whole seconds; never 0, which would mean "wait forever"
            connect_timeout=max(1, math.ceil(connect_timeout)),
            application_name=application_name,
            **extra,
        )
    except psycopg2.Error as err:
        detail = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DatabaseError(
            f"cannot connect to PostgreSQL at {describe_dsn(database_url)}: {detail}"
        ) from err


def ensure_database(database_url: str) -> bool:
    """Create the database named in `database_url` if missing. Returns True if it was created.

    The database itself is tried first: on managed PostgreSQL the role may not be allowed into
    the `postgres` maintenance database, and there is nothing to create anyway.
    """
    name = dbname_of(database_url)
    try:
        connect(database_url).close()
        return False
    except DatabaseError:
        pass  # missing (or unreachable: then the maintenance connection below says why)
    conn = connect(with_dbname(database_url, "postgres"))
    try:
        conn.autocommit = True  # CREATE DATABASE cannot run inside a transaction
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if cur.fetchone():
                return False
            try:
                cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            except psycopg2.errors.DuplicateDatabase:
                return False  # another process created it between our check and our CREATE
            except psycopg2.Error as err:
                raise DatabaseError(
                    f"cannot create database {name!r} on {describe_dsn(database_url)}: {err}"
                ) from err
        log.info("created database %s", name)
        return True
    finally:
        conn.close()


def discover_migrations(sql_dir: Path) -> list[Migration]:
    """Numbered migration files in order; two files with one number are an error, not a guess."""
    if not sql_dir.is_dir():
        raise DatabaseError(f"migration folder {str(sql_dir)!r} does not exist")
    migrations: list[Migration] = []
    by_number: dict[str, Path] = {}
    for path in sorted(sql_dir.iterdir()):
        match = MIGRATION_FILE_PATTERN.match(path.name)
        if not match or not path.is_file():
            continue
        number = match["number"]
        if number in by_number:
            raise DatabaseError(
                f"two migrations share number {number}: {by_number[number].name} and {path.name}"
            )
        by_number[number] = path
        migrations.append(Migration(version=path.stem, path=path))
    return migrations


def migrate(database_url: str, sql_dir: Path | None = None) -> list[str]:
    """Apply pending migrations in order (default: the shipped ones); returns those applied now."""
    migrations = discover_migrations(sql_dir if sql_dir is not None else shipped_folder("sql"))
    conn = connect(database_url, application_name="slo-pipeline-migrate")
    applied_now: list[str] = []
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            # Session-level lock, taken before even creating schema_migrations: concurrent
            # CREATE TABLE IF NOT EXISTS can still fail on the catalog's unique index.
            cur.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK_KEY,))
            cur.execute(
                """
                CREATE TABLE IF NOT EXISTS schema_migrations (
                    version     text PRIMARY KEY,
                    checksum    text NOT NULL,
                    applied_at  timestamptz NOT NULL DEFAULT now()
                )
                """
            )
            cur.execute("SELECT version, checksum FROM schema_migrations")
            already = dict(cur.fetchall())
        conn.autocommit = False
        for migration in migrations:
            if migration.version in already:
                if already[migration.version] != migration.checksum:
                    log.warning(
                        "migration %s changed after it was applied; forward-only: add a new file instead",
                        migration.version,
                    )
                continue
            _apply(conn, migration, database_url)
            applied_now.append(migration.version)
            log.info("applied migration %s", migration.version)
    finally:
        # Closing the session releases the advisory lock even if a migration failed.
        conn.close()
    return applied_now


def _apply(conn: psycopg2.extensions.connection, migration: Migration, database_url: str) -> None:
    script = migration.path.read_text(encoding="utf-8")
    try:
        with conn, conn.cursor() as cur:  # one transaction: all of the file or none of it
            cur.execute(script)
            cur.execute(
                "INSERT INTO schema_migrations (version, checksum) VALUES (%s, %s)",
                (migration.version, migration.checksum),
            )
    except psycopg2.Error as err:
        raise DatabaseError(
            f"migration {migration.path.name} failed on {describe_dsn(database_url)}: {err}"
        ) from err


def applied_migrations(database_url: str) -> list[str]:
    """Versions recorded in schema_migrations, oldest first (empty if never migrated)."""
    conn = connect(database_url)
    try:
        with conn, conn.cursor() as cur:
            cur.execute("SELECT to_regclass('schema_migrations') IS NOT NULL")
            if not cur.fetchone()[0]:
                return []
            cur.execute("SELECT version FROM schema_migrations ORDER BY version")
            return [row[0] for row in cur.fetchall()]
    finally:
        conn.close()
