"""The exporter's own health metrics, in a registry of their own (never the global default one).

A private registry keeps two exporters in one process (tests, the benchmark) independent and
keeps library metrics of whatever else is imported out of the exporter's page.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from slo_pipeline.adapters.model_package import REFUSAL_REASONS
from slo_pipeline.adapters.prometheus_connection import QUERY_ERROR_REASONS
from slo_pipeline.core.scorability import SERIES_REASONS

# From a few ms (1k series) to minutes (a slow backend at 100k series).
CYCLE_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


class ExporterMetrics:
    def __init__(
        self,
        detector_names: Iterable[str],
        *,
        shard: tuple[int, int] = (0, 1),
        assignment: Mapping[str, int] | None = None,
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry
        # Sharded replicas (exporter/sharding.py): which shard this is, and the whole detector ->
        # shard table every replica computes alike. A detector whose shard no live replica
        # reports is unscored, and rules/anomaly.rules.yml alerts on it.
        shard_info = Gauge(
            "anomaly_exporter_shard_info",
            "This replica's shard (0-based) and the number of shards; always 1.",
            ["shard", "shards"],
            registry=registry,
        )
        shard_info.labels(shard=str(shard[0]), shards=str(shard[1])).set(1)
        owners = Gauge(
            "anomaly_exporter_detector_shard_info",
            "For every configured detector, the shard that scores it; always 1.",
            ["detector", "shard"],
            registry=registry,
        )
        for detector, owner in (assignment or {}).items():
            owners.labels(detector=detector, shard=str(owner)).set(1)
        self.cycle_duration = Histogram(
            "anomaly_exporter_cycle_duration_seconds",
            "Wall time of one scoring cycle over all detectors.",
            buckets=CYCLE_BUCKETS,
            registry=registry,
        )
        self.up = Gauge(
            "anomaly_exporter_up",
            "1 when the detector's last cycle published scores, 0 when its query, model or scoring failed.",
            ["detector"],
            registry=registry,
        )
        self.last_success = Gauge(
            "anomaly_exporter_last_success_timestamp_seconds",
            "Unix time of the detector's last cycle that published scores.",
            ["detector"],
            registry=registry,
        )
        self.series = Gauge(
            "anomaly_exporter_series",
            "Series whose scores the detector published in its last successful cycle.",
            ["detector"],
            registry=registry,
        )
        self.unscorable_series = Gauge(
            "anomaly_exporter_unscorable_series",
            "Series the query returned but the model could not score, by reason: "
            + ", ".join(SERIES_REASONS)
            + ".",
            ["detector", "reason"],
            registry=registry,
        )
        self.dropped_series = Gauge(
            "anomaly_exporter_dropped_series",
            "Series not published because their label set duplicated another after label renaming.",
            ["detector"],
            registry=registry,
        )
        self.query_errors = Counter(
            "anomaly_exporter_query_errors_total",
            "Cycles whose range query to Prometheus failed, by reason: "
            + ", ".join(QUERY_ERROR_REASONS)
            + ".",
            ["detector", "reason"],
            registry=registry,
        )
        self.scoring_errors = Counter(
            "anomaly_exporter_scoring_errors_total",
            "Cycles in which the model failed on the fetched data.",
            ["detector"],
            registry=registry,
        )
        self.explanation_errors = Counter(
            "anomaly_exporter_explanation_errors_total",
            "Cycles in which the anomalous series could not be explained; their scores were published "
            "without anomaly_driver_info.",
            ["detector"],
            registry=registry,
        )
        self.registry_errors = Counter(
            "anomaly_exporter_registry_errors_total",
            "Champion alias lookups that failed (MLflow unreachable); the loaded model keeps serving.",
            ["detector"],
            registry=registry,
        )
        self.registry_last_success = Gauge(
            "anomaly_exporter_registry_last_success_timestamp_seconds",
            "Unix time the registry last answered the detector's @champion lookup (0 before the first); "
            "the loaded model keeps scoring while it is unreachable.",
            ["detector"],
            registry=registry,
        )
        self.model_load_errors = Counter(
            "anomaly_exporter_model_load_errors_total",
            "New champion versions that failed to load and were not swapped in.",
            ["detector"],
            registry=registry,
        )
        self.model_refusals = Counter(
            "anomaly_exporter_model_load_refusals_total",
            "Champion versions refused unloaded because they are not a model this project writes "
            "(pickle, foreign code, untrusted types...); the loaded model keeps serving.",
            ["detector", "reason"],
            registry=registry,
        )
        self.model_swaps = Counter(
            "anomaly_exporter_model_swaps_total",
            "Champion versions loaded and swapped in without a restart (the first load included).",
            ["detector"],
            registry=registry,
        )
        self.full_fetches = Counter(
            "anomaly_exporter_full_fetches_total",
            "Fetches that asked Prometheus for the detector's whole window instead of only its newest "
            "steps (first cycle, changed query or window, after an error, hourly refresh).",
            ["detector"],
            registry=registry,
        )
        self.fetched_steps = Gauge(
            "anomaly_exporter_fetched_steps",
            "Grid steps per query the detector's last fetch asked Prometheus for.",
            ["detector"],
            registry=registry,
        )
        # Every labelled series exists from the start, so rate() and absent() work from the first
        # scrape instead of after the first error.
        for name in detector_names:
            for metric in (
                self.up,
                self.last_success,
                self.series,
                self.dropped_series,
                self.scoring_errors,
                self.explanation_errors,
                self.registry_errors,
                self.registry_last_success,
                self.model_load_errors,
                self.model_swaps,
                self.full_fetches,
                self.fetched_steps,
            ):
                metric.labels(detector=name)
            for reason in REFUSAL_REASONS:
                self.model_refusals.labels(detector=name, reason=reason)
            for reason in QUERY_ERROR_REASONS:
                self.query_errors.labels(detector=name, reason=reason)
            for reason in SERIES_REASONS:
                self.unscorable_series.labels(detector=name, reason=reason)

    def render(self) -> bytes:
        return generate_latest(self.registry)
