"""What the backtest reports: the per-file (or per-series) and total table it prints, and the
one-row-per-step-per-series frame it writes for a Prometheus range."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from slo_pipeline.offline.backtest.io import SeriesFile
from slo_pipeline.offline.backtest.run import BacktestOutcome, FileMetrics

_HEADER = ("windows", "hit", "false", "precision", "recall", "F1", "delay_min", "FA/week", "NAB")
# Columns of the long frame; a series label with one of these names is written as `label_<name>`.
_FIXED_COLUMNS = (
    "timestamp",
    "series",
    "value",
    "anomaly_score",
    "anomaly_tail_probability",
    "alarm",
    "firing",
    "scored",
    "driver",
)


def metrics_table(rows: Sequence[tuple[str, FileMetrics]], name_header: str = "file") -> str:
    """Aligned text table, one line per file (or series) plus the total (sums, NAB normalised on
    sums)."""
    header = (name_header, *_HEADER)
    lines = [_row_cells(name, metrics) for name, metrics in rows]
    if rows:
        total = FileMetrics(
            events=sum((m.events for _, m in rows[1:]), rows[0][1].events),
            nab=sum((m.nab for _, m in rows[1:]), rows[0][1].nab),
        )
        lines.append(_row_cells("TOTAL", total))
    widths = [max(len(h), *(len(cells[i]) for cells in lines)) for i, h in enumerate(header)]
    rendered = [_render(header, widths), _render(tuple("-" * w for w in widths), widths)]
    rendered.extend(_render(cells, widths) for cells in lines)
    if rows:
        rendered.insert(len(rendered) - 1, _render(tuple("-" * w for w in widths), widths))
    return "\n".join(rendered)


def _row_cells(name: str, metrics: FileMetrics) -> tuple[str, ...]:
    e = metrics.events
    return (
        name,
        str(e.windows),
        str(e.detected),
        str(e.false_alarms),
        _fmt(e.precision, 2),
        _fmt(e.recall, 2),
        _fmt(e.f1, 2),
        _fmt(e.mean_delay_seconds / 60.0, 0),
        _fmt(e.false_alarms_per_week, 2),
        _fmt(metrics.nab.normalised, 1),
    )


def _fmt(value: float, digits: int) -> str:
    return "-" if math.isnan(value) else f"{value:.{digits}f}"


def _render(cells: tuple[str, ...], widths: list[int]) -> str:
    first = cells[0].ljust(widths[0])
    rest = (cell.rjust(width) for cell, width in zip(cells[1:], widths[1:], strict=True))
    return "  ".join([first, *rest])


def series_rows(
    series: SeriesFile, labels: Sequence[Mapping[str, str]], outcome: BacktestOutcome
) -> pd.DataFrame:
    """One row per step per series (series after series): time, the series' selector and labels,
    its value and what the replay made of it.

    As in the per-file CSV, rows no model could score (warm-up, gaps) get probability 1 and score
    0 ("no evidence") and `scored` = 0. Times are RFC 3339 UTC, like the range that was asked for.
    """
    n_steps, n_series = series.values.shape[:2]
    scored = np.isfinite(outcome.tail_probability)
    frame = pd.DataFrame(
        {
            "timestamp": np.tile(series.timestamps.strftime("%Y-%m-%dT%H:%M:%SZ").to_numpy(), n_series),
            "series": np.repeat(np.asarray(series.columns, dtype=object), n_steps),
        }
    )
    for name in sorted({name for label_set in labels for name in label_set}):
        column = f"label_{name}" if name in _FIXED_COLUMNS else name
        frame[column] = np.repeat(np.asarray([ls.get(name, "") for ls in labels], dtype=object), n_steps)
    # Transposed before flattening: [T, N] -> series-major rows.
    if series.signals:
        for k, signal in enumerate(series.signals):
            frame[f"value_{signal}"] = series.values[:, :, k].T.ravel()
    else:
        frame["value"] = series.values.T.ravel()
    frame["anomaly_score"] = np.where(scored, outcome.anomaly_score, 0.0).T.ravel()
    frame["anomaly_tail_probability"] = np.where(scored, outcome.tail_probability, 1.0).T.ravel()
    frame["alarm"] = outcome.alarm.T.ravel().astype(int)
    frame["firing"] = outcome.firing.T.ravel().astype(int)
    frame["scored"] = scored.T.ravel().astype(int)
    if outcome.driver is not None:
        frame["driver"] = outcome.driver.T.ravel()
    return frame
