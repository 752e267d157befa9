"""Lake rows as CSV: `timestamp,series,value` (plus `signal`), one row per series and step."""

from __future__ import annotations

import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

OPTIONS = pa_csv.WriteOptions(quoting_style="needed")


def write_csv(rows: pa.Table, output: Path, *, with_signal: bool) -> int:
    """Write `rows` sorted by series (and signal) then time; times in RFC 3339 UTC. `-` is stdout.

    Returns the number of rows written. Values keep full float precision.
    """
    ordered = rows.sort_by([("series", "ascending"), ("signal", "ascending"), ("timestamp", "ascending")])
    stamps = ordered.column("timestamp")
    if not (stamps.cast(pa.int64()).to_numpy() % 1_000_000).any():
        # Whole seconds (every whole-second step is): no ".000000" on every row.
        stamps = stamps.cast(pa.timestamp("s", tz="UTC"), safe=False)
    columns = {
        "timestamp": pc.strftime(stamps, format="%Y-%m-%dT%H:%M:%SZ"),
        "series": ordered.column("series"),
    }
    if with_signal:
        columns["signal"] = ordered.column("signal")
    columns["value"] = ordered.column("value")
    table = pa.table(columns)
    if str(output) == "-":
        pa_csv.write_csv(table, sys.stdout.buffer, OPTIONS)
    else:
        output.parent.mkdir(parents=True, exist_ok=True)
        pa_csv.write_csv(table, str(output), OPTIONS)
    return table.num_rows
