"""The exporter service: a scoring loop in a background thread plus the HTTP endpoint.

Every `exporter_interval_seconds`, for each detector in turn:
  poll `@champion` (hot-swap on a new version) -> one batched `query_range` for all its series
  (only the newest steps once its matrix is cached: exporter/series_cache.py) ->
  `model.score_latest` -> render that detector's share of the page.
Series scoring at least 1 are also explained (`model.explain_latest` on their columns only, so
a calm cycle pays nothing) and get an `anomaly_driver_info` line; an explanation that fails is
logged and counted, and the scores are published without it.
Then the page is assembled once and published. A detector whose registry lookup, query, model
or scoring fails is marked down (`anomaly_exporter_up 0`) and publishes nothing this cycle; the
other detectors carry on. Stale scores are not kept: a score that cannot be refreshed disappears,
and Prometheus' staleness handling ends the series instead of repeating an outdated value.
"""

from __future__ import annotations

import logging
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from typing import Protocol, runtime_checkable

import numpy as np

from exporter.champion import (
    ChampionTracker,
    ModelSource,
    RefreshOutcome,
    RefreshResult,
    RegistryModelSource,
    ServingModel,
)
from exporter.exposition import (
    ModelInfo,
    RenderedDetector,
    assemble_page,
    explained_series,
    render_detector,
)
from exporter.http_server import MetricsPage, start_http_server
from exporter.self_metrics import ExporterMetrics
from exporter.series_cache import DEFAULT_REREAD_SECONDS, CachingSeriesSource, FetchStats
from exporter.sharding import Shard, assignment, owned_detectors, resolve_shard
from slo_pipeline.adapters.budgets import BudgetOverrides
from slo_pipeline.adapters.prometheus import RangeAnswer, SeriesBlock, fetch_range_answer, series_keys
from slo_pipeline.adapters.prometheus_connection import PrometheusAuthError, reason_of, redact_url
from slo_pipeline.adapters.scoring_endpoint import score_latest_via_endpoint
from slo_pipeline.core.model import DetectorModel
from slo_pipeline.core.scorability import unscored_counts
from slo_pipeline.settings import DetectorConfig, Settings

log = logging.getLogger(__name__)

# /healthz fails when no cycle has finished for this many intervals (plus the query timeout):
# a wedged scoring thread gets the pod restarted while a merely slow cycle does not.
HEALTHY_INTERVALS = 3


_NO_MODEL_REASONS = {
    RefreshOutcome.NO_CHAMPION: "no @champion model in the registry",
    RefreshOutcome.REGISTRY_ERROR: "registry unreachable and no model loaded yet",
    RefreshOutcome.REGISTRY_SKIPPED: "registry unreachable and no model loaded yet",
    RefreshOutcome.LOAD_ERROR: "the champion failed to load",
    RefreshOutcome.LOAD_DEFERRED: "the champion failed to load recently",
}


class SeriesSource(Protocol):
    def fetch(self, detector: DetectorConfig, *, start: float, end: float) -> SeriesBlock:
        """All series of the detector's query on its step grid; raises when the backend fails."""
        ...


@runtime_checkable
class CachingSource(Protocol):
    """A `SeriesSource` that keeps state between fetches (exporter/series_cache.py)."""

    def last_fetch(self, detector_name: str) -> FetchStats | None:
        """What the detector's last fetch asked for (None before the first)."""
        ...

    def invalidate(self, detector_name: str, reason: str) -> None:
        """Forget what was kept for the detector: its next fetch asks for the whole window."""
        ...


class PrometheusSeriesSource(CachingSeriesSource):
    """`query_range` against the configured Prometheus-API endpoint, fetching only the newest
    steps once a detector's matrix is cached (`incremental=False`: the whole window every time)."""

    def __init__(
        self, settings: Settings, *, incremental: bool = True, reread_seconds: float = DEFAULT_REREAD_SECONDS
    ) -> None:
        connection = settings.prometheus

        def fetch_answer(query: str, start: float, end: float, step: int) -> RangeAnswer:
            return fetch_range_answer(connection, query, start=start, end=end, step_seconds=step)

        super().__init__(fetch_answer, incremental=incremental, reread_seconds=reread_seconds)


@dataclass
class CycleReport:
    """What one cycle did, per detector: for logs, `--once` and tests."""

    started_at: float
    duration_seconds: float = 0.0
    up: dict[str, bool] = field(default_factory=dict)
    published: dict[str, int] = field(default_factory=dict)
    explained: dict[str, int] = field(default_factory=dict)  # series with an anomaly_driver_info line
    errors: dict[str, str] = field(default_factory=dict)
    # The backend refused the credentials (401/403): no detector can work until settings change.
    auth_failed: bool = False

    @property
    def all_up(self) -> bool:
        return all(self.up.values())


class ExporterService:
    """Drive it with `run_cycle()` (tests, `--once`) or `start(listen)` / `stop()` (the service)."""

    def __init__(
        self,
        settings: Settings,
        *,
        model_source: ModelSource | None = None,
        series_source: SeriesSource | None = None,
        wall_clock: Callable[[], float] = time.time,
        shard: Shard | None = None,
        budgets: BudgetOverrides | None = None,
    ) -> None:
        self.settings = settings
        if shard is None:
            shard = resolve_shard(
                settings.exporter_shards, settings.exporter_shard_index, socket.gethostname()
            )
        self.shard = shard
        configured = settings.pipeline.detectors
        self.detectors = owned_detectors(configured, shard)
        self.metrics = ExporterMetrics(
            (d.name for d in self.detectors),
            shard=(shard.index, shard.count),
            assignment=assignment((d.name for d in configured), shard.count),
        )
        self.page = MetricsPage(self.metrics.render)
        self._series_source = series_source or PrometheusSeriesSource(settings)
        source = model_source or RegistryModelSource(settings)
        self._trackers = {d.name: ChampionTracker(d.name, source) for d in self.detectors}
        self._rendered: dict[str, RenderedDetector] = {}
        self._warned_no_champion: set[str] = set()
        self._last_query_error: dict[str, str] = {}
        self._unscored_counts: dict[str, dict[str, int]] = {}
        self._registry_down: str | None = None  # set by the first failed lookup of a cycle
        self._cycles = 0
        self._last_explanation_error: dict[str, str] = {}
        self._wall_clock = wall_clock
        # A budget applied in the UI (PostgreSQL) overrides the YAML's, without a restart;
        # without `budgets` (tests of the cycle) the YAML's budget is used.
        self._budgets = budgets
        self._last_cycle_end: float | None = None  # monotonic
        self._stop = threading.Event()
        self._loop_thread: threading.Thread | None = None
        self._server: ThreadingHTTPServer | None = None
        self.page.publish(assemble_page([], []))

    # --- one cycle ---------------------------------------------------------------------------

    def run_cycle(self) -> CycleReport:
        """Score every detector once and publish the page. Never raises for a detector's failure."""
        began = time.perf_counter()
        report = CycleReport(started_at=self._wall_clock())
        # One failed champion lookup per cycle is enough: a hanging registry would otherwise cost
        # the MLflow client's timeout and retries once per detector (measured: ~36 s each), and
        # the loaded models serve on regardless. The next cycle asks again, starting one detector
        # further on, so an error that concerns one model only cannot keep the detectors after it
        # from ever seeing a new champion; a detector with no model yet is always asked.
        self._registry_down = None
        start = self._cycles % len(self.detectors) if self.detectors else 0
        self._cycles += 1
        for detector in self.detectors[start:] + self.detectors[:start]:
            try:
                self._run_detector(detector, report)
            except Exception as err:  # a bug for one detector must not silence the others
                log.exception("detector %r: unexpected failure in the scoring cycle", detector.name)
                self._mark_down(detector, report, f"unexpected {type(err).__name__}: {err}")
        self._publish()
        report.duration_seconds = time.perf_counter() - began
        self.metrics.cycle_duration.observe(report.duration_seconds)
        self._last_cycle_end = time.monotonic()
        return report

    def _run_detector(self, detector: DetectorConfig, report: CycleReport) -> None:
        name = detector.name
        serving, refresh = self._refresh_model(detector)
        if serving is None:
            reason = _NO_MODEL_REASONS.get(refresh.outcome, "no model loaded")
            self._mark_down(detector, report, f"{reason}: {refresh.error}" if refresh.error else reason)
            return
        model = serving.model
        now = self._wall_clock()
        # The model's own windows decide how much history its features need; it may have been
        # trained with other windows than the detector's current config.
        window = max(detector.scoring_window_seconds, model.scoring_rows * detector.step_seconds)
        try:
            block = self._series_source.fetch(detector, start=now - window, end=now)
        except Exception as err:
            self._invalidate(name, "the previous query failed")
            self.metrics.query_errors.labels(detector=name, reason=reason_of(err)).inc()
            report.auth_failed |= isinstance(err, PrometheusAuthError)
            # Repeats of the same failure go to DEBUG: one line per outage, not one per cycle.
            level = logging.DEBUG if self._last_query_error.get(name) == str(err) else logging.WARNING
            self._last_query_error[name] = str(err)
            log.log(level, "detector %r: query failed, publishing no scores until it recovers: %s", name, err)
            self._mark_down(detector, report, f"query failed: {err}")
            return
        self._count_fetch(name)
        try:
            remote = self.settings.exporter_scoring_urls.get(name)
            if remote:
                # The served model answers for the newest sample from the rows its windows need
                # (with the budget it was trained for; operator budget overrides apply in-process).
                rows = min(len(block.timestamps), model.scoring_rows)
                probabilities, scores = score_latest_via_endpoint(
                    remote,
                    series_keys(block.labels),
                    block.timestamps[-rows:],
                    block.values[-rows:],
                    timeout=self.settings.query_timeout_seconds,
                )
            else:
                probabilities = model.score_latest(block.values)
                budget = self._budgets.budget(detector) if self._budgets else detector.false_alarms_per_week
                threshold = model.alarm_threshold(budget, detector.step_seconds)
                # Series keys (a JSON text per series, ~50 ms at 10k) only matter for per-series
                # feedback thresholds; most models have none.
                keys = series_keys(block.labels) if model.series_threshold_factors else None
                scores = model.anomaly_scores(probabilities, threshold, keys)
            drivers = self._explain(detector, serving, block, scores)
            rendered = render_detector(detector, block.labels, probabilities, scores, drivers)
        except Exception as err:
            # The block may be what is wrong (a cache bug must not fail every cycle): refetch it.
            self._invalidate(name, "scoring the previous block failed")
            self.metrics.scoring_errors.labels(detector=name).inc()
            log.exception(
                "detector %r: model %s v%s failed on %d series",
                name,
                serving.ref.model_name,
                serving.ref.version,
                block.n_series,
            )
            self._mark_down(detector, report, f"scoring failed: {err}")
            return
        if self._last_query_error.pop(name, None) is not None:
            log.info("detector %r: query works again, publishing %d series", name, rendered.published)
        self._rendered[name] = rendered
        self.metrics.up.labels(detector=name).set(1)
        self.metrics.last_success.labels(detector=name).set(self._wall_clock())
        self.metrics.series.labels(detector=name).set(rendered.published)
        self._count_unscored(name, block.values, probabilities, model)
        self.metrics.dropped_series.labels(detector=name).set(rendered.dropped)
        report.up[name] = True
        report.published[name] = rendered.published
        report.explained[name] = rendered.explained

    def _explain(
        self, detector: DetectorConfig, serving: ServingModel, block: SeriesBlock, scores: np.ndarray
    ) -> dict[int, str]:
        """Series index -> driving feature, for the series scoring at least 1. Never raises: an
        explanation is a convenience, the scores must be published without it."""
        name = detector.name
        anomalous = explained_series(scores)
        if anomalous.size == 0:
            return {}
        try:
            # `values[:, idx]` keeps any trailing signal axis ([T, N] or [T, N, K]).
            names = serving.model.explain_latest(block.values[:, anomalous])
            if len(names) != anomalous.size:
                raise ValueError(f"{len(names)} explanations for {anomalous.size} series")
        except Exception as err:
            self.metrics.explanation_errors.labels(detector=name).inc()
            # A model that cannot explain fails the same way every cycle: one warning, then DEBUG.
            first = self._last_explanation_error.get(name) != str(err)
            self._last_explanation_error[name] = str(err)
            log.log(
                logging.WARNING if first else logging.DEBUG,
                "detector %r: model %s v%s could not explain %d anomalous series; publishing their "
                "scores without anomaly_driver_info: %s",
                name,
                serving.ref.model_name,
                serving.ref.version,
                anomalous.size,
                err,
                exc_info=first,
            )
            return {}
        self._last_explanation_error.pop(name, None)
        return {
            index: driver
            for index, driver in zip(anomalous.tolist(), names, strict=True)
            if isinstance(driver, str) and driver
        }

    def _refresh_model(self, detector: DetectorConfig) -> tuple[ServingModel | None, RefreshResult]:
        name = detector.name
        tracker = self._trackers[name]
        previous = tracker.serving
        # Nothing to lose by asking when there is no model to serve: the detector is down anyway.
        skip = self._registry_down if previous is not None else None
        result = tracker.refresh(registry_down=skip)
        outcome, ref = result.outcome, result.ref
        if outcome is RefreshOutcome.REGISTRY_ERROR and self._registry_down is None:
            self._registry_down = f"the registry failed for {name!r} earlier in this cycle"
        if outcome not in (RefreshOutcome.REGISTRY_ERROR, RefreshOutcome.REGISTRY_SKIPPED):
            # The registry answered the alias lookup; while it is down this stops moving and the
            # loaded model keeps scoring (`anomaly_exporter_up` stays 1).
            self.metrics.registry_last_success.labels(detector=name).set(self._wall_clock())
        if outcome is not RefreshOutcome.NO_CHAMPION:
            self._warned_no_champion.discard(name)
        if outcome is RefreshOutcome.SWAPPED and ref is not None:
            self.metrics.model_swaps.labels(detector=name).inc()
            was = f"v{previous.ref.version}" if previous else "no model"
            log.info("detector %r: now scoring with %s v%s (was %s)", name, ref.model_name, ref.version, was)
        elif outcome is RefreshOutcome.NO_CHAMPION and name not in self._warned_no_champion:
            # Logged once per episode, not every cycle, so the log stays readable.
            self._warned_no_champion.add(name)
            log.warning(
                "detector %r: the registry has no %s@champion model; publishing no scores until one is "
                "trained and promoted",
                name,
                name,
            )
        elif outcome is RefreshOutcome.REGISTRY_SKIPPED:
            log.debug(
                "detector %r: champion lookup skipped (%s), keeping the loaded model", name, result.error
            )
        elif outcome is RefreshOutcome.REGISTRY_ERROR:
            self.metrics.registry_errors.labels(detector=name).inc()
            log.warning(
                "detector %r: champion lookup failed, keeping the loaded model: %s", name, result.error
            )
        elif outcome is RefreshOutcome.LOAD_ERROR and ref is not None:
            self.metrics.model_load_errors.labels(detector=name).inc()
            if result.refusal is not None:
                self.metrics.model_refusals.labels(detector=name, reason=result.refusal).inc()
            keeping = f"keeping v{tracker.serving.ref.version}" if tracker.serving else "no model to serve"
            log.error(
                "detector %r: champion v%s was not swapped in (%s): %s",
                name,
                ref.version,
                keeping,
                result.error,
            )
        return tracker.serving, result

    def _count_unscored(
        self, name: str, values: np.ndarray, probabilities: np.ndarray, model: DetectorModel
    ) -> None:
        """Unscored series per reason, as a gauge and, when the counts change, one log line."""
        counts = unscored_counts(values, probabilities, model.windows)
        for reason, count in counts.items():
            self.metrics.unscorable_series.labels(detector=name, reason=reason).set(count)
        if self._unscored_counts.get(name, {}) != counts:
            if any(counts.values()):
                summary = ", ".join(f"{reason}: {count}" for reason, count in counts.items() if count)
                log.info("detector %r: %d series not scored (%s)", name, sum(counts.values()), summary)
            elif name in self._unscored_counts:
                log.info("detector %r: every series is scored again", name)
        self._unscored_counts[name] = counts

    def _count_fetch(self, name: str) -> None:
        if not isinstance(self._series_source, CachingSource):
            return
        stats = self._series_source.last_fetch(name)
        if stats is None:
            return
        self.metrics.fetched_steps.labels(detector=name).set(stats.steps)
        if stats.full:
            self.metrics.full_fetches.labels(detector=name).inc()

    def _invalidate(self, name: str, reason: str) -> None:
        if isinstance(self._series_source, CachingSource):
            self._series_source.invalidate(name, reason)

    def _mark_down(self, detector: DetectorConfig, report: CycleReport, reason: str) -> None:
        self._rendered.pop(detector.name, None)
        self.metrics.up.labels(detector=detector.name).set(0)
        self.metrics.series.labels(detector=detector.name).set(0)
        report.up[detector.name] = False
        report.published[detector.name] = 0
        report.errors[detector.name] = reason

    def _publish(self) -> None:
        rendered = [self._rendered[d.name] for d in self.detectors if d.name in self._rendered]
        models = [
            ModelInfo(
                detector=name,
                model_name=tracker.serving.ref.model_name,
                model_version=tracker.serving.ref.version,
                run_id=tracker.serving.ref.run_id,
            )
            for name, tracker in self._trackers.items()
            if tracker.serving is not None
        ]
        self.page.publish(assemble_page(rendered, models))

    # --- running as a service ----------------------------------------------------------------

    def start(self, listen: str) -> ThreadingHTTPServer:
        """Serve HTTP on `listen` and run cycles in a background thread until `stop()`."""
        self._server = start_http_server(
            listen, self.page, is_ready=self.is_ready, is_healthy=self.is_healthy
        )
        self._stop.clear()
        self._loop_thread = threading.Thread(target=self._loop, name="exporter-cycles", daemon=True)
        self._loop_thread.start()
        return self._server

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._loop_thread is not None:
            self._loop_thread.join(timeout)
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def request_stop(self) -> None:
        """Ask the loop to end (safe from a signal handler); `wait()` returns, then call `stop()`."""
        self._stop.set()

    def wait(self) -> None:
        """Block until `request_stop()` or `stop()` is called (from a signal handler, for instance)."""
        # A bounded wait in a loop keeps the main thread responsive to signals.
        while not self._stop.wait(1.0):
            pass

    def is_ready(self) -> bool:
        return self._last_cycle_end is not None

    def is_healthy(self) -> bool:
        thread_alive = self._loop_thread is not None and self._loop_thread.is_alive()
        if not thread_alive or self._last_cycle_end is None:
            return thread_alive
        allowed = HEALTHY_INTERVALS * self.settings.exporter_interval_seconds
        allowed += self.settings.query_timeout_seconds * max(1, len(self.detectors))
        return time.monotonic() - self._last_cycle_end <= allowed

    def _loop(self) -> None:
        interval = self.settings.exporter_interval_seconds
        next_start = time.monotonic()
        while not self._stop.is_set():
            try:
                report = self.run_cycle()
                log.debug("cycle done in %.3fs: %s", report.duration_seconds, report.published)
            except Exception:  # run_cycle guards each detector; this guards the loop itself
                log.exception("scoring cycle failed")
            next_start += interval
            now = time.monotonic()
            if next_start < now:
                # Overran: skip the missed slots instead of running cycles back to back.
                skipped = int((now - next_start) // interval) + 1
                log.warning(
                    "scoring cycle overran the %.1fs interval; skipping %d slot(s)", interval, skipped
                )
                next_start += skipped * interval
            self._stop.wait(next_start - now)


def run(settings: Settings, listen: str, shard: Shard | None = None) -> int:
    """Run the exporter until SIGTERM/SIGINT; returns the process exit code."""
    if not settings.pipeline.detectors:
        log.warning(
            "no detectors configured in %s: the exporter will publish only its own metrics",
            settings.config_path,
        )
    service = ExporterService(settings, shard=shard, budgets=BudgetOverrides(settings.database_url))
    server = service.start(listen)
    host, port = server.server_address[:2]
    log.info(
        "exporter listening on %s:%s, shard %s, scoring %d of %d detector(s) every %.0fs against %s",
        host,
        port,
        service.shard,
        len(service.detectors),
        len(settings.pipeline.detectors),
        settings.exporter_interval_seconds,
        redact_url(settings.prometheus_url),
    )

    def request_stop(signum: int, _frame: object) -> None:
        log.info("received %s, stopping", signal.Signals(signum).name)
        service.request_stop()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    service.wait()
    service.stop()
    log.info("exporter stopped")
    return 0


def run_once(settings: Settings, shard: Shard | None = None) -> tuple[CycleReport, bytes]:
    """One cycle without HTTP: the report and the page a scrape would return right after it."""
    service = ExporterService(settings, shard=shard, budgets=BudgetOverrides(settings.database_url))
    report = service.run_cycle()
    return report, service.page.body()
