"""SQL of the retrain queue: claim with a lease, extend it, finish only while still the owner.

A job is claimable when queued (and past its `not_before`), or when running with an expired lease
(its worker died). Every write after the claim is guarded by `worker_id`, so a worker whose lease
was taken over cannot overwrite the new owner's result. A job that failed on a transient error
(a service unreachable) goes back to the queue with an exponential back-off (`retry_later`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg2.extensions
import psycopg2.extras

# A job whose worker died this many times is likely what kills workers (e.g. out of memory):
# fail it instead of handing it to the next victim.
MAX_ATTEMPTS = 3

CLAIM_SQL = """
UPDATE retrain_jobs
SET status = 'running',
    worker_id = %(worker_id)s,
    started_at = now(),
    lease_expires_at = now() + make_interval(secs => %(lease)s),
    attempts = attempts + 1
WHERE id = (
    SELECT id FROM retrain_jobs
    WHERE (status = 'queued' AND (not_before IS NULL OR not_before <= now()))
       OR (status = 'running' AND lease_expires_at < now() AND attempts < %(max_attempts)s)
    ORDER BY created_at, id
    FOR UPDATE SKIP LOCKED
    LIMIT 1
)
RETURNING id, detector, reason, attempts, transient_failures
"""

FAIL_EXHAUSTED_SQL = """
UPDATE retrain_jobs
SET status = 'failed',
    finished_at = now(),
    error = format('abandoned: lease expired after %%s attempts (last worker %%s)', attempts, worker_id)
WHERE status = 'running' AND lease_expires_at < now() AND attempts >= %(max_attempts)s
RETURNING id
"""

EXTEND_LEASE_SQL = """
UPDATE retrain_jobs
SET lease_expires_at = now() + make_interval(secs => %(lease)s)
WHERE id = %(job_id)s AND worker_id = %(worker_id)s AND status = 'running'
RETURNING id
"""

FINISH_SQL = """
UPDATE retrain_jobs
SET status = %(status)s,
    finished_at = now(),
    run_id = %(run_id)s,
    model_version = %(model_version)s,
    decision = %(decision)s,
    decision_reasons = %(decision_reasons)s,
    error = %(error)s
WHERE id = %(job_id)s AND worker_id = %(worker_id)s AND status = 'running'
RETURNING id
"""


# Back to the queue after a transient failure. The claim it used is given back (`attempts`
# counts dead workers only); the wait doubles with every transient failure, up to the cap.
RETRY_LATER_SQL = """
UPDATE retrain_jobs
SET status = 'queued',
    worker_id = NULL,
    lease_expires_at = NULL,
    attempts = greatest(attempts - 1, 0),
    transient_failures = transient_failures + 1,
    not_before = now() + make_interval(
        secs => least(%(base)s * power(2, least(transient_failures, 30)), %(cap)s)
    ),
    error = %(error)s
WHERE id = %(job_id)s AND worker_id = %(worker_id)s AND status = 'running'
RETURNING extract(epoch FROM not_before - now())
"""


@dataclass(frozen=True)
class ClaimedJob:
    id: int
    detector: str
    reason: str
    attempts: int
    transient_failures: int = 0  # outage retries so far


@dataclass(frozen=True)
class JobResult:
    """What a finished job records; `error` set means it failed."""

    run_id: str | None = None
    model_version: str | None = None
    promoted: bool | None = None
    reasons: tuple[str, ...] = ()
    error: str | None = None
    transient: bool = False  # the error was a service outage: retry later, do not fail the job

    @property
    def status(self) -> str:
        return "failed" if self.error is not None else "succeeded"

    @property
    def decision(self) -> str | None:
        if self.promoted is None:
            return None
        return "promoted" if self.promoted else "rejected"


def claim_job(
    conn: psycopg2.extensions.connection, worker_id: str, lease_seconds: float
) -> ClaimedJob | None:
    with conn, conn.cursor() as cur:
        cur.execute(FAIL_EXHAUSTED_SQL, {"max_attempts": MAX_ATTEMPTS})
        cur.execute(CLAIM_SQL, {"worker_id": worker_id, "lease": lease_seconds, "max_attempts": MAX_ATTEMPTS})
        row = cur.fetchone()
    return ClaimedJob(*row) if row else None


def extend_lease(
    conn: psycopg2.extensions.connection, job_id: int, worker_id: str, lease_seconds: float
) -> bool:
    """False when the job is no longer ours (lease expired and taken over, or finished)."""
    with conn, conn.cursor() as cur:
        cur.execute(EXTEND_LEASE_SQL, {"job_id": job_id, "worker_id": worker_id, "lease": lease_seconds})
        return cur.fetchone() is not None


def finish_job(conn: psycopg2.extensions.connection, job_id: int, worker_id: str, result: JobResult) -> bool:
    """Record the result; False (and nothing written) if another worker owns the job now."""
    reasons = psycopg2.extras.Json(list(result.reasons)) if result.promoted is not None else None
    params: dict[str, Any] = {
        "job_id": job_id,
        "worker_id": worker_id,
        "status": result.status,
        "run_id": result.run_id,
        "model_version": result.model_version,
        "decision": result.decision,
        "decision_reasons": reasons,
        "error": result.error,
    }
    with conn, conn.cursor() as cur:
        cur.execute(FINISH_SQL, params)
        return cur.fetchone() is not None


def retry_later(
    conn: psycopg2.extensions.connection,
    job_id: int,
    worker_id: str,
    error: str,
    *,
    base_seconds: float,
    cap_seconds: float,
) -> float | None:
    """Requeue the job behind a back-off; the seconds until it may be claimed again, or None
    (nothing written) if another worker owns it now."""
    params = {
        "job_id": job_id,
        "worker_id": worker_id,
        "error": error,
        "base": base_seconds,
        "cap": cap_seconds,
    }
    with conn, conn.cursor() as cur:
        cur.execute(RETRY_LATER_SQL, params)
        row = cur.fetchone()
    return None if row is None else float(row[0])
