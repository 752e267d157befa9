"""CLI: `slo-pipeline worker` and `slo-pipeline db migrate`."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    worker = subparsers.add_parser(
        "worker",
        help="claim and run retrain jobs; retry failed incident driver lookups",
        description=_run_worker.__doc__,
    )
    worker.add_argument("--once", action="store_true", help="process at most one job, then exit")
    worker.add_argument(
        "--worker-id", default=None, help="name recorded on claimed jobs (default host:pid:random)"
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

    from slo_pipeline.settings import load_settings
    from worker.runner import RetrainWorker

    worker = RetrainWorker(load_settings(), worker_id=args.worker_id)
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
