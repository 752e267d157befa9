"""CLI: `slo-pipeline train` and `slo-pipeline model list|rollback`."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from typing import Any

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    train = subparsers.add_parser(
        "train",
        help="train, validate and maybe promote detector models",
        description="Merge each detector's training window from Prometheus into the data lake, read "
        "it back from the lake (older ranges Prometheus no longer holds included), fit and calibrate "
        "an IsolationForest, log it to MLflow with the lake slice as its dataset, register a version "
        "and move @champion when validation passes. Prints one JSON line per trained detector; exits 1 "
        "when a detector failed, 2 when Prometheus, MLflow or PostgreSQL cannot be reached.",
        epilog="""examples:
  slo-pipeline train                              every detector in SLO_PIPELINE_CONFIG
  slo-pipeline train demo_latency_p95             one detector
  slo-pipeline train --jobs 4                     four detectors at a time""",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    train.add_argument("detectors", nargs="*", help="detector names (default: all configured)")
    train.add_argument(
        "--jobs",
        type=int,
        default=1,
        metavar="N",
        help="detectors trained at the same time, in worker processes (default 1)",
    )
    train.add_argument(
        "--input",
        default="",
        help="train ONE detector from this CSV (timestamp,value as `backtest` reads it) instead of "
        "Prometheus, merged into the data lake first; a detector the configuration does not name "
        "gets the defaults and the file's step",
    )
    train.set_defaults(handler=_train)

    model = subparsers.add_parser("model", help="inspect registered models, roll back")
    model_sub = model.add_subparsers(dest="model_command", metavar="ACTION", required=True)
    listing = model_sub.add_parser("list", help="versions of a detector's model, newest first")
    listing.add_argument("detector")
    listing.set_defaults(handler=_model_list)
    rollback = model_sub.add_parser(
        "rollback",
        help="make @previous (or --to VERSION) the @champion again",
        description="Compare-and-set under the detector's promotion lock: fails, changing nothing, "
        "when @champion moved since it was read (a training promoted meanwhile).",
    )
    rollback.add_argument("detector")
    rollback.add_argument(
        "--to", dest="to_version", default=None, help="version to serve (default: @previous)"
    )
    rollback.add_argument(
        "--from",
        dest="expected_champion",
        default=None,
        help="only if @champion is this version now (default: the champion read at start)",
    )
    rollback.set_defaults(handler=_model_rollback)


def _unreachable(err: BaseException) -> bool:
    """True when a service every detector needs (MLflow, PostgreSQL, Prometheus) did not answer:
    the next detector would fail the same way, so `train` stops at the first."""
    import requests

    from slo_pipeline.adapters.lake import LakeError
    from slo_pipeline.adapters.postgres import DatabaseError
    from slo_pipeline.adapters.prometheus_connection import PrometheusAuthError, PrometheusSecretError
    from slo_pipeline.adapters.registry import RegistryError

    everyones = (
        RegistryError,
        LakeError,  # every detector's training reads and writes the lake
        DatabaseError,
        PrometheusAuthError,
        PrometheusSecretError,
        requests.ConnectionError,
        ConnectionError,
    )
    seen: BaseException | None = err
    while seen is not None:
        if isinstance(seen, everyones):
            return True
        if type(seen).__module__.startswith("mlflow"):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _train_one(settings: Any, name: str, input_file: str = "") -> tuple[str, Any, BaseException | None]:
    """One detector, in this process or a joblib worker; the error is returned, not raised.
    `input_file`: train from that file (orchestration/file_training.py) instead of Prometheus."""
    from pathlib import Path

    from slo_pipeline.orchestration.file_training import train_from_file
    from slo_pipeline.orchestration.retrain import retrain_detector

    try:
        if input_file:
            return name, train_from_file(settings, name, Path(input_file)), None
        return name, retrain_detector(settings, name), None
    except Exception as err:  # one detector's failure must not hide the others' results
        return name, None, err


def _train(args: argparse.Namespace) -> int:
    """Train, validate and register each detector; promote the new model when it passes."""
    from joblib import Parallel, delayed
    from tqdm import tqdm

    from slo_pipeline.settings import ConfigError, load_settings

    # `mlflow run` starts a run of its own and names it here; it records this invocation, while
    # each detector is logged in its own experiment exactly as the worker logs it.
    project_run = os.environ.pop("MLFLOW_RUN_ID", None)
    settings = load_settings()
    names = args.detectors or [d.name for d in settings.pipeline.detectors]
    if args.input and len(names) != 1:
        raise ConfigError(f"train --input FILE needs exactly one detector name, got {len(names)}")
    if not names:
        raise ConfigError(f"no detectors configured in {settings.config_path}")
    if args.jobs < 1:
        raise ConfigError(f"--jobs must be at least 1, got {args.jobs}")

    jobs = min(args.jobs, len(names))
    if jobs > 1:
        # Worker processes, not threads: MLflow's model serialization (skops) is not thread-safe
        # (two detectors logged from two threads failed to serialize). The tracking store is
        # created here first, so the processes do not race to create its tables.
        from slo_pipeline.adapters.registry import ensure_experiment

        ensure_experiment(settings, names[0])
    results = Parallel(n_jobs=jobs, backend="loky", return_as="generator_unordered")(
        delayed(_train_one)(settings, name, args.input) for name in names
    )
    failures = 0
    trained: list[dict[str, Any]] = []
    # The bar shows on a terminal only (tqdm turns itself off when stderr is not a TTY).
    with tqdm(total=len(names), desc="training", unit="detector", disable=None, file=sys.stderr) as bar:
        for name, outcome, err in results:
            bar.update(1)
            bar.set_postfix_str(name)
            if err is not None:
                if _unreachable(err):
                    raise err
                failures += 1
                log.error("training %s failed: %s", name, err)
                continue
            result = {
                "detector": name,
                "version": outcome.model_version,
                "run_id": outcome.run_id,
                "promoted": outcome.promoted,
                "reasons": outcome.reasons,
            }
            trained.append(result)
            bar.write(json.dumps(result), file=sys.stdout)
    if project_run:
        from slo_pipeline.adapters import registry

        registry.annotate_project_run(settings, project_run, trained, failures=failures)
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

    settings = load_settings()
    try:
        current = registry.champion_ref(settings, args.detector)
        expected = args.expected_champion or (current.version if current is not None else None)
        target = args.to_version
        if target is None:
            previous = registry.alias_ref(settings, args.detector, registry.PREVIOUS)
            if previous is None:
                raise registry.RegistryError(
                    f"detector {args.detector!r} has no @previous version to roll back to"
                )
            target = previous.version
        restored = registry.rollback(settings, args.detector, to_version=target, expected_champion=expected)
    except registry.RegistryError as err:
        print(f"rollback failed: {err}", file=sys.stderr)
        return 1
    print(f"{args.detector}: @champion is now version {restored.version} (was {expected or 'none'})")
    return 0
