"""The UI's few PostgreSQL helpers: one short connection per call, rows as plain dicts.

The operator app is used by a handful of people and reads small tables, so a pool would only add
state that survives Streamlit's reruns; a fresh connection per action keeps a database restart
invisible (the next click simply works again).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg2
import psycopg2.extensions
import psycopg2.extras

from slo_pipeline.adapters import outages
from slo_pipeline.adapters import postgres as db

APPLICATION_NAME = "slo-pipeline-ui"
# Short: an operator waiting 5 s for a page that then says "database down" is long enough.
CONNECT_TIMEOUT_SECONDS = 3.0
# A query stuck behind a lock or on an overloaded server fails instead of holding the page.
STATEMENT_TIMEOUT_SECONDS = 4.0


@contextmanager
def connection(database_url: str) -> Iterator[psycopg2.extensions.connection]:
    """A connection closed after the block; any database failure becomes `db.DatabaseError`.

    `db.connect` already names the server when it cannot connect; errors of a query (a missing
    table when migrations have not run, a violated constraint) are named here the same way.
    """
    server = db.describe_dsn(database_url)
    earlier = outages.earlier_outage(server)
    if earlier is not None:
        raise db.DatabaseError(f"PostgreSQL at {server}: {outages.not_asked_again(earlier)}")
    try:
        conn = db.connect(
            database_url,
            connect_timeout=CONNECT_TIMEOUT_SECONDS,
            application_name=APPLICATION_NAME,
            statement_timeout_seconds=STATEMENT_TIMEOUT_SECONDS,
        )
    except db.DatabaseError as err:
        # One page view waits on an unreachable server once, not once per query.
        outages.note_outage(server, str(err).rsplit(": ", 1)[-1])
        raise
    try:
        yield conn
    except psycopg2.Error as err:
        text = str(err).strip()
        detail = text.splitlines()[0] if text else type(err).__name__
        raise db.DatabaseError(f"PostgreSQL at {db.describe_dsn(database_url)}: {detail}") from err
    finally:
        conn.close()


def reachable(database_url: str) -> bool:
    """Whether the database answers a trivial query (within the connect timeout)."""
    try:
        with connection(database_url) as conn, conn.cursor() as cur:
            cur.execute("SELECT 1")
    except db.DatabaseError:
        return False
    return True


def fetch_all(database_url: str, query: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
    """Run one query in its own (committed) transaction; its rows as dicts."""
    with (
        connection(database_url) as conn,
        conn,
        conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur,
    ):
        cur.execute(query, params)
        return [dict(row) for row in cur.fetchall()]


def execute(database_url: str, statement: str, params: Sequence[Any] = ()) -> int:
    """Run one statement in its own transaction; returns the number of rows it touched."""
    with connection(database_url) as conn, conn, conn.cursor() as cur:
        cur.execute(statement, params)
        return int(cur.rowcount)


def execute_as(database_url: str, who: str, statement: str, params: Sequence[Any] = ()) -> int:
    """`execute`, with `who` as the author the audit triggers record (transaction-local)."""
    with connection(database_url) as conn, conn, conn.cursor() as cur:
        cur.execute("SELECT set_config('slo_pipeline.changed_by', %s, true)", [who])
        cur.execute(statement, params)
        return int(cur.rowcount)
