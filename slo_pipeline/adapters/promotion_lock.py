"""One lock per detector, shared by everyone who moves its aliases (worker, `train`, UI, CLI).

MLflow has no compare-and-set on aliases, so promotion and rollback read the champion, check
it is still the one they judged against, and move the aliases while holding this lock: a
PostgreSQL session advisory lock keyed by the detector name (released by the server if the
holder dies). Without a reachable database, and only for a tracking store on this machine
(sqlite or a folder, whose users all run here), an exclusive file lock next to the store
stands in; a remote registry without the database cannot be promoted safely and fails.
"""

from __future__ import annotations

import fcntl
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import unquote, urlsplit

from slo_pipeline.adapters.postgres import DatabaseError, connect

log = logging.getLogger(__name__)

# First half of the two-key advisory lock; the second is hashtext(detector). Fixed forever:
# every version of every process must agree on it. (Migrations use the one-key form.)
PROMOTION_LOCK_CLASS = 0x510_9A7E
# How long a promotion waits for another one of the same detector before failing (retryable).
LOCK_WAIT_SECONDS = 60


class PromotionLockError(RuntimeError):
    """The lock could not be taken (no database and no local store, or the wait timed out)."""


@contextmanager
def promotion_lock(database_url: str, tracking_uri: str, detector: str) -> Iterator[str]:
    """Hold the detector's promotion lock; yields a description of the lock taken."""
    try:
        conn = connect(database_url, application_name="slo-pipeline-promotion")
    except DatabaseError as err:
        store = local_store_folder(tracking_uri)
        if store is None:
            raise PromotionLockError(
                f"cannot lock promotions of {detector!r}: {err}; the registry is remote, so only the "
                "database lock is shared by all of its users"
            ) from err
        log.warning("promotion lock for %r: %s; using a file lock next to the local store", detector, err)
        with _file_lock(store / f".promotion-{detector}.lock"):
            yield f"file lock in {store}"
        return
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("SET statement_timeout = %s", (f"{LOCK_WAIT_SECONDS}s",))
            try:
                cur.execute("SELECT pg_advisory_lock(%s, hashtext(%s))", (PROMOTION_LOCK_CLASS, detector))
            except Exception as err:
                raise PromotionLockError(
                    f"waited over {LOCK_WAIT_SECONDS}s for the promotion lock of {detector!r}: {err}"
                ) from err
        yield "database advisory lock"
    finally:
        # Closing the session releases the lock, also when the unlock itself would fail.
        conn.close()


def local_store_folder(tracking_uri: str) -> Path | None:
    """The folder of a tracking store on this machine (sqlite file, plain folder), else None."""
    parts = urlsplit(tracking_uri)
    if parts.scheme == "sqlite":
        path = unquote(tracking_uri.split(":///", 1)[1]) if ":///" in tracking_uri else ""
        return Path(path).parent if path else None
    if parts.scheme == "file":
        return Path(unquote(parts.path))
    if parts.scheme == "" and tracking_uri:
        return Path(tracking_uri)
    return None


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the flock
