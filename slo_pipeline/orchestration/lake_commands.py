"""`slo-pipeline lake`: sync (loop or backfill), export to CSV, maintain (retention, compaction).

Only argparse at module level; the handlers import the heavy parts when they run. Expected
failures (bad arguments, an unknown detector, Prometheus or the lake unreachable) propagate to
`slo_pipeline.cli`, which prints them on one line and exits 2.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from slo_pipeline.settings import Settings

TIME_FORMATS = "RFC 3339 (UTC if no offset), unix seconds or now-7d"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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
        epilog="""examples:
  slo-pipeline lake sync                          the loop, for every detector
  slo-pipeline lake sync --once                   one pass (e.g. from cron)
  slo-pipeline lake sync --detector demo_latency_p95 --start 2026-11-01T00:00:00Z --end now""",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sync.add_argument("--detector", help="one configured detector (required with --start)")
    sync.add_argument("--start", help=f"backfill from: {TIME_FORMATS}")
    sync.add_argument("--end", help="backfill until, same formats (default: now)")
    sync.add_argument("--once", action="store_true", help="one pass of the loop, then exit")
    sync.add_argument(
        "--metrics-listen",
        default=None,
        metavar="HOST:PORT",
        help="the loop serves / and /metrics here (default: SLO_PIPELINE_LAKE_SYNC_METRICS_LISTEN, "
        "127.0.0.1:9113; '' for none)",
    )
    sync.set_defaults(handler=_sync)

    export = actions.add_parser(
        "export",
        help="write a detector's range from the lake as CSV",
        description="timestamp,series,value (plus signal for a multivariate detector): one row per "
        "series (and signal) and step the lake holds a sample for, sorted by series then time. Reads "
        "the lake only: Prometheus need not be running.",
        epilog="""examples:
  slo-pipeline lake export --detector demo_latency_p95 --start now-30d --output latency.csv
  slo-pipeline lake export --detector demo_route_health --start 2026-11-01 --end 2026-11-02 --output -""",
        formatter_class=argparse.RawDescriptionHelpFormatter,
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
        epilog="""examples:
  slo-pipeline lake maintain
  SLO_PIPELINE_LAKE_RETENTION_DAYS=90 slo-pipeline lake maintain""",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    maintain.set_defaults(handler=_maintain)


def _range(args: argparse.Namespace, now: float) -> tuple[float, float]:
    from slo_pipeline.core.instants import parse_time
    from slo_pipeline.settings import ConfigError

    try:
        start, end = parse_time(args.start, now=now), parse_time(args.end or "now", now=now)
    except ValueError as err:
        raise ConfigError(str(err)) from err
    if not end > start:
        raise ConfigError(f"--start {args.start!r} is not before --end {args.end or 'now'!r}")
    return start, end


def _sync(args: argparse.Namespace) -> int:
    import time

    from slo_pipeline.orchestration.lake_sync import sync_pass, sync_range
    from slo_pipeline.settings import ConfigError, load_settings

    # The transport retries a dropped connection once and urllib3 logs each retry; a failure is
    # reported once, by the command's one line (or the loop's log line), so that is only noise.
    logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)
    settings = load_settings()
    if args.start is None:
        if args.detector or args.end:
            raise ConfigError("--detector and --end go with --start (a backfill)")
        if not settings.pipeline.detectors:
            raise ConfigError(f"no detectors configured in {settings.config_path}")
        if args.once:
            reports = sync_pass(settings, now=time.time())
            return 0 if len(reports) == len(settings.pipeline.detectors) else 1
        listen = settings.lake_sync_metrics_listen if args.metrics_listen is None else args.metrics_listen
        _run_loop(settings, listen)
        return 0
    if not args.detector:
        raise ConfigError("a backfill (--start) needs --detector NAME")
    detector = settings.pipeline.detector(args.detector)
    start, end = _range(args, time.time())
    report = sync_range(settings, detector, start=start, end=end)
    print(
        f"{detector.name}: {report.fetched_rows} samples read from Prometheus, "
        f"{report.inserted_rows} new in the lake (version {report.version})"
    )
    return 0


def _run_loop(settings: Settings, listen: str) -> None:
    """The sync loop until SIGTERM/SIGINT (the pass in progress finishes: each day's merge is one
    atomic commit anyway), with its metrics served on `listen` (if not empty)."""
    from slo_pipeline.adapters.metrics_http import metrics_served
    from slo_pipeline.adapters.stop_signals import stop_on_signals
    from slo_pipeline.orchestration.lake_sync import sync_loop
    from slo_pipeline.orchestration.lake_sync_metrics import LakeSyncMetrics

    metrics = LakeSyncMetrics([detector.name for detector in settings.pipeline.detectors])
    with (
        metrics_served(
            listen,
            metrics.registry,
            title="slo-pipeline lake sync",
            description="Copies every detector's series from Prometheus into the data lake.",
        ),
        stop_on_signals() as stop,
    ):
        sync_loop(settings, stop=stop, metrics=metrics)


def _export(args: argparse.Namespace) -> int:
    import time

    from slo_pipeline.adapters.lake import read_slice
    from slo_pipeline.adapters.lake_export import write_csv
    from slo_pipeline.settings import load_settings

    settings = load_settings()
    detector = settings.pipeline.detector(args.detector)
    start, end = _range(args, time.time())
    lake_slice = read_slice(settings.data_lake, detector.name, start=start, end=end)
    try:
        written = write_csv(lake_slice.rows, args.output, with_signal=bool(detector.signals))
    except OSError as err:
        raise OSError(f"cannot write {args.output}: {err}") from err
    print(f"{written} rows of {detector.name} (lake version {lake_slice.version})", file=sys.stderr)
    return 0


def _maintain(args: argparse.Namespace) -> int:
    import time

    from slo_pipeline.orchestration.lake_sync import maintain
    from slo_pipeline.settings import load_settings

    done = maintain(load_settings(), now=time.time())
    print(
        f"dropped {done.dropped_files} files past the retention, compacted {done.compacted_files}, "
        f"vacuumed {done.vacuumed_files} (version {done.version})"
    )
    return 0
