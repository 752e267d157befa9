"""CLI: `slo-pipeline train` and `slo-pipeline model list|rollback`."""

from __future__ import annotations

import argparse
import json
import logging
import sys

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    train = subparsers.add_parser(
        "train",
        help="train, validate and maybe promote detector models",
        description="Fetch each detector's history from Prometheus, snapshot it to the data lake, "
        "fit and calibrate an IsolationForest, log it to MLflow, register a version and move "
        "@champion when validation passes.",
    )
    train.add_argument("detectors", nargs="*", help="detector names (default: all configured)")
    train.set_defaults(handler=_train)

    model = subparsers.add_parser("model", help="inspect registered models, roll back")
    model_sub = model.add_subparsers(dest="model_command", metavar="ACTION", required=True)
    listing = model_sub.add_parser("list", help="versions of a detector's model, newest first")
    listing.add_argument("detector")
    listing.set_defaults(handler=_model_list)
    rollback = model_sub.add_parser("rollback", help="make @previous the @champion again")
    rollback.add_argument("detector")
    rollback.set_defaults(handler=_model_rollback)


def _train(args: argparse.Namespace) -> int:
    from slo_pipeline.adapters.prometheus_connection import PrometheusAuthError
    from slo_pipeline.orchestration.retrain import retrain_detector
    from slo_pipeline.settings import load_settings

    settings = load_settings()
    names = args.detectors or [d.name for d in settings.pipeline.detectors]
    if not names:
        print(f"no detectors configured in {settings.config_path}", file=sys.stderr)
        return 2
    failures = 0
    for name in names:
        try:
            outcome = retrain_detector(settings, name)
        except PrometheusAuthError as err:  # the same for every detector: stop, exit 2
            print(f"training {name} failed: {err}", file=sys.stderr)
            return 2
        except Exception as err:  # one detector's failure must not hide the others' results
            failures += 1
            log.error("training %s failed: %s", name, err)
            continue
        print(
            json.dumps(
                {
                    "detector": name,
                    "version": outcome.model_version,
                    "run_id": outcome.run_id,
                    "promoted": outcome.promoted,
                    "reasons": outcome.reasons,
                }
            )
        )
    return 1 if failures else 0


def _model_list(args: argparse.Namespace) -> int:
    from slo_pipeline.adapters import registry
    from slo_pipeline.settings import load_settings

    for row in registry.list_versions(load_settings(), args.detector):
        print(json.dumps(row))
    return 0


def _model_rollback(args: argparse.Namespace) -> int:
    from slo_pipeline.adapters import registry
    from slo_pipeline.settings import load_settings

    try:
        restored = registry.rollback(load_settings(), args.detector)
    except registry.RegistryError as err:
        print(f"rollback failed: {err}", file=sys.stderr)
        return 1
    print(f"{args.detector}: @champion is now version {restored.version}")
    return 0
