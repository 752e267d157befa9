"""False-alarm budget overrides (`detector_budgets`, set from the UI's threshold page), cached.

The pipeline YAML's `false_alarms_per_week` is each detector's default; a row in PostgreSQL
overrides it. The exporter asks every cycle and the worker at every training, so an applied
budget is used without a restart. The table is read at most once per `ttl_seconds`; while
PostgreSQL cannot be reached the last answer stands (the YAML before any), logged once per outage.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import psycopg2

from slo_pipeline.adapters.postgres import DatabaseError, connect, describe_dsn
from slo_pipeline.settings import DetectorConfig

log = logging.getLogger(__name__)

DEFAULT_TTL_SECONDS = 30.0
CONNECT_TIMEOUT_SECONDS = 2.0


class BudgetOverrides:
    def __init__(
        self,
        database_url: str,
        *,
        ttl_seconds: float = DEFAULT_TTL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._database_url = database_url
        self._ttl = ttl_seconds
        self._clock = clock
        self._values: dict[str, float] = {}
        self._read_at: float | None = None
        self._failing: str | None = None

    def budget(self, detector: DetectorConfig) -> float:
        """The budget in force: the override if one is stored, else the YAML's."""
        self._refresh_if_stale()
        return self._values.get(detector.name, detector.false_alarms_per_week)

    def apply(self, detector: DetectorConfig) -> DetectorConfig:
        """`detector` with the budget in force (the same object when there is no override)."""
        budget = self.budget(detector)
        if budget == detector.false_alarms_per_week:
            return detector
        return detector.model_copy(update={"false_alarms_per_week": budget})

    def _refresh_if_stale(self) -> None:
        now = self._clock()
        if self._read_at is not None and now - self._read_at < self._ttl:
            return
        self._read_at = now  # also after a failure: retry once per ttl, not every call
        try:
            self._values = self._read()
        except DatabaseError as err:
            if self._failing is None:
                log.warning("budget overrides unavailable, keeping the last known ones: %s", err)
            self._failing = str(err)
            return
        if self._failing is not None:
            log.info("budget overrides readable again (%d override(s))", len(self._values))
            self._failing = None

    def _read(self) -> dict[str, float]:
        conn = connect(
            self._database_url,
            connect_timeout=CONNECT_TIMEOUT_SECONDS,
            application_name="slo-pipeline-budgets",
        )
        try:
            with conn, conn.cursor() as cur:
                cur.execute("SELECT to_regclass('detector_budgets') IS NOT NULL")
                if not cur.fetchone()[0]:  # not migrated yet: no overrides
                    return {}
                cur.execute("SELECT detector, false_alarms_per_week FROM detector_budgets")
                return {str(name): float(value) for name, value in cur.fetchall()}
        except psycopg2.Error as err:
            raise DatabaseError(
                f"reading detector_budgets on {describe_dsn(self._database_url)}: {err}"
            ) from err
        finally:
            conn.close()
