"""The retrain worker: claim a job, keep its lease alive while training, record the outcome.

When there is no job, at most once a minute it also retries incident driver lookups that failed
while the webhook was answering Alertmanager (worker/driver_retry.py), hourly prunes old raw
deliveries, and every SLO_PIPELINE_SLO_HISTORY_INTERVAL snapshots the SLOs' compliance into
PostgreSQL (slo_pipeline/slo/history.py; idempotent, so several workers may all do it).

The training itself is a function `train(settings, detector_name) -> outcome` (by default
`slo_pipeline.orchestration.retrain.retrain_detector`, imported lazily because it pulls in MLflow and
scikit-learn); tests pass a small real function instead. A failed training is recorded on the
job and the loop goes on; a training that failed because MLflow, Prometheus or PostgreSQL could
not be reached goes back to the queue behind an exponential back-off (the job waits out the outage
and is never failed for it); a database outage is logged and retried at the next poll.

Every MLflow run a job makes is tagged with the job's id (`RUN_TAG_JOB`). A worker SIGKILLed
mid-training leaves its run RUNNING; the worker that takes the job over marks such runs KILLED
before it trains again, so the registry shows what happened instead of a run that never ends.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Protocol

import psycopg2
import psycopg2.extensions

from slo_pipeline.adapters.incident_drivers import DriverOutcome, DriverSource, PrometheusDriverSource
from slo_pipeline.adapters.postgres import DatabaseError, connect
from slo_pipeline.settings import Settings
from slo_pipeline.slo.history import SETTLE_SECONDS as SNAPSHOT_SETTLE_SECONDS
from slo_pipeline.slo.history import PassResult as SnapshotPass
from slo_pipeline.slo.history import snapshot_pass
from worker.driver_retry import retry_driver_lookups
from worker.jobs import ClaimedJob, JobResult, claim_job, extend_lease, finish_job, retry_later
from worker.retention import prune_alert_deliveries
from worker.transient import is_outage

log = logging.getLogger(__name__)

# Heartbeats per lease period: a couple can be lost to a slow database before the lease runs out.
HEARTBEATS_PER_LEASE = 3
# Between driver-retry passes (only run while no job is waiting): failed lookups are rare, and
# each pass is one small indexed query when there is nothing to retry.
DRIVER_RETRY_INTERVAL_SECONDS = 60.0
# Retention (old raw deliveries) runs hourly: deleting a day late costs nothing.
RETENTION_INTERVAL_SECONDS = 3600.0
ERROR_TEXT_LIMIT = 4000
RUN_TAG_JOB = "slo_pipeline.retrain_job"
RUN_TAG_WORKER = "slo_pipeline.worker"


class RetrainOutcomeLike(Protocol):
    @property
    def run_id(self) -> str: ...

    @property
    def model_version(self) -> str: ...

    @property
    def promoted(self) -> bool: ...

    @property
    def reasons(self) -> list[str]: ...


# train(settings, detector_name, *, may_promote, run_tags) -> outcome; `may_promote()` must be
# asked (and be True) right before a new model is made champion; `run_tags` go on its MLflow run.
TrainFunction = Callable[..., RetrainOutcomeLike]


def default_train_function() -> TrainFunction:
    from slo_pipeline.orchestration.retrain import retrain_detector

    return retrain_detector


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True)
class ProcessedJob:
    job: ClaimedJob
    result: JobResult
    recorded: bool  # False: our lease was taken over, the result was not written


class LeaseHeartbeat:
    """Background thread extending the job's lease until stopped; notes when the lease is lost."""

    def __init__(self, settings: Settings, job_id: int, worker_id: str) -> None:
        self._settings = settings
        self._job_id = job_id
        self._worker_id = worker_id
        self._stop = threading.Event()
        self.lost = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"lease-heartbeat-{job_id}", daemon=True)

    def __enter__(self) -> LeaseHeartbeat:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _beat(self) -> None:
        interval = self._settings.worker_lease_seconds / HEARTBEATS_PER_LEASE
        while not self._stop.wait(interval):
            try:
                conn = connect(self._settings.database_url, application_name="slo-pipeline-worker-lease")
                try:
                    still_ours = extend_lease(
                        conn, self._job_id, self._worker_id, self._settings.worker_lease_seconds
                    )
                finally:
                    conn.close()
            except Exception as err:  # keep beating: the database may come back before the lease ends
                log.warning("could not extend the lease of job %d: %s", self._job_id, err)
                continue
            if not still_ours:
                # Python cannot interrupt the training; the finish is guarded by worker_id instead.
                log.error(
                    "job %d: lease lost to another worker; its result will not be recorded", self._job_id
                )
                self.lost.set()
                return


class RetrainWorker:
    def __init__(
        self,
        settings: Settings,
        *,
        worker_id: str | None = None,
        train: TrainFunction | None = None,
        driver_source: DriverSource | None = None,
    ) -> None:
        """`driver_source` defaults to instant queries against `settings.prometheus_url`."""
        self.settings = settings
        self.worker_id = worker_id or default_worker_id()
        self._train = train
        self._driver_source = driver_source
        self._next_driver_retry = 0.0  # time.monotonic() of the next pass
        self._next_retention = 0.0
        self._next_slo_snapshot = 0.0
        self.stop_requested = threading.Event()

    def _train_function(self) -> TrainFunction:
        if self._train is None:
            self._train = default_train_function()
        return self._train

    def run_once(self) -> ProcessedJob | None:
        """Claim and process at most one job; None when there was nothing to do."""
        job = self._claim()
        if job is None:
            return None
        log.info(
            "worker %s claimed job %d (detector %s, attempt %d)",
            self.worker_id,
            job.id,
            job.detector,
            job.attempts,
        )
        with LeaseHeartbeat(self.settings, job.id, self.worker_id) as heartbeat:
            earlier: JobResult | None = None
            if job.attempts > 1:
                self._end_orphaned_runs(job)
                earlier = self._promoted_by_dead_worker(job)
            result = earlier or self._execute(
                job, lambda: not heartbeat.lost.is_set() and self._still_owner(job)
            )
        recorded = self._finish(job, result)
        return ProcessedJob(job=job, result=result, recorded=recorded)

    def run_forever(self) -> None:
        """Process jobs until `stop_requested` is set (between jobs, never mid-training)."""
        log.info("worker %s polling every %.1fs", self.worker_id, self.settings.worker_poll_seconds)
        while not self.stop_requested.is_set():
            try:
                processed = self.run_once()
            except (DatabaseError, psycopg2.Error) as err:
                log.warning("worker %s: database unavailable, retrying: %s", self.worker_id, err)
                processed = None
            if processed is None:
                if time.monotonic() >= self._next_driver_retry:
                    self.retry_drivers()
                    self._next_driver_retry = time.monotonic() + DRIVER_RETRY_INTERVAL_SECONDS
                if time.monotonic() >= self._next_retention:
                    self.prune_deliveries()
                    self._next_retention = time.monotonic() + RETENTION_INTERVAL_SECONDS
                if time.monotonic() >= self._next_slo_snapshot:
                    self.snapshot_slos()
                    self._next_slo_snapshot = time.monotonic() + self._seconds_to_next_snapshot()
                self.stop_requested.wait(self.settings.worker_poll_seconds)

    def retry_drivers(self) -> list[DriverOutcome]:
        """One pass over incidents whose driver lookup failed; never raises (logs instead)."""
        source = self._driver_source or PrometheusDriverSource(self.settings.prometheus)
        try:
            conn = connect(self.settings.database_url, application_name="slo-pipeline-worker-drivers")
            try:
                return retry_driver_lookups(conn, source)
            finally:
                conn.close()
        except Exception as err:  # a database outage or a bug here must not stop retraining
            log.warning(
                "worker %s: driver retry pass failed, next in %.0fs: %s",
                self.worker_id,
                DRIVER_RETRY_INTERVAL_SECONDS,
                err,
            )
            return []

    def prune_deliveries(self) -> int:
        """One retention pass over alert_deliveries; never raises (logs instead)."""
        try:
            conn = connect(self.settings.database_url, application_name="slo-pipeline-worker-retention")
            try:
                return prune_alert_deliveries(conn, self.settings.alert_delivery_retention_days)
            finally:
                conn.close()
        except Exception as err:  # a database outage here must not stop retraining
            log.warning(
                "worker %s: retention pass failed, next in %.0fs: %s",
                self.worker_id,
                RETENTION_INTERVAL_SECONDS,
                err,
            )
            return 0

    def snapshot_slos(self) -> SnapshotPass | None:
        """One SLO history pass (every due instant of every SLO); never raises (logs instead)."""
        try:
            result = snapshot_pass(self.settings)
        except Exception as err:  # a database outage here must not stop retraining
            log.warning("worker %s: SLO history pass failed, retrying next interval: %s", self.worker_id, err)
            return None
        if result.snapshots_inserted or result.failed:
            log.info(
                "SLO history: %d snapshots, %d breach periods from %d SLOs%s",
                result.snapshots_inserted,
                result.breaches_written,
                result.slos,
                f"; Prometheus failed for {result.failed}" if result.failed else "",
            )
        return result

    def _seconds_to_next_snapshot(self) -> float:
        # Just after the next multiple of the interval, so the instant it stores is complete.
        interval = self.settings.slo_history_interval_seconds
        return interval - time.time() % interval + SNAPSHOT_SETTLE_SECONDS + 1.0

    def _claim(self) -> ClaimedJob | None:
        conn = connect(self.settings.database_url, application_name="slo-pipeline-worker")
        try:
            return claim_job(conn, self.worker_id, self.settings.worker_lease_seconds)
        finally:
            conn.close()

    def _still_owner(self, job: ClaimedJob) -> bool:
        """Renew the lease right now; False when another worker has taken the job over.

        Training calls this immediately before moving @champion, so a worker whose lease ran out
        mid-training can never promote next to the worker that took its job over.
        """
        try:
            conn = connect(self.settings.database_url, application_name="slo-pipeline-worker-lease")
            try:
                return extend_lease(conn, job.id, self.worker_id, self.settings.worker_lease_seconds)
            finally:
                conn.close()
        except Exception as err:  # unsure who owns the job: do not promote
            log.warning("job %d: could not confirm the lease before promotion: %s", job.id, err)
            return False

    def _execute(self, job: ClaimedJob, may_promote: Callable[[], bool]) -> JobResult:
        started = time.monotonic()
        try:
            outcome = self._train_function()(
                self.settings,
                job.detector,
                may_promote=may_promote,
                run_tags={RUN_TAG_JOB: str(job.id), RUN_TAG_WORKER: self.worker_id},
            )
        except Exception as err:  # any training failure is recorded on the job, the loop lives on
            if is_outage(err):
                log.warning(
                    "job %d (detector %s): a service is unreachable, retrying later: %s",
                    job.id,
                    job.detector,
                    err,
                )
                return JobResult(error=f"{type(err).__name__}: {err}"[-ERROR_TEXT_LIMIT:], transient=True)
            log.exception("job %d (detector %s) failed", job.id, job.detector)
            text = f"{type(err).__name__}: {err}\n{traceback.format_exc()}"
            return JobResult(error=text[-ERROR_TEXT_LIMIT:])
        log.info(
            "job %d (detector %s) done in %.1fs: version %s %s",
            job.id,
            job.detector,
            time.monotonic() - started,
            outcome.model_version,
            "promoted" if outcome.promoted else "rejected",
        )
        return JobResult(
            run_id=str(outcome.run_id),
            model_version=str(outcome.model_version),
            promoted=bool(outcome.promoted),
            reasons=tuple(str(reason) for reason in outcome.reasons),
        )

    def _finish(self, job: ClaimedJob, result: JobResult) -> bool:
        # The result is worth waiting for: retry a few times if the database blinks.
        last_error: Exception | None = None
        for attempt in range(3):
            try:
                conn = connect(self.settings.database_url, application_name="slo-pipeline-worker")
                try:
                    if result.transient and job.transient_failures >= self.settings.worker_outage_retries:
                        gave_up = f"gave up after {job.transient_failures} outage retries: {result.error}"
                        log.error("job %d (detector %s): %s", job.id, job.detector, gave_up)
                        recorded = finish_job(conn, job.id, self.worker_id, replace(result, error=gave_up))
                    elif result.transient:
                        recorded = self._retry_later(conn, job, result)
                    else:
                        recorded = finish_job(conn, job.id, self.worker_id, result)
                finally:
                    conn.close()
            except Exception as err:
                last_error = err
                log.warning("job %d: recording the result failed (attempt %d): %s", job.id, attempt + 1, err)
                self.stop_requested.wait(min(self.settings.worker_poll_seconds, 2.0 * (attempt + 1)))
                continue
            if not recorded:
                log.error(
                    "job %d: another worker owns it now; result of %s discarded", job.id, self.worker_id
                )
            return recorded
        raise DatabaseError(f"job {job.id}: could not record the result: {last_error}")

    def _retry_later(self, conn: psycopg2.extensions.connection, job: ClaimedJob, result: JobResult) -> bool:
        wait = retry_later(
            conn,
            job.id,
            self.worker_id,
            result.error or "unreachable",
            base_seconds=self.settings.worker_retry_backoff_seconds,
            cap_seconds=self.settings.worker_retry_backoff_max_seconds,
        )
        if wait is not None:
            log.info("job %d (detector %s) back in the queue, next try in %.0fs", job.id, job.detector, wait)
        return wait is not None

    def _promoted_by_dead_worker(self, job: ClaimedJob) -> JobResult | None:
        """The dead worker's promotion, when it moved `@champion` and died before recording it:
        recorded as this job's result instead of training (and promoting) a second time."""
        from slo_pipeline.adapters.registry import champion_from_run_tag

        try:
            ref = champion_from_run_tag(self.settings, job.detector, RUN_TAG_JOB, str(job.id))
        except Exception as err:  # unsure: train; the promotion's compare-and-set still guards
            log.warning("job %d: could not check for an earlier attempt's promotion: %s", job.id, err)
            return None
        if ref is None:
            return None
        log.warning(
            "job %d: an earlier attempt already promoted version %s (run %s); recording it, not retraining",
            job.id,
            ref.version,
            ref.run_id,
        )
        reason = "promoted by an earlier attempt of this job, whose worker died before recording it"
        return JobResult(run_id=ref.run_id, model_version=ref.version, promoted=True, reasons=(reason,))

    def _end_orphaned_runs(self, job: ClaimedJob) -> None:
        """A worker died holding this job: end the MLflow runs it left RUNNING. Never raises (a
        registry that is down now will fail the training too, which then waits and retries)."""
        from slo_pipeline.adapters.registry import end_orphaned_runs

        try:
            ended = end_orphaned_runs(self.settings, job.detector, RUN_TAG_JOB, str(job.id))
        except Exception as err:
            log.warning("job %d: could not end the runs of its dead worker: %s", job.id, err)
            return
        if ended:
            log.warning(
                "job %d: marked %d run(s) of a dead worker KILLED: %s", job.id, len(ended), ", ".join(ended)
            )
