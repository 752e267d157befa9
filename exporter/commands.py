"""`slo-pipeline exporter`: score Prometheus series with the champion models, serve /metrics."""

from __future__ import annotations

import argparse

DEFAULT_LISTEN = "127.0.0.1:9110"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "exporter",
        help="score series with the @champion models and serve anomaly metrics",
        description=(
            "Every exporter_interval_seconds, query each detector's series from Prometheus, score "
            "them with the detector's @champion model from MLflow and publish anomaly_score, "
            "anomaly_tail_probability and anomaly_model_info on /metrics (also /healthz, /-/ready)."
        ),
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
    parser.set_defaults(handler=_handle)


def _handle(args: argparse.Namespace) -> int:
    import sys

    from exporter.service import run, run_once
    from slo_pipeline.settings import load_settings

    settings = load_settings()
    if args.once:
        report, page = run_once(settings)
        sys.stdout.buffer.write(page)
        sys.stdout.flush()
        for name, reason in report.errors.items():
            print(f"detector {name!r} is down: {reason}", file=sys.stderr)
        return 0 if report.all_up else 1
    try:
        return run(settings, args.listen)
    except (ValueError, OSError) as err:  # a bad --listen or a port in use: say so, no traceback
        print(f"slo-pipeline exporter: {err}", file=sys.stderr)
        return 2
