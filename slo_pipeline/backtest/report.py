"""The per-file and total table the backtest prints. Formatting only."""

from __future__ import annotations

import math
from collections.abc import Sequence

from slo_pipeline.backtest.run import FileMetrics

_HEADER = ("file", "windows", "hit", "false", "precision", "recall", "F1", "delay_min", "FA/week", "NAB")


def metrics_table(rows: Sequence[tuple[str, FileMetrics]]) -> str:
    """Aligned text table, one line per file plus the total (sums, NAB normalised on sums)."""
    lines = [_row_cells(name, metrics) for name, metrics in rows]
    if rows:
        total = FileMetrics(
            events=sum((m.events for _, m in rows[1:]), rows[0][1].events),
            nab=sum((m.nab for _, m in rows[1:]), rows[0][1].nab),
        )
        lines.append(_row_cells("TOTAL", total))
    widths = [max(len(h), *(len(cells[i]) for cells in lines)) for i, h in enumerate(_HEADER)]
    rendered = [_render(_HEADER, widths), _render(tuple("-" * w for w in widths), widths)]
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
