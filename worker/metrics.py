"""The retrain queue (and the SLO history's freshness) as Prometheus metrics, read from PostgreSQL
when `/metrics` is scraped.

The queue is shared by every worker, so its state lives in `retrain_jobs`, not in one worker's
memory: every worker reports the same values (dashboards take `max`), and the counts survive
worker restarts. One aggregate query per scrape, with a short statement timeout; when the
database cannot answer, `slo_pipeline_retrain_queue_up` is 0 and the queue series are absent for
that scrape (unknown, not zero).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import psycopg2
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from slo_pipeline.adapters.postgres import connect

log = logging.getLogger(__name__)

ACTIVE_STATUSES = ("queued", "running")
FINISHED_OUTCOMES = ("promoted", "rejected", "failed")
FAILED_WINDOW_HOURS = 24
STATEMENT_TIMEOUT_MS = 2000

# One row per status: how many jobs, and the age of the oldest (since queued / since started).
QUEUE_SQL = f"""
SELECT status,
       count(*),
       COALESCE(EXTRACT(EPOCH FROM now() - min(
           CASE status WHEN 'queued' THEN created_at WHEN 'running' THEN started_at END)), 0)
FROM retrain_jobs
WHERE status IN ('queued', 'running')
   OR (status = 'failed' AND finished_at > now() - interval '{FAILED_WINDOW_HOURS} hours')
GROUP BY status
"""

# Queued jobs that failed on an unreachable service and wait out their back-off (sql/022).
BACKING_OFF_SQL = """
SELECT count(*) FROM retrain_jobs WHERE status = 'queued' AND not_before > now()
"""

# Per stored SLO: its newest history snapshot (an index lookup each, not a scan of the history).
SLO_HISTORY_SQL = """
SELECT s.name,
       COALESCE(EXTRACT(EPOCH FROM (
           SELECT max(h.taken_at) FROM slo_snapshots h WHERE h.slo_name = s.name)), 0)
FROM slos s
"""

# Every finished job by outcome: a count of rows that are never deleted, so it only grows.
FINISHED_SQL = """
SELECT COALESCE(decision, 'failed'), count(*)
FROM retrain_jobs
WHERE status IN ('succeeded', 'failed')
GROUP BY 1
"""


class RetrainQueueCollector(Collector):
    def __init__(self, database_url: str, *, connect_timeout: float = 3.0) -> None:
        self._database_url = database_url
        self._connect_timeout = connect_timeout

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        up = GaugeMetricFamily(
            "slo_pipeline_retrain_queue_up",
            "1 when the retrain queue could be read from PostgreSQL for this scrape, else 0.",
        )
        try:
            active, finished, history, backing_off = self._read()
        except Exception as err:  # a scrape must answer even while the database is down
            log.warning("could not read the retrain queue for /metrics: %s", err)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up

        jobs = GaugeMetricFamily(
            "slo_pipeline_retrain_jobs",
            f"Retrain jobs queued or running now, and failed within the last {FAILED_WINDOW_HOURS} hours.",
            labels=["status"],
        )
        age = GaugeMetricFamily(
            "slo_pipeline_retrain_jobs_oldest_age_seconds",
            "Age of the oldest queued job (since queued) and running job (since started); 0 when none.",
            labels=["status"],
        )
        for status in (*ACTIVE_STATUSES, "failed"):
            count, oldest = active.get(status, (0, 0.0))
            jobs.add_metric([status], count)
            if status in ACTIVE_STATUSES:
                age.add_metric([status], oldest)
        yield jobs
        yield age
        waiting = GaugeMetricFamily(
            "slo_pipeline_retrain_jobs_backing_off",
            "Queued jobs whose training failed because MLflow, Prometheus or PostgreSQL was unreachable, "
            "waiting out their back-off before the next try (never failed for an outage).",
        )
        waiting.add_metric([], backing_off)
        yield waiting

        outcomes = CounterMetricFamily(
            "slo_pipeline_retrain_jobs_finished",
            "Retrain jobs finished since the queue was created: promoted (new champion), rejected by "
            "validation, or failed.",
            labels=["outcome"],
        )
        for outcome in FINISHED_OUTCOMES:
            outcomes.add_metric([outcome], finished.get(outcome, 0))
        yield outcomes

        newest = GaugeMetricFamily(
            "slo_pipeline_slo_history_newest_snapshot_timestamp_seconds",
            "Per stored SLO, the scheduled instant of its newest compliance snapshot in PostgreSQL "
            "(0: none yet); older than two SLO_PIPELINE_SLO_HISTORY_INTERVALs means no worker stores them.",
            labels=["slo"],
        )
        for slo, taken_at in sorted(history.items()):
            newest.add_metric([slo], taken_at)
        yield newest

    def _read(self) -> tuple[dict[str, tuple[int, float]], dict[str, int], dict[str, float], int]:
        conn = connect(
            self._database_url,
            connect_timeout=self._connect_timeout,
            application_name="slo-pipeline-worker-metrics",
        )
        try:
            with conn, conn.cursor() as cur:
                cur.execute(f"SET LOCAL statement_timeout = {STATEMENT_TIMEOUT_MS}")
                cur.execute(QUEUE_SQL)
                active = {str(status): (int(n), float(age)) for status, n, age in cur.fetchall()}
                cur.execute(FINISHED_SQL)
                finished = {str(outcome): int(n) for outcome, n in cur.fetchall()}
                cur.execute(BACKING_OFF_SQL)
                backing_off = int(cur.fetchone()[0])
            history: dict[str, float] = {}
            try:
                with conn, conn.cursor() as cur:
                    cur.execute(f"SET LOCAL statement_timeout = {STATEMENT_TIMEOUT_MS}")
                    cur.execute(SLO_HISTORY_SQL)
                    history = {str(slo): float(epoch) for slo, epoch in cur.fetchall()}
            except psycopg2.Error as err:  # e.g. sql/012 not applied yet: the queue still reports
                log.warning("could not read the SLO history's freshness for /metrics: %s", err)
        finally:
            conn.close()
        return active, finished, history, backing_off


def create_registry(database_url: str) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(RetrainQueueCollector(database_url))
    return registry
