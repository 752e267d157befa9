"""Real exports as a time line the detector can replay: the documented rule, pure.

Exports contain clocks that step back (repeated timestamps), rows out of order, gaps and irregular
spacing. The detector's windows count samples of one step, so it needs one row per step, in time
order. The rule (docs/detection.md, "Real exports"):

1. a row whose timestamp cannot be read is left out (and reported); a file with no readable
   timestamp is refused;
2. rows are ordered by time (a stable sort: rows with equal times keep their file order);
3. of several rows with the same timestamp the last one in the file is kept;
4. the step is the median spacing of what remains; a spacing longer than 1.5 steps is a gap, and
   missing samples are inserted on the step grid (they are unscorable, like a scrape gap, instead
   of making a 3-hour hole look like one step);
5. other irregular spacing is kept as it is: every row is one sample.

Every rule reports how many rows it affected, and `row_position` maps every input row to its
sample so outputs are written in the input's row order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# A spacing above this many steps is a gap with missing samples in it.
GAP_FACTOR = 1.5
# Never invent more than this many samples for one file: a stray year in one timestamp would
# otherwise turn a small file into millions of empty rows.
MAX_INSERTED_ROWS = 1_000_000


class TimelineError(ValueError):
    """The rows cannot be put on a time line (no readable timestamp, a single row)."""


@dataclass(frozen=True)
class ExportReport:
    """How many input rows each rule touched (0 everywhere for a clean export)."""

    input_rows: int
    unreadable_timestamps: int  # rows left out: their time could not be read
    out_of_order: int  # rows earlier than a row before them in the file
    duplicates: int  # rows replaced by a later row with the same timestamp
    gaps: int  # spacings longer than GAP_FACTOR steps
    inserted_rows: int  # missing samples inserted into those gaps
    irregular: int  # other spacings off the step by more than half a step (kept as they are)

    @property
    def clean(self) -> bool:
        return not (
            self.unreadable_timestamps or self.out_of_order or self.duplicates or self.gaps or self.irregular
        )

    def summary(self) -> str:
        """One line naming every rule that applied, e.g. for the backtest's notes."""
        parts = []
        if self.unreadable_timestamps:
            parts.append(f"{self.unreadable_timestamps} rows with an unreadable timestamp left out")
        if self.out_of_order:
            parts.append(f"{self.out_of_order} rows out of time order (sorted)")
        if self.duplicates:
            parts.append(f"{self.duplicates} rows with a repeated timestamp (the last one kept)")
        if self.gaps:
            parts.append(f"{self.gaps} gaps ({self.inserted_rows} missing samples inserted)")
        if self.irregular:
            parts.append(f"{self.irregular} irregular spacings (kept, one sample per row)")
        return "; ".join(parts) if parts else "clean"


@dataclass(frozen=True)
class Timeline:
    times_ns: np.ndarray  # [S] int64, strictly increasing: the samples the detector replays
    source_row: np.ndarray  # [S] input row holding each sample's value, -1 for an inserted one
    row_position: np.ndarray  # [R] each input row's sample, -1 if its timestamp was unreadable
    superseded: np.ndarray  # [R] bool: a later row with the same timestamp replaced this one
    step_ns: int
    report: ExportReport

    def take(self, values: np.ndarray) -> np.ndarray:
        """Input-row-major `values[R, ...]` laid on the time line `[S, ...]` (NaN where inserted)."""
        values = np.asarray(values, dtype=np.float64)
        taken: np.ndarray = values[np.maximum(self.source_row, 0)]
        taken[self.source_row < 0] = np.nan
        return taken

    def to_input_rows(self, per_sample: np.ndarray, fill: object) -> np.ndarray:
        """`per_sample[S, ...]` back to the input's rows `[R, ...]`; `fill` for rows whose value
        was not scored (unreadable timestamp, replaced by a later duplicate)."""
        per_sample = np.asarray(per_sample)
        result: np.ndarray = per_sample[np.maximum(self.row_position, 0)].copy()
        lost = (self.row_position < 0) | self.superseded
        result[lost] = fill
        return result


def build_timeline(times_ns: np.ndarray, readable: np.ndarray) -> Timeline:
    """Apply the rule to `times_ns[R]` (int64 ns; ignored where `readable` is False)."""
    times_ns = np.asarray(times_ns, dtype=np.int64)
    readable = np.asarray(readable, dtype=bool)
    n_rows = len(times_ns)
    rows = np.flatnonzero(readable)
    if len(rows) == 0:
        raise TimelineError("no readable timestamp")
    order = rows[np.argsort(times_ns[rows], kind="stable")]
    ordered_times = times_ns[order]
    # Rows earlier than the latest time seen before them in the file (a clock stepping back).
    running_max = np.maximum.accumulate(times_ns[rows])
    out_of_order = int(np.count_nonzero(times_ns[rows][1:] < running_max[:-1]))
    # The last row (in file order, kept by the stable sort) of each timestamp wins.
    last_of_time = np.append(ordered_times[1:] != ordered_times[:-1], True)
    kept_rows = order[last_of_time]
    kept_times = ordered_times[last_of_time]
    superseded = np.zeros(n_rows, dtype=bool)
    superseded[order[~last_of_time]] = True
    if len(kept_times) < 2:
        raise TimelineError("need at least two distinct readable timestamps to infer the step")
    spacing = np.diff(kept_times)
    step = int(np.median(spacing))
    gap = spacing > GAP_FACTOR * step
    # Samples inserted into a gap: as many whole steps as fit with half a step to spare.
    inserted = np.where(gap, np.round(spacing / step).astype(np.int64) - 1, 0)
    total_inserted = int(inserted.sum())
    if total_inserted > MAX_INSERTED_ROWS:
        raise TimelineError(
            f"gaps would need {total_inserted} missing samples at a step of {step / 1e9:g}s "
            f"(more than {MAX_INSERTED_ROWS}); check the timestamps"
        )
    irregular = int(np.count_nonzero(~gap & (np.abs(spacing - step) > step / 2)))
    # Sample positions: each kept row moves by the samples inserted before it.
    position_of_kept = np.arange(len(kept_times)) + np.concatenate([[0], np.cumsum(inserted)])
    n_samples = len(kept_times) + total_inserted
    source_row = np.full(n_samples, -1, dtype=np.int64)
    source_row[position_of_kept] = kept_rows
    sample_times = np.empty(n_samples, dtype=np.int64)
    sample_times[position_of_kept] = kept_times
    for k in np.flatnonzero(inserted):
        start = position_of_kept[k]
        sample_times[start + 1 : start + 1 + inserted[k]] = kept_times[k] + step * np.arange(
            1, inserted[k] + 1
        )
    row_position = np.full(n_rows, -1, dtype=np.int64)
    # Every readable row points at its timestamp's sample (a replaced duplicate too).
    index_of_time = np.searchsorted(sample_times, times_ns[rows])
    row_position[rows] = index_of_time
    report = ExportReport(
        input_rows=n_rows,
        unreadable_timestamps=int(n_rows - len(rows)),
        out_of_order=out_of_order,
        duplicates=int(np.count_nonzero(superseded)),
        gaps=int(np.count_nonzero(gap)),
        inserted_rows=total_inserted,
        irregular=irregular,
    )
    return Timeline(
        times_ns=sample_times,
        source_row=source_row,
        row_position=row_position,
        superseded=superseded,
        step_ns=step,
        report=report,
    )
