"""`slo-pipeline backtest`: replay CSV files (or a Prometheus range) through the detector.

Only argparse is imported at module level; the handler imports the heavy parts when it runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from slo_pipeline.offline.backtest.defaults import (
    CSV_DEFAULT_BUDGET,
    CSV_DEFAULT_FOR_SECONDS,
    CSV_DEFAULT_KEEP_FIRING_SECONDS,
    CSV_DEFAULT_MIN_TRAINING_SAMPLES,
)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "backtest",
        help="replay history through the detector and report alarms (optionally against labels)",
        description=(
            "Replay CSV files (--input) or a configured detector's series over a time range of a "
            "Prometheus (--prometheus-url, --detector, --start, --end). Train on the first 15% of rows "
            "(at most 750), retrain daily on past data only, write anomaly_score, "
            "anomaly_tail_probability and alarm per row, and with --labels print event-level "
            "precision/recall/F1, detection delay, false alarms per week and the NAB standard score "
            "per file (or series) and in total."
        ),
        epilog="""examples:
  slo-pipeline backtest --input series.csv --output scores.csv --labels labels.json
  slo-pipeline backtest --prometheus-url http://127.0.0.1:9090 --detector demo_latency_p95 \\
      --start now-7d --output scores.csv""",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    source = parser.add_argument_group("input (CSV files or a Prometheus range)")
    source.add_argument("--input", nargs="+", type=Path, help="CSV files (timestamp,value[,...]) or folders")
    source.add_argument(
        "--multivariate",
        action="store_true",
        help="a CSV's value columns are signals of one service, scored together (default: each on its own)",
    )
    source.add_argument("--prometheus-url", help="query this Prometheus instead of reading CSV files")
    source.add_argument("--query", help="PromQL for --prometheus-url (default: the --detector's query)")
    source.add_argument(
        "--start",
        help="range start for --prometheus-url: RFC 3339 (UTC if no offset), unix seconds or now-7d",
    )
    source.add_argument("--end", help="range end for --prometheus-url, same formats (default: now)")
    source.add_argument(
        "--source",
        choices=["prometheus", "lake", "auto"],
        help="where a --detector's range comes from: prometheus (the default with --prometheus-url), "
        "lake (the data lake only; no Prometheus needed), or auto (Prometheus where it still has the "
        "samples, the lake for older ranges and gaps; needs --prometheus-url)",
    )
    source.add_argument("--lake", help="data lake for --source lake/auto (default: SLO_PIPELINE_DATA_LAKE)")
    parser.add_argument(
        "--output",
        type=Path,
        help="scored CSV (one input) or folder (several inputs); a Prometheus range gets one row per "
        "step per series, with the series' labels",
    )
    parser.add_argument(
        "--labels",
        type=Path,
        help="NAB combined_windows.json with the labelled windows; for a Prometheus range keyed by "
        'detector name or NAME{label="value",...}',
    )
    detector = parser.add_argument_group("detector (defaults: the production detector's)")
    detector.add_argument("--config", type=Path, help="pipeline YAML to take --detector from")
    detector.add_argument("--detector", help="name of a configured detector to replay")
    detector.add_argument(
        "--false-alarms-per-week",
        type=float,
        help=f"budget (default: the detector's; {CSV_DEFAULT_BUDGET} for CSV files)",
    )
    detector.add_argument("--windows", help="short,medium,long feature windows in samples")
    detector.add_argument("--evidence", type=int, help="evidence window in samples")
    detector.add_argument("--seasonal", type=int, help="season length in samples (0 = off)")
    detector.add_argument(
        "--seasonality",
        choices=["auto", "off"],
        help="seasonal baseline chosen at each training when it helps (default: the detector's; "
        "auto for CSV files)",
    )
    detector.add_argument(
        "--shift-features",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="the distribution-shift features (spread ratio, spike density; default: the detector's; "
        "on for CSV files)",
    )
    detector.add_argument(
        "--combine-robust-z",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="join the robust z-score to the forest (default: the detector's setting, on)",
    )
    detector.add_argument("--n-estimators", type=int, help="trees per IsolationForest")
    detector.add_argument(
        "--min-training-samples",
        type=int,
        help=f"default: the --detector's, else the production default (500); "
        f"{CSV_DEFAULT_MIN_TRAINING_SAMPLES} for CSV files",
    )
    detector.add_argument(
        "--step",
        type=int,
        help="seconds per sample (default: the detector's for --prometheus-url, inferred from CSV data)",
    )
    rule = parser.add_argument_group(
        "alert rule (default: from durations at each input's step; the shipped rules/anomaly.rules.yml "
        f"for --detector or --prometheus-url, for {CSV_DEFAULT_FOR_SECONDS // 60}m / keep_firing_for "
        f"{CSV_DEFAULT_KEEP_FIRING_SECONDS // 60}m for CSV files)"
    )
    rule.add_argument("--for-steps", type=int, help="`for:` in steps (overrides the default)")
    rule.add_argument(
        "--keep-firing-steps", type=int, help="`keep_firing_for:` in steps (overrides the default)"
    )
    parser.add_argument("--retrain-every-hours", type=float, default=24.0, help="default: %(default)s")
    parser.add_argument("--training-window-days", type=float, help="history per retrain (default 7)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")
    parser.set_defaults(handler=_handle)


def _handle(args: argparse.Namespace) -> int:
    from slo_pipeline.offline.backtest.cli_run import run_command

    return run_command(args)
