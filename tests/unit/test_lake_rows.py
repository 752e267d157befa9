"""A detector's block <-> the lake's long rows: partitions, order, missing samples, digests."""

from __future__ import annotations

import json

import numpy as np
import pytest

from slo_pipeline.adapters.lake_rows import block_rows, days_between, rows_block, rows_digest
from slo_pipeline.adapters.prometheus import SeriesBlock

DAY = 86400.0
LABELS = [{"route": "/b"}, {"route": "/a", "zone": "x"}]


def block(start: float = DAY - 180, steps: int = 6) -> SeriesBlock:
    timestamps = start + 60.0 * np.arange(steps)
    values = np.arange(steps * 2, dtype=float).reshape(steps, 2) / 7
    values[1, 0] = np.nan  # no sample
    return SeriesBlock(labels=LABELS, timestamps=timestamps, values=values)


def test_rows_keep_samples_only_sorted_by_series_then_time_and_split_by_utc_day() -> None:
    rows = block_rows("latency", block()).to_pandas()
    assert len(rows) == 11  # 12 cells, one missing
    assert set(rows["detector"]) == {"latency"}
    # Sorted by series key whatever the block's column order: {"route": "/a", ...} first.
    assert (
        rows["series"].tolist()
        == [json.dumps(LABELS[1], sort_keys=True)] * 6 + [json.dumps({"route": "/b"})] * 5
    )
    first = rows[rows["series"] == json.dumps({"route": "/b"})]
    assert first["timestamp"].is_monotonic_increasing
    # 23:57, 23:58 (missing), 23:59 on day 1; 00:00, 00:01, 00:02 on day 2
    assert first["day"].tolist() == ["1970-01-01", "1970-01-01", "1970-01-02", "1970-01-02", "1970-01-02"]
    assert set(rows["signal"]) == {""}


def test_rows_come_back_as_the_same_block_on_the_grid() -> None:
    original = block()
    rows = block_rows("latency", original)
    back = rows_block(rows, start=original.timestamps[0], end=original.timestamps[-1], step_seconds=60)
    # Series come back sorted by key: "/a" before "/b".
    assert back.labels == [LABELS[1], LABELS[0]]
    np.testing.assert_array_equal(back.values[:, ::-1], original.values)
    np.testing.assert_array_equal(back.timestamps, original.timestamps)


def test_a_wider_coarser_grid_is_nan_where_the_lake_has_no_rows() -> None:
    original = block()  # 23:57 .. 00:02, /b missing at 23:58
    rows = block_rows("latency", original)
    back = rows_block(rows, start=DAY - 300, end=DAY + 120, step_seconds=120)
    # Multiples of 2 minutes in [23:55, 00:02]: 23:56, 23:58, 00:00, 00:02.
    np.testing.assert_array_equal(back.timestamps, [DAY - 240, DAY - 120, DAY, DAY + 120])
    assert np.isnan(back.values[0]).all()  # before the first row
    assert np.isnan(back.values[1, 1]) and back.values[1, 0] == original.values[1, 1]
    assert back.values[3, 1] == original.values[5, 0]


def test_multivariate_rows_keep_every_signal_and_drop_unknown_ones_on_the_way_back() -> None:
    values = np.arange(2 * 2 * 3, dtype=float).reshape(2, 2, 3)
    multi = SeriesBlock(
        labels=LABELS, timestamps=np.array([0.0, 60.0]), values=values, signals=("a", "b", "c")
    )
    rows = block_rows("svc", multi)
    assert rows.num_rows == 12
    back = rows_block(rows, start=0, end=60, step_seconds=60, signals=("c", "a", "new"))
    assert back.signals == ("c", "a", "new")
    np.testing.assert_array_equal(back.values[:, 1, 0], values[:, 0, 2])  # /b is column 1 once sorted
    np.testing.assert_array_equal(back.values[:, 1, 1], values[:, 0, 0])
    assert np.isnan(back.values[:, :, 2]).all()


def test_the_digest_depends_on_content_not_on_row_order() -> None:
    rows = block_rows("latency", block())
    shuffled = rows.take(np.random.default_rng(1).permutation(rows.num_rows))
    assert rows_digest(shuffled) == rows_digest(rows)
    changed = block()
    changed.values[3, 1] += 1e-12
    assert rows_digest(block_rows("latency", changed)) != rows_digest(rows)
    assert rows_digest(rows.slice(1)) != rows_digest(rows)


def test_days_between_covers_both_ends() -> None:
    assert days_between(DAY - 1, DAY) == ["1970-01-01", "1970-01-02"]
    assert days_between(5.0, 10.0) == ["1970-01-01"]


def test_an_empty_block_is_no_rows_and_an_empty_range_is_refused() -> None:
    empty = SeriesBlock(labels=[], timestamps=np.array([0.0, 60.0]), values=np.empty((2, 0)))
    assert block_rows("x", empty).num_rows == 0
    with pytest.raises(ValueError, match="contains no multiple"):
        rows_block(block_rows("x", empty), start=1, end=59, step_seconds=60)


def test_no_rows_read_back_as_a_block_without_series() -> None:
    empty = block_rows("x", SeriesBlock(labels=[], timestamps=np.array([0.0]), values=np.empty((1, 0))))
    back = rows_block(empty, start=0, end=120, step_seconds=60, signals=("a", "b"))
    assert back.values.shape == (3, 0, 2) and back.labels == []
