"""`slo-pipeline`: one entry point, one subcommand per job.

Each feature area registers its own subcommands from a small `commands` module that imports only
argparse at module level; the heavy imports (mlflow, sklearn, flask) happen inside the handlers,
so `slo-pipeline --help` stays fast and nothing runs at import time.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

# Modules that expose `register(subparsers) -> None`. Each handler it registers receives the
# parsed namespace and returns a process exit code.
COMMAND_MODULES = (
    "slo_pipeline.orchestration.commands",
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="slo-pipeline",
        description="SLO-oriented anomaly detection for Prometheus.",
    )
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    return int(args.handler(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
