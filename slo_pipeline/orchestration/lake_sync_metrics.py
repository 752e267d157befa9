"""Prometheus metrics of `slo-pipeline lake sync`: what each pass copied, what failed, and when
each detector last reached the lake, so a stalled sync pages before Prometheus' retention eats
the history it was meant to keep."""

from __future__ import annotations

import time
from collections.abc import Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge


class LakeSyncMetrics:
    def __init__(self, detectors: Sequence[str]) -> None:
        self.registry = CollectorRegistry()
        self._read = Counter(
            "slo_pipeline_lake_sync_samples_read",
            "Samples read from Prometheus by lake sync passes, by detector (re-read overlap included).",
            ["detector"],
            registry=self.registry,
        )
        self._inserted = Counter(
            "slo_pipeline_lake_sync_samples_inserted",
            "Samples the lake did not hold yet and now does, by detector.",
            ["detector"],
            registry=self.registry,
        )
        self._failures = Counter(
            "slo_pipeline_lake_sync_failures",
            "Lake sync passes that failed for a detector (Prometheus or the lake unreachable, bad data).",
            ["detector"],
            registry=self.registry,
        )
        self._last_success = Gauge(
            "slo_pipeline_lake_sync_last_success_timestamp_seconds",
            "Unix time of the last pass that brought the detector's samples into the lake (0 before).",
            ["detector"],
            registry=self.registry,
        )
        self._maintenance_failures = Counter(
            "slo_pipeline_lake_maintenance_failures",
            "Daily lake maintenance runs (retention, compaction, vacuum) that failed.",
            registry=self.registry,
        )
        self._last_maintenance = Gauge(
            "slo_pipeline_lake_maintenance_last_success_timestamp_seconds",
            "Unix time of the last successful lake maintenance (0 before).",
            registry=self.registry,
        )
        for name in detectors:  # every detector's series exist from the first scrape
            for family in (self._read, self._inserted, self._failures, self._last_success):
                family.labels(detector=name)

    def synced(self, detector: str, read: int, inserted: int) -> None:
        self._read.labels(detector=detector).inc(read)
        self._inserted.labels(detector=detector).inc(inserted)
        # A query that matches nothing (a renamed metric) is no success: the lake learns nothing,
        # and AnomalyLakeSyncStale must still fire.
        if read > 0:
            self._last_success.labels(detector=detector).set(time.time())

    def failed(self, detector: str) -> None:
        self._failures.labels(detector=detector).inc()

    def maintained(self, ok: bool) -> None:
        if ok:
            self._last_maintenance.set(time.time())
        else:
            self._maintenance_failures.inc()
