"""CLI: `slo-pipeline worker` and `slo-pipeline db migrate`."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    worker = subparsers.add_parser(
        "worker",
        help="claim and run retrain jobs; retry failed incident driver lookups",
        description=_run_worker.__doc__,
        epilog="""examples:
  slo-pipeline worker                             poll the queue; /metrics on 127.0.0.1:9111
  slo-pipeline worker --once                      run at most one job, then exit (cron)
  slo-pipeline worker --metrics-listen ''         no metrics listener""",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    worker.add_argument("--once", action="store_true", help="process at most one job, then exit")
    worker.add_argument(
        "--worker-id", default=None, help="name recorded on claimed jobs (default host:pid:random)"
    )
    worker.add_argument(
        "--metrics-listen",
        default=None,
        metavar="HOST:PORT",
        help="serve / and /metrics here (default: SLO_PIPELINE_WORKER_METRICS_LISTEN, 127.0.0.1:9111; "
        "'' for none)",
    )
    worker.set_defaults(handler=_run_worker)

    db = subparsers.add_parser("db", help="database maintenance")
    db_commands = db.add_subparsers(dest="db_command", metavar="DB_COMMAND", required=True)
    migrate = db_commands.add_parser(
        "migrate", help="create the database if missing and apply pending sql/ migrations"
    )
    migrate.set_defaults(handler=_run_migrate)


def _run_worker(args: argparse.Namespace) -> int:
    """Claim queued retrain jobs (FOR UPDATE SKIP LOCKED), train, validate, promote."""
    import logging
    import signal

    from slo_pipeline.adapters.metrics_http import metrics_served
    from slo_pipeline.settings import load_settings
    from worker.metrics import create_registry
    from worker.runner import RetrainWorker

    settings = load_settings()
    worker = RetrainWorker(settings, worker_id=args.worker_id)
    if args.once:
        processed = worker.run_once()
        if processed is None:
            logging.getLogger(__name__).info("no retrain job to run")
            return 0
        return 0 if processed.result.error is None and processed.recorded else 1

    def request_stop(signum: int, _frame: object) -> None:
        # Finish the job in hand (its lease would otherwise have to expire), then exit.
        logging.getLogger(__name__).info("signal %d: stopping after the current job", signum)
        worker.stop_requested.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    listen = settings.worker_metrics_listen if args.metrics_listen is None else args.metrics_listen
    with metrics_served(
        listen,
        create_registry(settings.database_url),
        title="slo-pipeline worker",
        description="Claims retrain jobs, trains, validates and promotes; the retrain queue's "
        "metrics are read from PostgreSQL at each scrape.",
    ):
        worker.run_forever()
    return 0


def _run_migrate(args: argparse.Namespace) -> int:
    import logging

    from slo_pipeline.adapters.postgres import ensure_database, migrate
    from slo_pipeline.settings import load_settings

    settings = load_settings()
    ensure_database(settings.database_url)
    applied = migrate(settings.database_url)
    logging.getLogger(__name__).info(
        "applied %d migration(s): %s", len(applied), ", ".join(applied) or "none"
    )
    return 0
