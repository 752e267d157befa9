"""`slo-pipeline`: one entry point, one subcommand per job.

Each feature area registers its own subcommands from a small `commands` module that imports only
argparse at module level; the heavy imports (mlflow, sklearn, flask) happen inside the handlers,
so `slo-pipeline --help` stays fast and nothing runs at import time.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import re
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from importlib import metadata
from typing import NoReturn

# Modules that expose `register(subparsers) -> None`. Each handler it registers receives the
# parsed namespace and returns a process exit code.
COMMAND_MODULES = (
    "slo_pipeline.orchestration.commands",
    "slo_pipeline.orchestration.lake_commands",
    "slo_pipeline.slo.commands",
    "slo_pipeline.offline.backtest.commands",
    "exporter.commands",
    "webhook.commands",
    "streamlit_app.commands",
    "worker.commands",
    # The dev stack's commands (demo, simulator): the only way in from the product's CLI.
    "slo_pipeline.devstack.commands",
    "slo_pipeline.devstack.simulator.commands",
)


# An expected failure (bad configuration, a service that cannot be reached, a missing file) exits
# with this code after one line naming the problem; argparse uses it for a bad argument too. A
# traceback means a bug.
EXIT_EXPECTED_FAILURE = 2
EXIT_INTERRUPTED = 130
PYDANTIC_LINK = re.compile(r"For further information visit \S+")
EPILOG = """examples:
  slo-pipeline demo                                   everything on loopback, until Ctrl-C
  slo-pipeline db migrate                             create the database, apply sql/ migrations
  slo-pipeline train                                  train, validate, register every detector
  slo-pipeline exporter --listen 127.0.0.1:9110       serve anomaly scores on /metrics
  slo-pipeline slo apply -f examples/slos.yml         store SLOs and render their rules
  slo-pipeline slo report --period 2026-11            a month's SLO compliance, from PostgreSQL
  slo-pipeline --log-format json worker               the retrain worker, logging JSON lines

Every command has --help. Configuration: environment variables (docs/configuration.md)."""


class Parser(argparse.ArgumentParser):
    """argparse, but a bad argument is one line (plus where to look), not the whole usage."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_EXPECTED_FAILURE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, exception."""

    def format(self, record: logging.LogRecord) -> str:
        document = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            document["exception"] = self.formatException(record.exc_info)
        return json.dumps(document, ensure_ascii=False)


def configure_logging(level: str, log_format: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler], force=True)


def _version() -> str:
    try:
        return f"slo-pipeline {metadata.version('slo-pipeline')}"
    except metadata.PackageNotFoundError:  # run from a checkout that was never installed
        return "slo-pipeline (not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="slo-pipeline",
        description="SLO-oriented anomaly detection for Prometheus.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=_version())
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    parser.add_argument(
        "--log-format", default="text", choices=["text", "json"], help="json: one JSON object per log line"
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    return parser


def expected_failure(err: BaseException) -> bool:
    """A failure the user can fix from its message: configuration, reachability, files."""
    import psycopg2
    import pydantic
    import requests

    from slo_pipeline.adapters.lake import LakeError
    from slo_pipeline.adapters.postgres import DatabaseError
    from slo_pipeline.adapters.prometheus import PrometheusQueryError
    from slo_pipeline.adapters.registry import ModelLoadError, RegistryError
    from slo_pipeline.settings import ConfigError

    expected: tuple[type[BaseException], ...] = (
        ConfigError,
        pydantic.ValidationError,  # a setting from the environment that does not validate
        DatabaseError,
        psycopg2.OperationalError,
        RegistryError,
        ModelLoadError,
        PrometheusQueryError,
        LakeError,
        requests.ConnectionError,
        requests.Timeout,
        OSError,  # a missing or unreadable file, a refused connection, a port in use
    )
    # MLflow's own errors (an unreachable tracking server, a missing model) and the dev stack's
    # LaunchError (a missing binary), recognised without importing those packages here.
    module = type(err).__module__
    return isinstance(err, expected) or module.startswith("mlflow") or type(err).__name__ == "LaunchError"


def one_line(err: BaseException) -> str:
    """The error's message on one line (pydantic and YAML errors span several)."""
    text = " ".join(PYDANTIC_LINK.sub("", str(err)).split()) or type(err).__name__
    return text if len(text) <= 600 else text[:597] + "..."


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args.log_level, args.log_format)
    try:
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except Exception as err:
        if not expected_failure(err):
            raise  # a bug: the traceback is what its report needs
        logging.getLogger("slo_pipeline.cli").debug("details of the failure", exc_info=True)
        print(f"slo-pipeline {args.command}: {one_line(err)}", file=sys.stderr)
        return EXIT_EXPECTED_FAILURE


if __name__ == "__main__":
    raise SystemExit(main())
