"""`slo-pipeline exporter`: score Prometheus series with the champion models, serve /metrics."""

from __future__ import annotations

import argparse

DEFAULT_LISTEN = "127.0.0.1:9110"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "exporter",
        help="score series with the @champion models and serve anomaly metrics",
        description=(
            "Every exporter_interval_seconds, query each detector's series from Prometheus, score "
            "them with the detector's @champion model from MLflow and publish anomaly_score, "
            "anomaly_tail_probability and anomaly_model_info on /metrics (also /healthz, /-/ready)."
        ),
        epilog="""examples:
  slo-pipeline exporter                           127.0.0.1:9110, detectors from SLO_PIPELINE_CONFIG
  slo-pipeline exporter --listen 0.0.0.0:9110     reachable from other hosts (e.g. a container)""",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--listen",
        default=DEFAULT_LISTEN,
        metavar="HOST:PORT",
        help=f"bind address (default {DEFAULT_LISTEN})",
    )
    parser.add_argument(
        "--once",
        action="store_true",
        help="run one scoring cycle, print the /metrics page to stdout and exit (1 if a detector is down)",
    )
    parser.add_argument(
        "--shard",
        default=None,
        metavar="I/N",
        help="score only shard I of N (0-based; detectors dealt round-robin by name); default: "
        "SLO_PIPELINE_SHARD_INDEX/SLO_PIPELINE_SHARDS, or the StatefulSet ordinal of the host name",
    )
    parser.set_defaults(handler=_handle)


def _handle(args: argparse.Namespace) -> int:
    import socket
    import sys

    from exporter.service import run, run_once
    from exporter.sharding import resolve_shard
    from slo_pipeline.settings import ConfigError, load_settings

    try:
        settings = load_settings()
        shard = resolve_shard(
            settings.exporter_shards, settings.exporter_shard_index, socket.gethostname(), args.shard
        )
    except ConfigError as err:
        print(f"slo-pipeline exporter: {err}", file=sys.stderr)
        return 2
    if args.once:
        report, page = run_once(settings, shard)
        sys.stdout.buffer.write(page)
        sys.stdout.flush()
        for name, reason in report.errors.items():
            print(f"detector {name!r} is down: {reason}", file=sys.stderr)
        if report.auth_failed:
            return 2  # permanent until the credentials change: not worth a retry
        return 0 if report.all_up else 1
    try:
        return run(settings, args.listen, shard)
    except (ValueError, OSError) as err:  # a bad --listen or a port in use: say so, no traceback
        print(f"slo-pipeline exporter: {err}", file=sys.stderr)
        return 2
