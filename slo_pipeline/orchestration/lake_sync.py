"""Copy detectors' series from Prometheus into the data lake: backfills, and the sync loop.

A range is fetched one UTC day at a time (one partition, bounded memory) and merged: rows the
lake already holds are left alone, so re-running a range adds nothing and a gap is filled as
soon as Prometheus has the data. The loop re-reads `lake_sync_overlap_seconds` behind the
newest row on every pass, which catches samples that arrived late.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from slo_pipeline.adapters import lake
from slo_pipeline.adapters.lake_rows import SECONDS_PER_DAY, block_rows
from slo_pipeline.adapters.prometheus import fetch_detector_range
from slo_pipeline.orchestration.lake_sync_metrics import LakeSyncMetrics
from slo_pipeline.settings import DetectorConfig, Settings

log = logging.getLogger(__name__)

# The newest steps are left for the next pass: a rate over a window that is still being scraped
# would be stored half-computed, and the merge never overwrites a stored row.
SETTLE_SECONDS = 120.0
MAINTENANCE_EVERY_SECONDS = 86400.0


@dataclass(frozen=True)
class SyncReport:
    detector: str
    start: float
    end: float
    fetched_rows: int
    inserted_rows: int
    version: int


def sync_range(settings: Settings, detector: DetectorConfig, *, start: float, end: float) -> SyncReport:
    """Merge the detector's samples over `[start, end]` into the lake, one UTC day per commit."""
    if not end > start:
        raise ValueError(f"the range is empty: start {start} is not before end {end}")
    fetched = inserted = 0
    version = -1
    chunk_start = start
    while chunk_start <= end:
        next_day = (chunk_start // SECONDS_PER_DAY + 1) * SECONDS_PER_DAY
        chunk_end = min(end, next_day - 1e-3)
        if _has_grid_point(chunk_start, chunk_end, detector.step_seconds):
            block = fetch_detector_range(settings.prometheus, detector, start=chunk_start, end=chunk_end)
            rows = block_rows(detector.name, block)
            result = lake.merge_rows(settings.data_lake, detector.name, rows)
            fetched += rows.num_rows
            inserted += result.inserted
            version = result.version
        chunk_start = next_day
    log.info(
        "lake: detector %s [%s, %s]: %d samples from Prometheus, %d new (table version %d)",
        detector.name,
        start,
        end,
        fetched,
        inserted,
        version,
    )
    return SyncReport(detector.name, start, end, fetched, inserted, version)


def _has_grid_point(start: float, end: float, step: float) -> bool:
    return (end // step) * step >= start


def sync_pass(settings: Settings, *, now: float, metrics: LakeSyncMetrics | None = None) -> list[SyncReport]:
    """One pass of the loop over every detector: from the newest row (less the overlap) to now.

    A detector without rows starts `lake_initial_sync_seconds` back. One detector's failure is
    logged and does not stop the others.
    """
    end = now - SETTLE_SECONDS
    reports = []
    for detector in settings.pipeline.detectors:
        newest = lake.latest_timestamp(settings.data_lake, detector.name)
        if newest is None:
            start = end - settings.lake_initial_sync_seconds
        else:
            start = max(newest - settings.lake_sync_overlap_seconds, end - settings.lake_initial_sync_seconds)
        try:
            report = sync_range(settings, detector, start=start, end=end)
        except Exception as err:  # the loop must go on for the other detectors and the next pass
            log.error("lake: syncing detector %s failed: %s", detector.name, err)
            if metrics is not None:
                metrics.failed(detector.name)
            continue
        reports.append(report)
        if metrics is not None:
            metrics.synced(detector.name, report.fetched_rows, report.inserted_rows)
    return reports


def sync_loop(
    settings: Settings, *, stop: threading.Event | None = None, metrics: LakeSyncMetrics | None = None
) -> None:
    """Sync every `lake_sync_interval_seconds`; apply retention and compaction once a day."""
    stop = stop or threading.Event()
    last_maintenance = 0.0
    while not stop.is_set():
        now = time.time()
        sync_pass(settings, now=now, metrics=metrics)
        if now - last_maintenance >= MAINTENANCE_EVERY_SECONDS:
            try:
                maintain(settings, now=now)
                last_maintenance = now
            except lake.LakeError as err:
                log.error("lake: maintenance failed: %s", err)
            if metrics is not None:
                metrics.maintained(last_maintenance == now)
        stop.wait(settings.lake_sync_interval_seconds)


def maintain(settings: Settings, *, now: float) -> lake.Maintenance:
    return lake.maintain(
        settings.data_lake,
        retention_days=settings.lake_retention_days,
        vacuum_retention_hours=settings.lake_vacuum_retention_hours,
        now=now,
    )
