"""Result rows shared by the benchmark scripts: figure, floor, ratio, target, pass/fail.

Each `bench_*.py` prints its own detail table and, with `--rows-out FILE`, writes its result
rows as JSON; `run_all.py` runs every script once and prints all rows as one table.
A row's ratio is figure / floor, or floor / figure when `inverted` (a speed-up against a slow
reference, a latency against the floor's: there the ratio says how many times the floor's
performance the figure gives, like figure / floor does for a throughput). A row without a target is
context, never pass or fail.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
class Row:
    name: str
    figure: float
    unit: str
    floor: float | None = None
    floor_name: str = ""
    target: str = ""  # e.g. "<= 1.25" or ">= 200": compared with the ratio (or the figure, without a floor)
    inverted: bool = False

    @property
    def ratio(self) -> float | None:
        if self.floor is None or self.floor == 0 or self.figure == 0:
            return None
        return self.floor / self.figure if self.inverted else self.figure / self.floor

    @property
    def compared(self) -> float | None:
        """What the target is compared with: the ratio when there is a floor, else the figure."""
        return self.ratio if self.floor is not None else self.figure

    @property
    def passed(self) -> bool | None:
        if not self.target or self.compared is None:
            return None
        op, limit = self.target.split()
        if op == "<=":
            return self.compared <= float(limit)
        if op == ">=":
            return self.compared >= float(limit)
        raise ValueError(f"target {self.target!r}: expected '<= N' or '>= N'")


def write_rows(rows: list[Row], path: str | None) -> None:
    if path:
        Path(path).write_text(json.dumps([asdict(row) for row in rows]), encoding="utf-8")


def read_rows(path: Path) -> list[Row]:
    if not path.exists() or not path.read_text(encoding="utf-8").strip():
        return []
    return [Row(**item) for item in json.loads(path.read_text(encoding="utf-8"))]


def _number(value: float | None, unit: str = "") -> str:
    if value is None:
        return "-"
    text = f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"
    return f"{text} {unit}".strip()


def format_table(rows: list[Row]) -> str:
    """A Markdown table (readable as plain text too)."""
    lines = [
        "| row | figure | floor | ratio | target | result |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        floor = f"{_number(row.floor, row.unit)} ({row.floor_name})" if row.floor is not None else "-"
        if row.floor is None and row.floor_name:
            floor = row.floor_name
        ratio = f"{row.ratio:.2f}x" if row.ratio is not None else "-"
        result = {True: "pass", False: "**FAIL**", None: "-"}[row.passed]
        target = "-"
        if row.target:
            target = f"{row.target}x" if row.floor is not None else f"{row.target} {row.unit}".strip()
        lines.append(
            f"| {row.name} | {_number(row.figure, row.unit)} | {floor} | {ratio} | {target} | {result} |"
        )
    return "\n".join(lines)
