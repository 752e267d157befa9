"""The retrain worker against real PostgreSQL: claiming, leases, takeover, failures.

Training is a small real function passed to the worker (the end-to-end test covers the real
MLflow training); it records each call so "exactly one worker ran it" can be checked.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psycopg2
import pytest
from mlflow import MlflowClient
from prometheus_client import CollectorRegistry, generate_latest

from slo_pipeline.devstack.launch import ManagedProcess
from slo_pipeline.settings import PipelineConfig, Settings, load_settings
from tests.fixtures.database import fetch_all
from tests.fixtures.waiting import wait_until, watching
from worker.jobs import MAX_ATTEMPTS, JobResult, claim_job, finish_job
from worker.metrics import RetrainQueueCollector
from worker.runner import RUN_TAG_JOB, RUN_TAG_WORKER, RetrainWorker

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class Outcome:
    run_id: str
    model_version: str
    promoted: bool
    reasons: list[str]


@dataclass
class RecordingTrainer:
    """Counts calls; optionally waits so concurrency windows are wide enough to matter."""

    duration: float = 0.0
    promoted: bool = True
    fail_for: set[str] = field(default_factory=set)
    calls: list[tuple[str, str]] = field(default_factory=list)  # (thread name, detector)
    tags: list[dict[str, str]] = field(default_factory=list)  # run_tags of each call
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(
        self, settings: Settings, detector: str, *, may_promote: Callable[[], bool], run_tags: dict[str, str]
    ) -> Outcome:
        with self.lock:
            self.calls.append((threading.current_thread().name, detector))
            self.tags.append(run_tags)
            number = len(self.calls)
        time.sleep(self.duration)  # stands in for training time
        if detector in self.fail_for:
            raise RuntimeError(f"no history for {detector}")
        promoted = self.promoted and may_promote()
        return Outcome(f"run-{number}", str(number), promoted, [f"checked {detector}"])


def worker_settings(database_url: str, lease: float = 30.0) -> Settings:
    return load_settings(
        database_url=database_url,
        worker_lease_seconds=lease,
        worker_poll_seconds=0.1,
        pipeline=PipelineConfig(),
    )


def enqueue(database_url: str, detector: str, **columns: object) -> int:
    names = ["detector", *columns]
    placeholders = ", ".join(["%s"] * len(names))
    row = fetch_all(
        database_url,
        f"INSERT INTO retrain_jobs ({', '.join(names)}) VALUES ({placeholders}) RETURNING id",
        (detector, *columns.values()),
    )
    return int(row[0][0])


def job_row(database_url: str, job_id: int) -> dict[str, object]:
    columns = (
        "status, worker_id, attempts, run_id, model_version, decision, decision_reasons, error, finished_at"
    )
    values = fetch_all(database_url, f"SELECT {columns} FROM retrain_jobs WHERE id = %s", (job_id,))[0]
    return dict(zip(columns.split(", "), values, strict=True))


def test_worker_runs_a_job_and_records_the_outcome(database_url: str) -> None:
    promoted_job = enqueue(database_url, "d1")
    trainer = RecordingTrainer()
    worker = RetrainWorker(worker_settings(database_url), worker_id="w1", train=trainer)
    processed = worker.run_once()
    assert processed is not None and processed.recorded and processed.job.id == promoted_job
    row = job_row(database_url, promoted_job)
    assert row["status"] == "succeeded"
    assert (row["worker_id"], row["attempts"], row["run_id"], row["model_version"]) == ("w1", 1, "run-1", "1")
    assert (row["decision"], row["decision_reasons"], row["error"]) == ("promoted", ["checked d1"], None)
    assert row["finished_at"] is not None

    rejected_job = enqueue(database_url, "d1")
    RetrainWorker(
        worker_settings(database_url), worker_id="w1", train=RecordingTrainer(promoted=False)
    ).run_once()
    assert job_row(database_url, rejected_job)["decision"] == "rejected"
    assert worker.run_once() is None  # nothing left


def test_failed_training_is_recorded_and_the_loop_goes_on(database_url: str) -> None:
    failing = enqueue(database_url, "broken")
    fine = enqueue(database_url, "fine")
    trainer = RecordingTrainer(fail_for={"broken"})
    worker = RetrainWorker(worker_settings(database_url), worker_id="loop", train=trainer)
    loop = threading.Thread(target=worker.run_forever, name="worker-loop")
    loop.start()
    try:
        wait_until(
            lambda: job_row(database_url, fine)["status"],
            timeout=30,
            interval=0.05,
            describe="the worker loop to finish the second job",
            until=lambda status: status == "succeeded",
        )
    finally:
        worker.stop_requested.set()
        loop.join(timeout=30)
    assert not loop.is_alive()
    failed = job_row(database_url, failing)
    assert failed["status"] == "failed"
    assert "RuntimeError: no history for broken" in str(failed["error"])
    assert failed["decision"] is None
    assert [detector for _, detector in trainer.calls] == ["broken", "fine"]


def test_two_workers_one_job_exactly_one_runs_it(database_url: str) -> None:
    job = enqueue(database_url, "d1")
    trainer = RecordingTrainer(duration=1.0)
    workers = [
        RetrainWorker(worker_settings(database_url), worker_id=f"w{i}", train=trainer) for i in range(2)
    ]
    results: dict[str, object] = {}
    start = threading.Barrier(2)

    def run(worker: RetrainWorker) -> None:
        start.wait()
        results[worker.worker_id] = worker.run_once()

    threads = [threading.Thread(target=run, args=(w,), name=w.worker_id) for w in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(trainer.calls) == 1
    assert sorted(result is None for result in results.values()) == [False, True]
    winner = trainer.calls[0][0]
    assert job_row(database_url, job)["worker_id"] == winner


def test_heartbeat_keeps_the_lease_so_no_one_takes_a_live_job(database_url: str) -> None:
    job = enqueue(database_url, "d1")
    # Two lease periods; a lease of 2 s leaves room for a heartbeat delayed by a loaded machine.
    slow = RecordingTrainer(duration=4.5)
    owner = RetrainWorker(worker_settings(database_url, lease=2.0), worker_id="owner", train=slow)
    thread = threading.Thread(target=owner.run_once, name="owner")
    thread.start()
    rival = RetrainWorker(worker_settings(database_url, lease=2.0), worker_id="rival", train=slow)
    # The rival may only start looking once the owner holds the job, or it could simply win the
    # first claim (that is not a takeover).
    wait_until(
        lambda: job_row(database_url, job)["worker_id"],
        timeout=30,
        interval=0.02,
        describe="the owner to claim the job",
        until=lambda worker_id: worker_id == "owner",
    )
    try:
        while thread.is_alive():
            assert rival.run_once() is None, "a job with a live heartbeat was taken over"
            thread.join(timeout=0.2)  # the rival's polling interval; ends early once the owner is done
    finally:
        thread.join(timeout=30)
    row = job_row(database_url, job)
    assert (row["status"], row["worker_id"], row["attempts"]) == ("succeeded", "owner", 1)
    assert len(slow.calls) == 1


def test_a_killed_workers_job_is_finished_by_another_exactly_once(
    database_url: str, tmp_path: Path, managed_processes: list[ManagedProcess]
) -> None:
    job = enqueue(database_url, "d1")
    marker = tmp_path / "training-started"
    tracking_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    script = tmp_path / "doomed_worker.py"
    # The doomed worker opens its MLflow run (as retrain does when it logs) and is SIGKILLed
    # inside it: the run stays RUNNING until the successor ends it.
    script.write_text(
        textwrap.dedent(
            """
            import pathlib, sys, time
            import mlflow
            from slo_pipeline.settings import PipelineConfig, load_settings
            from worker.runner import RUN_TAG_JOB, RUN_TAG_WORKER, RetrainWorker

            def train(settings, detector, *, may_promote, run_tags):
                mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
                experiment = mlflow.create_experiment(f"slo-pipeline/{detector}")
                mlflow.start_run(experiment_id=experiment, tags=run_tags)
                pathlib.Path(sys.argv[2]).write_text(detector)
                time.sleep(600)  # killed long before this ends

            settings = load_settings(database_url=sys.argv[1], worker_lease_seconds=1.5,
                                     mlflow_tracking_uri=sys.argv[3], pipeline=PipelineConfig())
            RetrainWorker(settings, worker_id="doomed", train=train).run_once()
            """
        )
    )
    log_path = tmp_path / "doomed.log"
    with log_path.open("wb") as log:
        popen = subprocess.Popen(
            [sys.executable, str(script), database_url, str(marker), tracking_uri],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    doomed = ManagedProcess("doomed-worker", popen, 0, log_path)
    managed_processes.append(doomed)
    wait_until(
        marker.exists,
        timeout=90,
        interval=0.05,
        describe="the doomed worker to start training",
        **watching(doomed),
    )
    assert job_row(database_url, job)["worker_id"] == "doomed"
    os.killpg(popen.pid, signal.SIGKILL)  # no chance to release or finish anything
    popen.wait(timeout=10)
    client = MlflowClient(tracking_uri=tracking_uri)
    experiment = client.get_experiment_by_name("slo-pipeline/d1")
    assert experiment is not None
    # Another job's run of the same detector, still going: not the dead worker's to end.
    live = client.create_run(experiment.experiment_id, tags={RUN_TAG_JOB: str(job + 1000)})
    (orphan,) = client.search_runs([experiment.experiment_id], f"tags.`{RUN_TAG_JOB}` = '{job}'")
    assert orphan.info.status == "RUNNING"

    trainer = RecordingTrainer()
    settings = load_settings(
        database_url=database_url,
        worker_lease_seconds=30.0,
        worker_poll_seconds=0.1,
        mlflow_tracking_uri=tracking_uri,
        pipeline=PipelineConfig(),
    )
    successor = RetrainWorker(settings, worker_id="successor", train=trainer)
    processed = wait_until(
        successor.run_once,
        timeout=30,
        interval=0.1,
        describe="the successor to take the dead worker's job over",
    )
    assert processed.job.id == job and processed.recorded
    row = job_row(database_url, job)
    assert (row["status"], row["worker_id"], row["attempts"], row["run_id"]) == (
        "succeeded",
        "successor",
        2,
        "run-1",
    )
    assert len(trainer.calls) == 1
    assert trainer.tags == [{RUN_TAG_JOB: str(job), RUN_TAG_WORKER: "successor"}]
    assert client.get_run(orphan.info.run_id).info.status == "KILLED"
    assert client.get_run(live.info.run_id).info.status == "RUNNING"
    assert successor.run_once() is None


def test_a_worker_that_lost_its_lease_cannot_overwrite_the_result(database_url: str) -> None:
    from slo_pipeline.adapters.postgres import connect

    job = enqueue(database_url, "d1")
    conn = connect(database_url)
    try:
        assert claim_job(conn, "slow", lease_seconds=30).id == job
        fetch_all(
            database_url, "UPDATE retrain_jobs SET lease_expires_at = now() - interval '1s' RETURNING id"
        )
        assert claim_job(conn, "fast", lease_seconds=30).id == job  # taken over
        assert finish_job(conn, job, "fast", JobResult(run_id="r-fast", model_version="2", promoted=True))
        late = JobResult(run_id="r-slow", model_version="1", promoted=True)
        assert not finish_job(conn, job, "slow", late)
    finally:
        conn.close()
    row = job_row(database_url, job)
    assert (row["worker_id"], row["run_id"], row["model_version"]) == ("fast", "r-fast", "2")


def test_a_job_that_keeps_killing_workers_is_failed_not_retried_forever(database_url: str) -> None:
    job = enqueue(
        database_url,
        "d1",
        status="running",
        worker_id="victim",
        attempts=MAX_ATTEMPTS,
        lease_expires_at="2000-01-01T00:00:00Z",
    )
    trainer = RecordingTrainer()
    assert RetrainWorker(worker_settings(database_url), train=trainer).run_once() is None
    row = job_row(database_url, job)
    assert row["status"] == "failed" and "abandoned" in str(row["error"])
    assert trainer.calls == []


def test_cli_worker_once_with_empty_queue_exits_0(database_url: str, tmp_path: Path) -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "slo_pipeline.cli", "worker", "--once", "--worker-id", "cli"],
        env={
            "DATABASE_URL": database_url,
            "SLO_PIPELINE_CONFIG": str(tmp_path / "none.yml"),
            "PATH": "/usr/bin",
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    assert "no retrain job to run" in completed.stderr


def test_a_worker_that_lost_its_job_may_not_promote(database_url: str) -> None:
    job = enqueue(database_url, "d1")
    answers: list[bool] = []

    def train(
        settings: Settings, detector: str, *, may_promote: Callable[[], bool], run_tags: dict[str, str]
    ) -> Outcome:
        assert may_promote(), "the owner of a live lease must be allowed to promote"
        # What claim_job does once this worker's lease has expired: another worker takes over.
        conn = psycopg2.connect(database_url)
        try:
            with conn, conn.cursor() as cur:
                cur.execute("UPDATE retrain_jobs SET worker_id = 'rival' WHERE id = %s", (job,))
        finally:
            conn.close()
        answers.append(may_promote())
        return Outcome("run-1", "1", answers[-1], ["trained"])

    processed = RetrainWorker(worker_settings(database_url), worker_id="w1", train=train).run_once()
    assert answers == [False]
    assert processed is not None and not processed.recorded
    assert job_row(database_url, job)["worker_id"] == "rival"


def _queue_registry(database_url: str) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(RetrainQueueCollector(database_url))
    return registry


def test_a_job_that_fails_on_an_outage_waits_and_retries_instead_of_failing(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from slo_pipeline.adapters import registry
    from slo_pipeline.devstack.launch import free_port

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    job = enqueue(database_url, "d1")
    settings = load_settings(
        database_url=database_url,
        worker_poll_seconds=0.1,
        # Long enough that the immediate re-claim below comes well inside it on a loaded machine.
        worker_retry_backoff_seconds=2.0,
        worker_retry_backoff_max_seconds=2.5,
        mlflow_tracking_uri=f"http://127.0.0.1:{free_port()}",  # nothing listens there
        pipeline=PipelineConfig(),
    )
    calls: list[float] = []

    def train(
        settings: Settings, detector: str, *, may_promote: Callable[[], bool], run_tags: dict[str, str]
    ) -> Outcome:
        calls.append(time.monotonic())
        if len(calls) <= 2:
            registry.champion_ref(settings, detector)  # the real client against a dead server
            raise AssertionError("the champion lookup answered from a port nobody listens on")
        return Outcome("run-3", "3", may_promote(), ["trained"])

    worker = RetrainWorker(settings, worker_id="w1", train=train)
    first = worker.run_once()
    assert first is not None and first.recorded and first.result.transient
    row = fetch_all(
        database_url,
        "SELECT status, attempts, transient_failures, error, not_before > now() "
        "FROM retrain_jobs WHERE id = %s",
        (job,),
    )[0]
    assert row[:3] == ("queued", 0, 1) and row[4], row
    assert "Connection refused" in row[3] or "Max retries" in row[3], row[3]
    assert worker.run_once() is None, "claimed again before its back-off ended"
    page = generate_latest(_queue_registry(database_url)).decode()
    assert "slo_pipeline_retrain_jobs_backing_off 1.0" in page
    assert 'slo_pipeline_retrain_jobs_finished_total{outcome="failed"} 0.0' in page

    second = wait_until(worker.run_once, timeout=10, interval=0.05, describe="the first retry")
    assert second.result.transient
    third = wait_until(worker.run_once, timeout=10, interval=0.05, describe="the second retry")
    assert third.job.id == job and third.recorded and third.result.error is None
    # Back-off: 2 s, then 4 s capped at 2.5 s.
    assert calls[1] - calls[0] >= 2.0 and calls[2] - calls[1] >= 2.5, calls
    assert (
        "slo_pipeline_retrain_jobs_backing_off 0.0" in generate_latest(_queue_registry(database_url)).decode()
    )
    final = job_row(database_url, job)
    assert (final["status"], final["attempts"], final["model_version"], final["error"]) == (
        "succeeded",
        1,
        "3",
        None,
    )


def test_a_job_that_keeps_failing_on_an_outage_is_failed_after_the_retry_limit(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from slo_pipeline.adapters import registry
    from slo_pipeline.devstack.launch import free_port

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    job = enqueue(database_url, "d1")
    settings = load_settings(
        database_url=database_url,
        worker_retry_backoff_seconds=0.2,
        worker_outage_retries=1,
        mlflow_tracking_uri=f"http://127.0.0.1:{free_port()}",  # a wrong URL: it never comes back
        pipeline=PipelineConfig(),
    )

    def train(
        settings: Settings, detector: str, *, may_promote: Callable[[], bool], run_tags: dict[str, str]
    ) -> Outcome:
        registry.champion_ref(settings, detector)
        raise AssertionError("the champion lookup answered from a port nobody listens on")

    worker = RetrainWorker(settings, worker_id="w1", train=train)
    first = worker.run_once()
    assert first is not None and first.result.transient and job_row(database_url, job)["status"] == "queued"
    second = wait_until(worker.run_once, timeout=10, interval=0.05, describe="the one retry allowed")
    assert second.job.id == job and second.recorded
    final = job_row(database_url, job)
    assert final["status"] == "failed", final
    assert final["error"].startswith("gave up after 1 outage retries: "), final["error"]
    assert worker.run_once() is None  # nothing left to claim: the detector may be queued again


def _leave_job_to_a_dead_worker(database_url: str, job: int) -> None:
    """What a SIGKILLed worker leaves in PostgreSQL: its claim, under a lease that has expired."""
    fetch_all(
        database_url,
        "UPDATE retrain_jobs SET status = 'running', worker_id = 'dead', attempts = 1, started_at = now(), "
        "lease_expires_at = now() - interval '1 second' WHERE id = %s RETURNING id",
        (job,),
    )


def test_a_promotion_whose_worker_died_before_recording_it_is_recorded_not_repeated(
    database_url: str, tmp_path: Path
) -> None:
    tracking_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    job = enqueue(database_url, "d1")
    _leave_job_to_a_dead_worker(database_url, job)
    # The dead worker got as far as moving @champion to the version its run registered. The
    # registry URI is named too: without it MLflow takes the process-wide one an earlier test set.
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    experiment = client.create_experiment("slo-pipeline/d1")
    run = client.create_run(experiment, tags={RUN_TAG_JOB: str(job)})
    client.set_terminated(run.info.run_id)
    client.create_registered_model("d1")
    version = client.create_model_version("d1", str(tmp_path / "model"), run_id=run.info.run_id)
    client.set_registered_model_alias("d1", "champion", version.version)
    settings = load_settings(
        database_url=database_url,
        worker_poll_seconds=0.1,
        mlflow_tracking_uri=tracking_uri,
        pipeline=PipelineConfig(),
    )
    trainer = RecordingTrainer()

    processed = RetrainWorker(settings, worker_id="successor", train=trainer).run_once()

    assert processed is not None and processed.recorded and processed.job.attempts == 2
    assert trainer.calls == [], "trained (and could have promoted) a second time"
    row = job_row(database_url, job)
    assert (row["status"], row["decision"], row["model_version"], row["run_id"]) == (
        "succeeded",
        "promoted",
        str(version.version),
        run.info.run_id,
    )
    # A champion made by another job's run is not this job's result: the next job trains.
    other = enqueue(database_url, "d1")
    _leave_job_to_a_dead_worker(database_url, other)
    assert RetrainWorker(settings, worker_id="successor", train=trainer).run_once() is not None
    assert len(trainer.calls) == 1
    assert job_row(database_url, other)["model_version"] == "1"
