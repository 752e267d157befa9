"""The `backtest` command's handler: wire inputs, detector, replay, outputs and the table."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import math
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from slo_pipeline.adapters.prometheus import (
    PrometheusAuthError,
    PrometheusQueryError,
    SeriesBlock,
    fetch_detector_range,
    fetch_range,
)
from slo_pipeline.adapters.prometheus_connection import redact_url
from slo_pipeline.core.alert_sim import AlertRule
from slo_pipeline.core.rule_timing import RuleTiming, anomaly_alert_rule
from slo_pipeline.core.scorability import TOO_LITTLE_HISTORY
from slo_pipeline.offline.backtest.defaults import (
    CSV_DEFAULT_BUDGET,
    CSV_DEFAULT_FOR_SECONDS,
    CSV_DEFAULT_KEEP_FIRING_SECONDS,
    CSV_DEFAULT_MIN_TRAINING_SAMPLES,
    CSV_DEFAULT_SEASONALITY,
    CSV_DEFAULT_SHIFT_FEATURES,
    csv_shift_features,
)
from slo_pipeline.offline.backtest.io import (
    InputError,
    SeriesFile,
    as_signals,
    expand_inputs,
    read_series_csv,
    write_scored_csv,
)
from slo_pipeline.offline.backtest.lake_source import fill_from_lake, lake_range
from slo_pipeline.offline.backtest.prometheus_range import (
    describe_query_error,
    fetch_series,
    format_time,
    parse_time,
    utc_naive,
    windows_for_series,
)
from slo_pipeline.offline.backtest.replay import Progress, ReplayPlan
from slo_pipeline.offline.backtest.report import metrics_table, series_rows
from slo_pipeline.offline.backtest.run import BacktestOutcome, FileMetrics, run_backtest, score_against_labels
from slo_pipeline.offline.evaluation.labels import LabelError, load_windows, window_rows, windows_for_file
from slo_pipeline.settings import ConfigError, DetectorConfig, FeatureWindows, Settings, load_pipeline_config

LOG = logging.getLogger(__name__)
# NAB's probationary period: the first model sees 15 % of the rows, at most 750.
_INITIAL_FRACTION = 0.15
_INITIAL_MAX_ROWS = 750
# Per query_range request of a backtest: ranges are long, and nothing waits on the answer.
_QUERY_TIMEOUT_SECONDS = 60.0


@dataclass(frozen=True)
class _Input:
    series: SeriesFile
    # Label sets of the columns when the input is a Prometheus range (mode b); None for CSV files.
    labels: list[dict[str, str]] | None = None


def run_command(args: argparse.Namespace) -> int:
    show_progress = not args.quiet and sys.stderr.isatty()
    try:
        base = _base_detector(args)
        # Labels are checked before a possibly long fetch from Prometheus.
        labels = load_windows(args.labels) if args.labels else None
        inputs = _load_inputs(args, base, now=time.time(), show_progress=show_progress)
        outputs = _output_paths(args.output, [item.series.path for item in inputs])
    except (InputError, LabelError, ConfigError, ValueError) as err:
        return _fail(err)
    table_rows: list[tuple[str, FileMetrics]] = []
    notes: list[str] = []
    rules: dict[int, AlertRule] = {}
    try:
        for index, item in enumerate(inputs, start=1):
            detector = _detector_for(base, args, item.series)
            label = f"[{index}/{len(inputs)}] {item.series.path.name}"
            notes.extend(_export_notes(item.series))
            rule = _rule_for(args, detector.step_seconds)
            rules[detector.step_seconds] = rule
            outcome = _replay(item, detector, rule, args, _progress_printer(label) if show_progress else None)
            notes.extend(_scoring_notes(item, outcome, detector))
            if outputs is not None:
                _write_output(item, outcome, outputs[index - 1])
            if labels is not None:
                table_rows.extend(_scored_rows(item, outcome, labels, args, base.name))
    # An unwritable output, labels that fit no series, or data the detector cannot take (e.g. a
    # series layout that does not match its signals): one line, not a traceback.
    except (InputError, LabelError, ValueError) as err:
        return _fail(err)
    if labels is not None:
        name_header = "series" if _is_range(args) else "file"
        print(metrics_table(table_rows, name_header=name_header))
        timing = ", ".join(
            f"for={rule.for_steps} keep_firing_for={rule.keep_firing_steps} steps at {step}s"
            for step, rule in sorted(rules.items())
        )
        print(
            f"\nthreshold: {base.false_alarms_per_week:g} false alarms/week, "
            f"alert rule {timing}, seed {args.seed}"
        )
    if notes:
        # With a table they belong to it (stdout); otherwise they are diagnostics (stderr).
        stream = sys.stdout if labels is not None else sys.stderr
        print("\nnotes:", file=stream)
        for note in notes:
            print(f"  {note}", file=stream)
    return 0


def _rule_for(args: argparse.Namespace, step_seconds: int) -> AlertRule:
    """The alert rule in samples of this input's step: from durations, so any step works.

    CSV files without --detector: CSV_DEFAULT_FOR_SECONDS / CSV_DEFAULT_KEEP_FIRING_SECONDS, the
    operating point chosen on NAB (2 and 15 samples at its 5-minute step). A configured detector
    or a Prometheus range: the shipped rule (rules/anomaly.rules.yml) as Prometheus evaluates it.
    `--for-steps` / `--keep-firing-steps` override either, in samples.
    """
    if args.prometheus_url or args.detector:
        rule = anomaly_alert_rule(step_seconds, RuleTiming.from_settings(Settings()))
    else:
        rule = AlertRule.from_durations(
            CSV_DEFAULT_FOR_SECONDS, CSV_DEFAULT_KEEP_FIRING_SECONDS, step_seconds
        )
    return AlertRule(
        for_steps=rule.for_steps if args.for_steps is None else args.for_steps,
        keep_firing_steps=rule.keep_firing_steps
        if args.keep_firing_steps is None
        else args.keep_firing_steps,
    )


def _export_notes(series: SeriesFile) -> list[str]:
    """What the export rule changed in a CSV file (docs/detection.md, "Real exports")."""
    if series.timeline is None or series.timeline.report.clean:
        return []
    note = f"{series.path.name}: {series.timeline.report.summary()}"
    LOG.warning("%s", note)
    return [note]


def _scoring_notes(item: _Input, outcome: BacktestOutcome, detector: DetectorConfig) -> list[str]:
    """Per input: which series were never scored, or scored only from some row on, and why."""
    series = item.series
    n_rows = len(series.timestamps)
    step = detector.step_seconds
    if outcome.first_model_row is None:
        why = outcome.no_model_reason or "no rows after the initial training period"
        note = (
            f"{series.path.name}: not scored at all ({n_rows} samples at a {step}s step): "
            f"{TOO_LITTLE_HISTORY}: {why}"
        )
        LOG.warning("%s", note)
        return [note]
    notes = []
    first = outcome.first_model_row
    if outcome.no_model_reason:
        note = (
            f"{series.path.name}: scored from sample {first + 1} of {n_rows} "
            f"({series.timestamps[first]}); before that {TOO_LITTLE_HISTORY}: {outcome.no_model_reason}"
        )
        LOG.info("%s", note)
        notes.append(note)
    scored = np.isfinite(outcome.tail_probability)
    for k, column in enumerate(series.columns):
        if not scored[:, k].any():
            reasons: list[str] = (
                list(outcome.unscored_reason[first:, k]) if outcome.unscored_reason is not None else []
            )
            common = pd.Series(reasons).value_counts().index[0] if reasons else TOO_LITTLE_HISTORY
            note = f"{series.path.name}: series {column!r} never scored: {common}"
            LOG.warning("%s", note)
            notes.append(note)
    return notes


def _fail(err: Exception) -> int:
    """One line, no traceback: these errors are about the inputs, not the code."""
    print(f"backtest: {err}", file=sys.stderr)
    return 2


def _replay(
    item: _Input,
    detector: DetectorConfig,
    rule: AlertRule,
    args: argparse.Namespace,
    progress: Progress | None,
) -> BacktestOutcome:
    """Both modes end here, with the same detector, plan and rule: only the source differs."""
    plan = _plan(detector, len(item.series.values), args)
    outcome = run_backtest(item.series.values, detector, plan, rule, seed=args.seed, progress=progress)
    if progress is not None:
        print(file=sys.stderr)
    return outcome


def _write_output(item: _Input, outcome: BacktestOutcome, path: Path) -> None:
    if item.labels is None:
        write_scored_csv(
            item.series,
            path,
            anomaly_score=outcome.anomaly_score,
            tail_probability=outcome.tail_probability,
            alarm=outcome.alarm,
            firing=outcome.firing,
            driver=outcome.driver,
            unscored_reason=outcome.unscored_reason,
        )
        return
    # A range holds any number of series, each with its labels: one row per step per series.
    frame = series_rows(item.series, item.labels, outcome)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        frame.to_csv(path, index=False)
    except OSError as err:
        raise InputError(f"cannot write {path}: {err}") from err


def _scored_rows(
    item: _Input,
    outcome: BacktestOutcome,
    labels: dict[str, list[tuple[pd.Timestamp, pd.Timestamp]]],
    args: argparse.Namespace,
    detector_name: str,
) -> list[tuple[str, FileMetrics]]:
    """Table rows of one input: per series of a range, per value column of a CSV file."""
    series = item.series
    if item.labels is not None:
        per_series = windows_for_series(labels, detector_name, item.labels)
    else:
        limits = windows_for_file(labels, series.path)
        if limits is None:
            LOG.warning("%s has no entry in %s; not scored", series.path, args.labels)
            return []
        per_series = [[(utc_naive(start), utc_naive(end)) for start, end in limits]] * len(series.columns)
    rows = []
    for k, column in enumerate(series.columns):
        if item.labels is not None:
            name = column
        else:
            name = series.path.name if len(series.columns) == 1 else f"{series.path.name}:{column}"
        windows = window_rows(per_series[k], series.timestamps)
        rows.append((name, score_against_labels(outcome.alarm[:, k], windows, series.epoch_seconds)))
    return rows


def _base_detector(args: argparse.Namespace) -> DetectorConfig:
    if args.detector:
        if args.config:
            pipeline = load_pipeline_config(args.config)
        else:
            from slo_pipeline.settings import load_settings

            pipeline = load_settings().pipeline
        detector = pipeline.detector(args.detector)
    else:
        # The operating point chosen on NAB is for files; a raw --query keeps the production defaults.
        file_defaults: dict[str, Any] = {
            "false_alarms_per_week": CSV_DEFAULT_BUDGET,
            "min_training_samples": CSV_DEFAULT_MIN_TRAINING_SAMPLES,
            "seasonality": CSV_DEFAULT_SEASONALITY,
            "windows": FeatureWindows(shift=CSV_DEFAULT_SHIFT_FEATURES),
        }
        overrides = file_defaults if _csv_defaults(args) else {}
        detector = DetectorConfig(name="backtest", query="csv", **overrides)
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
    if args.shift_features is not None:
        windows["shift"] = args.shift_features
    updates: dict[str, object] = {"windows": FeatureWindows.model_validate(windows)}
    if args.min_training_samples is not None:
        updates["min_training_samples"] = args.min_training_samples
    if args.false_alarms_per_week is not None:
        updates["false_alarms_per_week"] = args.false_alarms_per_week
    if args.combine_robust_z is not None:
        updates["combine_robust_z"] = args.combine_robust_z
    if args.seasonality is not None:
        updates["seasonality"] = args.seasonality
    if args.n_estimators is not None:
        updates["n_estimators"] = args.n_estimators
    if args.training_window_days is not None:
        updates["training_window_seconds"] = round(args.training_window_days * 86400)
    return DetectorConfig.model_validate({**detector.model_dump(), **updates})


def _detector_for(base: DetectorConfig, args: argparse.Namespace, series: SeriesFile) -> DetectorConfig:
    """The step is the data's unless given: budgets per week and schedules depend on it. A
    `--multivariate` CSV brings its own signals (its value columns)."""
    step = args.step or (base.step_seconds if _is_range(args) else series.step_seconds)
    fields: dict[str, object] = {**base.model_dump(), "step_seconds": step}
    if _csv_defaults(args) and args.shift_features is None:
        # The CSV default depends on how long the medium window lasts at this file's step.
        windows = base.windows.model_copy(update={"shift": csv_shift_features(step, base.windows.medium)})
        fields["windows"] = windows.model_dump()
    if series.signals and base.signals and series.signals != base.signal_names:
        raise InputError(
            f"{series.path}: its columns give signals {list(series.signals)}, but detector {base.name!r} "
            f"scores {list(base.signal_names)}; name the CSV columns after them, in that order"
        )
    if series.signals and not base.signals:
        fields.update(query=None, signals=[{"name": name, "query": name} for name in series.signals])
    elif base.signals and not series.signals:
        # `--query` overrides a multivariate detector's signals: one query, scored on its own.
        fields.update(query=args.query or base.query_text, signals=[])
    return DetectorConfig.model_validate(fields)


def _plan(detector: DetectorConfig, n_rows: int, args: argparse.Namespace) -> ReplayPlan:
    initial = min(math.floor(_INITIAL_FRACTION * n_rows), _INITIAL_MAX_ROWS)
    step = detector.step_seconds
    return ReplayPlan(
        initial_rows=max(1, initial),
        retrain_every_rows=max(1, round(args.retrain_every_hours * 3600 / step)),
        history_rows=max(1, detector.effective_training_window_seconds // step),
        retry_rows=max(1, round(3600 / step)),
    )


def _csv_defaults(args: argparse.Namespace) -> bool:
    """CSV files scored without --detector: the operating point chosen on NAB applies."""
    return not args.detector and not _is_range(args)


def _is_range(args: argparse.Namespace) -> bool:
    """A detector's time range (from Prometheus and/or the lake) rather than CSV files."""
    return bool(args.prometheus_url) or args.source == "lake"


def _load_inputs(
    args: argparse.Namespace, detector: DetectorConfig, *, now: float, show_progress: bool
) -> list[_Input]:
    if args.source in ("lake", "auto"):
        _check_lake_args(args)
    if args.source == "lake":
        if args.prometheus_url:
            raise InputError(
                "--source lake reads the lake only; drop --prometheus-url (or use --source auto)"
            )
        return [_read_lake(args, detector, now=now)]
    if args.prometheus_url:
        if args.input:
            raise InputError("give either --input or --prometheus-url, not both")
        if args.multivariate:
            raise InputError("--multivariate is for CSV files; a Prometheus range takes a detector's signals")
        return [_fetch_prometheus(args, detector, now=now, show_progress=show_progress)]
    if args.source == "auto":
        raise InputError("--source auto needs --prometheus-url (or use --source lake)")
    if not args.input:
        raise InputError("give --input FILE.csv (or folders), or --prometheus-url with --start")
    files = [_naive_utc_times(read_series_csv(path)) for path in expand_inputs(args.input)]
    if args.multivariate:
        files = [as_signals(series) for series in files]
    return [_Input(series) for series in files]


def _naive_utc_times(series: SeriesFile) -> SeriesFile:
    """RFC 3339 times with an offset (e.g. a Prometheus export) as naive UTC, the form the replay,
    the labels and the writer compare and subtract; naive times are taken as they are."""
    if series.timestamps.tz is None:
        return series
    return dataclasses.replace(series, timestamps=series.timestamps.tz_convert("UTC").tz_localize(None))


def _fetch_prometheus(
    args: argparse.Namespace, detector: DetectorConfig, *, now: float, show_progress: bool
) -> _Input:
    # A multivariate detector's signals are fetched and joined as the exporter does, [T, N, K].
    joined = bool(detector.signals) and not args.query
    query = args.query or (detector.query_text if args.detector else None)
    if not query or not args.start:
        raise InputError("--prometheus-url needs --start (and --end, default now) and --query or --detector")
    start, end = parse_time(args.start, now=now), parse_time(args.end or "now", now=now)
    from slo_pipeline.settings import load_settings

    # The credentials, headers and TLS settings come from the environment, as for every reader.
    connection = load_settings().prometheus.with_url(args.prometheus_url.rstrip("/"))
    url, step = redact_url(connection.url), args.step or detector.step_seconds

    def fetch(chunk_start: float, chunk_end: float) -> SeriesBlock:
        try:
            if joined:
                return fetch_detector_range(
                    connection,
                    detector.model_copy(update={"step_seconds": step}),
                    start=chunk_start,
                    end=chunk_end,
                    timeout=_QUERY_TIMEOUT_SECONDS,
                )
            return fetch_range(
                connection,
                query,
                start=chunk_start,
                end=chunk_end,
                step_seconds=step,
                timeout=_QUERY_TIMEOUT_SECONDS,
            )
        except PrometheusAuthError as err:
            raise InputError(str(err)) from None
        except PrometheusQueryError as err:
            raise InputError(
                describe_query_error(err, url=url, query=query, timeout=_QUERY_TIMEOUT_SECONDS)
            ) from err

    progress = _progress_printer(f"fetching {detector.name}") if show_progress else None
    with _retry_warnings_muted():
        fetched = fetch_series(
            fetch,
            name=detector.name,
            source=f"query {query!r} at Prometheus {url!r}",
            start=start,
            end=end,
            step_seconds=step,
            progress=progress,
            allow_empty=args.source == "auto",
        )
    if progress is not None:
        print(file=sys.stderr)
    if args.source == "auto":
        # Older than Prometheus' retention, or a gap: the lake's samples fill in.
        fetched = fill_from_lake(fetched, _lake_root(args), detector, start=start, end=end, step_seconds=step)
        if not fetched.labels:
            raise InputError(
                f"neither Prometheus at {url!r} nor the lake {_lake_root(args)!r} holds samples of "
                f"detector {detector.name!r} between {format_time(start)} and {format_time(end)}"
            )
    series = fetched.series
    if joined:
        series = dataclasses.replace(series, signals=detector.signal_names)
    return _Input(series, fetched.labels)


def _check_lake_args(args: argparse.Namespace) -> None:
    if not args.detector:
        raise InputError(
            f"--source {args.source} needs --detector: the lake holds configured detectors' series"
        )
    if args.query:
        raise InputError(
            f"--source {args.source} replays the detector's own series; --query needs Prometheus"
        )
    if args.input or args.multivariate:
        raise InputError(f"--source {args.source} replays a detector's range, not CSV files")
    if not args.start:
        raise InputError(f"--source {args.source} needs --start (and --end, default now)")


def _lake_root(args: argparse.Namespace) -> str:
    if args.lake:
        return str(args.lake)
    from slo_pipeline.settings import load_settings

    return load_settings().data_lake


def _read_lake(args: argparse.Namespace, detector: DetectorConfig, *, now: float) -> _Input:
    start, end = parse_time(args.start, now=now), parse_time(args.end or "now", now=now)
    fetched = lake_range(
        _lake_root(args), detector, start=start, end=end, step_seconds=args.step or detector.step_seconds
    )
    return _Input(fetched.series, fetched.labels)


@contextmanager
def _retry_warnings_muted() -> Iterator[None]:
    """The transport retries a dropped connection once and urllib3 logs that as a warning; a
    failure is reported once, as the command's one-line error, so the warning is only noise."""
    pool_log = logging.getLogger("urllib3.connectionpool")
    level = pool_log.level
    pool_log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        pool_log.setLevel(level)


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


def _progress_printer(label: str) -> Progress:
    def report(done: int, total: int) -> None:
        percent = 100.0 * done / max(total, 1)
        print(f"\r{label}: {percent:5.1f}%", end="", file=sys.stderr, flush=True)

    return report
