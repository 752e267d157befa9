"""The `backtest` command's handler: wire inputs, detector, replay, outputs and the table."""

from __future__ import annotations

import argparse
import logging
import math
import sys
from pathlib import Path

import pandas as pd

from slo_pipeline.backtest.io import InputError, SeriesFile, expand_inputs, read_series_csv, write_scored_csv
from slo_pipeline.backtest.onset import AlertRule
from slo_pipeline.backtest.replay import Progress, ReplayPlan
from slo_pipeline.backtest.report import metrics_table
from slo_pipeline.backtest.run import FileMetrics, run_backtest, score_against_labels
from slo_pipeline.evaluation.labels import LabelError, load_windows, window_rows, windows_for_file
from slo_pipeline.settings import ConfigError, DetectorConfig, FeatureWindows, load_pipeline_config

LOG = logging.getLogger(__name__)
# NAB's probationary period: the first model sees 15 % of the rows, at most 750.
_INITIAL_FRACTION = 0.15
_INITIAL_MAX_ROWS = 750


def run_command(args: argparse.Namespace) -> int:
    try:
        base = _base_detector(args)
        rule = AlertRule(for_steps=args.for_steps, keep_firing_steps=args.keep_firing_steps)
        inputs = _load_inputs(args, base)
        labels = load_windows(args.labels) if args.labels else None
        outputs = _output_paths(args.output, [s.path for s in inputs])
    except (InputError, LabelError, ConfigError, ValueError) as err:
        print(f"backtest: {err}", file=sys.stderr)
        return 2
    table_rows: list[tuple[str, FileMetrics]] = []
    show_progress = not args.quiet and sys.stderr.isatty()
    for index, series in enumerate(inputs, start=1):
        detector = _detector_for(base, args, series)
        plan = _plan(detector, len(series.values), args)
        progress = _progress_printer(index, len(inputs), series.path.name) if show_progress else None
        outcome = run_backtest(series.values, detector, plan, rule, seed=args.seed, progress=progress)
        if show_progress:
            print(file=sys.stderr)
        if outputs is not None:
            write_scored_csv(
                series,
                outputs[index - 1],
                anomaly_score=outcome.anomaly_score,
                tail_probability=outcome.tail_probability,
                alarm=outcome.alarm,
                firing=outcome.firing,
            )
        if labels is not None:
            limits = windows_for_file(labels, series.path)
            if limits is None:
                LOG.warning("%s has no entry in %s; not scored", series.path, args.labels)
                continue
            rows = window_rows(limits, series.timestamps)
            for k, column in enumerate(series.columns):
                name = series.path.name if len(series.columns) == 1 else f"{series.path.name}:{column}"
                table_rows.append(
                    (name, score_against_labels(outcome.alarm[:, k], rows, series.epoch_seconds))
                )
    if labels is not None:
        print(metrics_table(table_rows))
        print(
            f"\nthreshold: {base.false_alarms_per_week:g} false alarms/week, alert rule for={rule.for_steps} "
            f"keep_firing_for={rule.keep_firing_steps} steps, seed {args.seed}"
        )
    return 0


def _base_detector(args: argparse.Namespace) -> DetectorConfig:
    if args.detector:
        if args.config:
            pipeline = load_pipeline_config(args.config)
        else:
            from slo_pipeline.settings import load_settings

            pipeline = load_settings().pipeline
        detector = pipeline.detector(args.detector)
    else:
        detector = DetectorConfig(name="backtest", query="csv")
    windows = detector.windows.model_dump()
    if args.windows:
        try:
            short, medium, long = (int(part) for part in args.windows.split(","))
        except ValueError as err:
            raise InputError(f"--windows must be short,medium,long integers, got {args.windows!r}") from err
        windows.update(short=short, medium=medium, long=long)
    if args.evidence is not None:
        windows["evidence"] = args.evidence
    if args.seasonal is not None:
        windows["seasonal"] = args.seasonal
    updates: dict[str, object] = {
        "windows": FeatureWindows.model_validate(windows),
        "min_training_samples": args.min_training_samples,
    }
    if args.false_alarms_per_week is not None:
        updates["false_alarms_per_week"] = args.false_alarms_per_week
    if args.combine_robust_z is not None:
        updates["combine_robust_z"] = args.combine_robust_z
    if args.n_estimators is not None:
        updates["n_estimators"] = args.n_estimators
    if args.training_window_days is not None:
        updates["training_window_seconds"] = round(args.training_window_days * 86400)
    return DetectorConfig.model_validate({**detector.model_dump(), **updates})


def _detector_for(base: DetectorConfig, args: argparse.Namespace, series: SeriesFile) -> DetectorConfig:
    """The step is the data's unless given: budgets per week and schedules depend on it."""
    step = args.step or (base.step_seconds if args.prometheus_url else series.step_seconds)
    return DetectorConfig.model_validate({**base.model_dump(), "step_seconds": step})


def _plan(detector: DetectorConfig, n_rows: int, args: argparse.Namespace) -> ReplayPlan:
    initial = min(math.floor(_INITIAL_FRACTION * n_rows), _INITIAL_MAX_ROWS)
    step = detector.step_seconds
    return ReplayPlan(
        initial_rows=max(1, initial),
        retrain_every_rows=max(1, round(args.retrain_every_hours * 3600 / step)),
        history_rows=max(1, detector.training_window_seconds // step),
        retry_rows=max(1, round(3600 / step)),
    )


def _load_inputs(args: argparse.Namespace, detector: DetectorConfig) -> list[SeriesFile]:
    if args.prometheus_url:
        return [_fetch_prometheus(args, detector)]
    if not args.input:
        raise InputError("give --input FILE.csv (or folders), or --prometheus-url with --start/--end")
    return [read_series_csv(path) for path in expand_inputs(args.input)]


def _fetch_prometheus(args: argparse.Namespace, detector: DetectorConfig) -> SeriesFile:
    from slo_pipeline.prometheus_io import fetch_range

    query = args.query or (detector.query if args.detector else None)
    if not query or not args.start or not args.end:
        raise InputError("--prometheus-url needs --start, --end and --query (or --detector)")
    start, end = _epoch(args.start), _epoch(args.end)
    step = args.step or detector.step_seconds
    block = fetch_range(args.prometheus_url, query, start=start, end=end, step_seconds=step, timeout=60.0)
    columns = [_label_text(labels) for labels in block.labels]
    timestamps = pd.DatetimeIndex(pd.to_datetime(block.timestamps, unit="s"))
    return SeriesFile(path=Path(detector.name), timestamps=timestamps, columns=columns, values=block.values)


def _epoch(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        pass
    try:
        stamp = pd.Timestamp(text)
    except ValueError as err:
        raise InputError(f"not a time: {text!r} (use ISO 8601 or unix seconds)") from err
    if stamp.tzinfo is None:
        stamp = stamp.tz_localize("UTC")
    return stamp.timestamp()


def _label_text(labels: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items())) or "series"


def _output_paths(output: Path | None, inputs: list[Path]) -> list[Path] | None:
    if output is None:
        return None
    if len(inputs) == 1 and output.suffix.lower() == ".csv":
        return [output]
    if output.suffix.lower() == ".csv":
        raise InputError(f"{len(inputs)} inputs need --output to be a folder, not {output}")
    names = [path.name for path in inputs]
    if len(set(names)) != len(names):
        raise InputError("inputs share file names; give them one by one or use distinct names")
    return [output / f"{Path(name).stem}.scored.csv" for name in names]


def _progress_printer(index: int, total: int, name: str) -> Progress:
    def report(done: int, rows: int) -> None:
        percent = 100.0 * done / max(rows, 1)
        print(f"\r[{index}/{total}] {name}: {percent:5.1f}%", end="", file=sys.stderr, flush=True)

    return report
