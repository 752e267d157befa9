"""Prometheus metrics of `slo-pipeline rules sync`: what each tick did and when it last succeeded."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from slo_pipeline.slo.sync import TickOutcome

# A tick that raised something unexpected (a bug); the loop logs it and goes on.
ERROR_OUTCOME = "error"
SUCCESS = (TickOutcome.IDLE, TickOutcome.INSTALLED)


class _ReloadCollector(Collector):
    """Prometheus reloads the sync asked for and that succeeded (the reloader counts them)."""

    def __init__(self, reload_count: Callable[[], int]) -> None:
        self._reload_count = reload_count

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(
            "slo_pipeline_rules_sync_reloads", "Successful reloads of Prometheus after new rule files."
        )
        family.add_metric([], self._reload_count())
        yield family


class SyncMetrics:
    def __init__(self, reload_count: Callable[[], int]) -> None:
        self.registry = CollectorRegistry()
        self._ticks = Counter(
            "slo_pipeline_rules_sync_ticks",
            "Sync ticks by outcome: idle (nothing changed), installed, refused (the stored SLOs give "
            "invalid rules; the old files stay), failed (database, promtool or the folder), error (a bug).",
            ["outcome"],
            registry=self.registry,
        )
        for outcome in (*(o.value for o in TickOutcome), ERROR_OUTCOME):
            self._ticks.labels(outcome=outcome)  # every outcome exists from the first scrape
        self._last_success = Gauge(
            "slo_pipeline_rules_sync_last_success_timestamp_seconds",
            "Unix time of the last tick that confirmed the rule files match the stored SLOs (0 before).",
            registry=self.registry,
        )
        self.registry.register(_ReloadCollector(reload_count))

    def tick(self, outcome: TickOutcome | None) -> None:
        """Record one tick; None for a tick that raised."""
        self._ticks.labels(outcome=outcome.value if outcome is not None else ERROR_OUTCOME).inc()
        if outcome in SUCCESS:
            self._last_success.set(time.time())
