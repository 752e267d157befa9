"""`slo-pipeline lake`: sync (loop or backfill), export to CSV, maintain (retention, compaction).

Only argparse at module level; the handlers import the heavy parts when they run.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

log = logging.getLogger(__name__)

TIME_FORMATS = "RFC 3339 (UTC if no offset), unix seconds or now-7d"


class LakeInputError(ValueError):
    """Bad command-line input: exit 2 with one line."""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "lake",
        help="the data lake: sync detectors' series from Prometheus, export, maintain",
        description="Detectors' series in a Delta Lake table partitioned by detector and day "
        "(docs/lake.md). The lake is SLO_PIPELINE_DATA_LAKE: a folder or s3://bucket/prefix.",
    )
    actions = parser.add_subparsers(dest="lake_command", metavar="ACTION", required=True)

    sync = actions.add_parser(
        "sync",
        help="copy series from Prometheus into the lake: a loop, one pass, or a backfill",
        description="Without --start: every SLO_PIPELINE_LAKE_SYNC_INTERVAL seconds, merge each "
        "detector's new samples (and a re-read overlap) into the lake, and once a day drop days older "
        "than the retention and compact small files. With --detector, --start and --end: backfill that "
        "range once. Re-running a range adds nothing; it fills gaps where Prometheus has the data.",
    )
    sync.add_argument("--detector", help="one configured detector (required with --start)")
    sync.add_argument("--start", help=f"backfill from: {TIME_FORMATS}")
    sync.add_argument("--end", help="backfill until, same formats (default: now)")
    sync.add_argument("--once", action="store_true", help="one pass of the loop, then exit")
    sync.set_defaults(handler=_sync)

    export = actions.add_parser(
        "export",
        help="write a detector's range from the lake as CSV",
        description="timestamp,series,value (plus signal for a multivariate detector): one row per "
        "series (and signal) and step the lake holds a sample for, sorted by series then time. Reads "
        "the lake only: Prometheus need not be running.",
    )
    export.add_argument("--detector", required=True)
    export.add_argument("--start", required=True, help=TIME_FORMATS)
    export.add_argument("--end", default="now", help="same formats (default: now)")
    export.add_argument("--output", required=True, type=Path, help="CSV file to write ('-' for stdout)")
    export.set_defaults(handler=_export)

    maintain = actions.add_parser(
        "maintain",
        help="drop days older than the retention, compact small files, vacuum",
        description="What the sync loop does once a day: delete day partitions older than "
        "SLO_PIPELINE_LAKE_RETENTION_DAYS, compact past days' small files into large ones, and delete "
        "files unreferenced for SLO_PIPELINE_LAKE_VACUUM_RETENTION_HOURS.",
    )
    maintain.set_defaults(handler=_maintain)


def _fail(err: Exception, code: int) -> int:
    print(f"lake: {' '.join(str(err).split())}", file=sys.stderr)
    return code


def _range(args: argparse.Namespace, now: float) -> tuple[float, float]:
    from slo_pipeline.core.instants import parse_time

    try:
        start, end = parse_time(args.start, now=now), parse_time(args.end or "now", now=now)
    except ValueError as err:
        raise LakeInputError(str(err)) from err
    if not end > start:
        raise LakeInputError(f"--start {args.start!r} is not before --end {args.end or 'now'!r}")
    return start, end


def _sync(args: argparse.Namespace) -> int:
    import time

    from slo_pipeline.adapters.lake import LakeError
    from slo_pipeline.adapters.prometheus import PrometheusQueryError
    from slo_pipeline.orchestration.lake_sync import sync_loop, sync_pass, sync_range
    from slo_pipeline.settings import ConfigError, load_settings

    try:
        settings = load_settings()
        if args.start is None:
            if args.detector or args.end:
                raise LakeInputError("--detector and --end go with --start (a backfill)")
            if not settings.pipeline.detectors:
                raise LakeInputError(f"no detectors configured in {settings.config_path}")
            if args.once:
                reports = sync_pass(settings, now=time.time())
                return 0 if len(reports) == len(settings.pipeline.detectors) else 1
            sync_loop(settings)
            return 0
        if not args.detector:
            raise LakeInputError("a backfill (--start) needs --detector NAME")
        detector = settings.pipeline.detector(args.detector)
        start, end = _range(args, time.time())
    except (LakeInputError, ConfigError) as err:
        return _fail(err, 2)
    try:
        report = sync_range(settings, detector, start=start, end=end)
    except (LakeError, PrometheusQueryError) as err:
        return _fail(err, 1)
    print(
        f"{detector.name}: {report.fetched_rows} samples read from Prometheus, "
        f"{report.inserted_rows} new in the lake (version {report.version})"
    )
    return 0


def _export(args: argparse.Namespace) -> int:
    import time

    from slo_pipeline.adapters.lake import LakeError, read_slice
    from slo_pipeline.adapters.lake_export import write_csv
    from slo_pipeline.settings import ConfigError, load_settings

    try:
        settings = load_settings()
        detector = settings.pipeline.detector(args.detector)
        start, end = _range(args, time.time())
    except (LakeInputError, ConfigError) as err:
        return _fail(err, 2)
    try:
        lake_slice = read_slice(settings.data_lake, detector.name, start=start, end=end)
        written = write_csv(lake_slice.rows, args.output, with_signal=bool(detector.signals))
    except LakeError as err:
        return _fail(err, 1)
    except OSError as err:
        return _fail(OSError(f"cannot write {args.output}: {err}"), 2)
    print(f"{written} rows of {detector.name} (lake version {lake_slice.version})", file=sys.stderr)
    return 0


def _maintain(args: argparse.Namespace) -> int:
    import time

    from slo_pipeline.adapters.lake import LakeError
    from slo_pipeline.orchestration.lake_sync import maintain
    from slo_pipeline.settings import ConfigError, load_settings

    try:
        settings = load_settings()
    except ConfigError as err:
        return _fail(err, 2)
    try:
        done = maintain(settings, now=time.time())
    except LakeError as err:
        return _fail(err, 1)
    print(
        f"dropped {done.dropped_files} files past the retention, compacted {done.compacted_files}, "
        f"vacuumed {done.vacuumed_files} (version {done.version})"
    )
    return 0
