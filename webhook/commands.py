"""CLI: `slo-pipeline webhook`."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    webhook = subparsers.add_parser(
        "webhook", help="serve the Alertmanager webhook (gunicorn + Flask)", description=_run_webhook.__doc__
    )
    webhook.add_argument("--listen", default="127.0.0.1:9095", metavar="HOST:PORT", help="bind address")
    webhook.add_argument(
        "--workers", type=int, default=None, help="gunicorn workers (default: SLO_PIPELINE_WEBHOOK_WORKERS)"
    )
    webhook.set_defaults(handler=_run_webhook)


def _run_webhook(args: argparse.Namespace) -> int:
    """Accept Alertmanager notifications on POST /alerts; /healthz and /metrics alongside."""
    import logging

    from slo_pipeline.settings import load_settings
    from webhook.server import WebhookSettingsError, run

    if args.workers is not None and args.workers < 1:
        raise SystemExit("--workers must be at least 1")
    try:
        return run(load_settings(), args.listen, args.workers)
    except WebhookSettingsError as err:
        logging.getLogger(__name__).error("webhook not started: %s", err)
        return 2
