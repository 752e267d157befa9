"""SLOs in PostgreSQL (`slos`, `slo_revisions` from sql/002_slos.sql). Thin I/O, no rule logic.

The revision trail is written by a database trigger (see the migration), so this module only
tells it who is changing things and why, and skips rows whose spec did not change: applying the
same file twice, or a file produced by `export`, writes nothing and records no revision.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg2.extensions
from psycopg2.extras import Json

from slo_pipeline.slo.spec import SLO, SpecError, slos_from_documents

# One writer of the SLO set at a time, so `--prune` never deletes what a concurrent apply added.
_APPLY_LOCK = "slo_pipeline:slos"


class StaleSLOError(ValueError):
    """An SLO is no longer what the caller last read: someone else changed or deleted it."""


@dataclass(frozen=True)
class ApplyResult:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.created or self.updated or self.deleted)


@dataclass(frozen=True)
class StoredVersion:
    """A cheap summary of the stored SLOs: equal digests mean equal specs, hence equal rules."""

    digest: str
    latest_revision: int | None  # for logs: which audited change the rules correspond to


@dataclass(frozen=True)
class Revision:
    slo_name: str
    revision: int
    changed_by: str
    changed_at: datetime
    old_spec: dict[str, Any] | None
    new_spec: dict[str, Any] | None
    change_note: str


def _who(cur: psycopg2.extensions.cursor, changed_by: str, change_note: str) -> None:
    if not changed_by.strip():
        raise ValueError("changed_by must name who makes the change (it goes into slo_revisions)")
    cur.execute(
        "SELECT set_config('slo_pipeline.changed_by', %s, true),"
        " set_config('slo_pipeline.change_note', %s, true)",
        (changed_by, change_note),
    )


def apply_slos(
    conn: psycopg2.extensions.connection,
    slos: Sequence[SLO],
    *,
    changed_by: str,
    change_note: str = "",
    prune: bool = False,
    expected: Mapping[str, dict[str, Any]] | None = None,
) -> ApplyResult:
    """Upsert validated SLOs in one transaction; with `prune`, delete SLOs not in `slos`.

    `expected` (name -> the stored document the caller based its change on) makes the write a
    compare-and-set: if any of those SLOs was changed or deleted meanwhile, nothing is written
    and StaleSLOError is raised. The comparison runs under the same lock as the write, so two
    concurrent editors cannot both pass it.
    """
    result = ApplyResult()
    wanted = {slo.name: slo for slo in slos}
    with conn, conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (_APPLY_LOCK,))
        _who(cur, changed_by, change_note)
        cur.execute("SELECT name, spec FROM slos FOR UPDATE")
        current: dict[str, dict[str, Any]] = dict(cur.fetchall())
        stale = sorted(
            name for name, document in (expected or {}).items() if _canonical(current.get(name)) != document
        )
        if stale:
            raise StaleSLOError(f"SLO(s) {stale} were changed or deleted by someone else meanwhile")
        for name, slo in sorted(wanted.items()):
            document = slo.to_document()
            values = (slo.service, slo.block.objective, slo.block.time_period, Json(document), changed_by)
            if name not in current:
                cur.execute(
                    "INSERT INTO slos (service, objective, time_period, spec, updated_by, name) "
                    "VALUES (%s, %s, %s, %s, %s, %s)",
                    (*values, name),
                )
                result.created.append(name)
            elif current[name] != document:
                cur.execute(
                    "UPDATE slos SET service = %s, objective = %s, time_period = %s, spec = %s, "
                    "updated_by = %s, updated_at = now() WHERE name = %s",
                    (*values, name),
                )
                result.updated.append(name)
            else:
                result.unchanged.append(name)
        if prune:
            for name in sorted(set(current) - set(wanted)):
                cur.execute("DELETE FROM slos WHERE name = %s", (name,))
                result.deleted.append(name)
    return result


def _canonical(document: dict[str, Any] | None) -> dict[str, Any] | None:
    """A stored document as this code would write it (what callers read through `load_slos`), so
    a row typed by hand or written by an older version compares equal to the SLO it loads as."""
    if document is None:
        return None
    try:
        (slo,) = slos_from_documents([document], source="table slos")
    except (SpecError, ValueError):
        return document  # unreadable: it cannot equal anything a caller loaded
    return slo.to_document()


def delete_slo(
    conn: psycopg2.extensions.connection, name: str, *, changed_by: str, change_note: str = ""
) -> bool:
    """Delete one SLO (its revisions stay); False if there was none by that name."""
    with conn, conn.cursor() as cur:
        _who(cur, changed_by, change_note)
        cur.execute("DELETE FROM slos WHERE name = %s", (name,))
        return bool(cur.rowcount > 0)


def load_slos(conn: psycopg2.extensions.connection) -> list[SLO]:
    """Every stored SLO, validated again (a hand-edited row must not produce broken rules)."""
    with conn, conn.cursor() as cur:
        cur.execute("SELECT spec FROM slos ORDER BY name")
        documents = [row[0] for row in cur.fetchall()]
    if not documents:
        return []
    return slos_from_documents(documents, source="table slos")


def stored_version(conn: psycopg2.extensions.connection) -> StoredVersion:
    """Digest of every stored spec, computed in the database so an idle poll transfers one row.

    The digest is over the specs themselves, not only the newest revision id: a TRUNCATE, a
    restored backup or a disabled trigger changes the rules without writing a revision.
    """
    with conn, conn.cursor() as cur:
        cur.execute(
            "SELECT md5(coalesce(string_agg(name || E'\\t' || spec::text, E'\\n' ORDER BY name), '')),"
            " (SELECT max(id) FROM slo_revisions)"
            " FROM slos"
        )
        digest, latest = cur.fetchone()
    return StoredVersion(digest=digest, latest_revision=latest)


def list_revisions(conn: psycopg2.extensions.connection, slo_name: str | None = None) -> list[Revision]:
    """Revisions, newest first; all SLOs when `slo_name` is None."""
    query = (
        "SELECT slo_name, revision, changed_by, changed_at, old_spec, new_spec, change_note"
        " FROM slo_revisions"
    )
    params: tuple[Any, ...] = ()
    if slo_name is not None:
        query += " WHERE slo_name = %s"
        params = (slo_name,)
    query += " ORDER BY changed_at DESC, id DESC"
    with conn, conn.cursor() as cur:
        cur.execute(query, params)
        return [Revision(*row) for row in cur.fetchall()]


def detectors_for_slo(conn: psycopg2.extensions.connection, slo_name: str) -> list[str]:
    """Detectors linked to an SLO (`detectors:` in its spec), e.g. to retrain after its page."""
    with conn, conn.cursor() as cur:
        cur.execute("SELECT spec -> 'slos' -> 0 -> 'detectors' FROM slos WHERE name = %s", (slo_name,))
        row = cur.fetchone()
    if row is None or row[0] is None:
        return []
    return [str(name) for name in row[0]]
