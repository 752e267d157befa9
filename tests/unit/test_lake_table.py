"""The Delta table on a local folder: idempotent merges, hostile label values, slices, maintenance."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from slo_pipeline.adapters import lake
from slo_pipeline.adapters.lake_rows import SECONDS_PER_DAY, block_rows, rows_block, rows_digest
from slo_pipeline.adapters.prometheus import SeriesBlock

DAY0 = 20_000 * SECONDS_PER_DAY
# Quotes, a backslash, SQL and JSON metacharacters, non-ASCII: label values are user data.
HOSTILE = [{"route": "it's"}, {"route": "a\\\"b' OR '1'='1"}, {"route": "/ünï/ çødé; DROP TABLE"}]


def block(start: float, steps: int, seed: int = 0) -> SeriesBlock:
    values = np.random.default_rng(seed).normal(10, 1, (steps, len(HOSTILE)))
    return SeriesBlock(labels=HOSTILE, timestamps=start + 60.0 * np.arange(steps), values=values)


def test_merging_twice_adds_nothing_and_a_partial_overlap_adds_only_the_new_rows(tmp_path: Path) -> None:
    root = str(tmp_path)
    first = block_rows("d", block(DAY0, 120))
    assert lake.merge_rows(root, "d", first).inserted == first.num_rows
    again = lake.merge_rows(root, "d", first)
    assert again.inserted == 0
    later = block_rows("d", block(DAY0, 180))  # the same draws for the first 120 steps
    assert lake.merge_rows(root, "d", later).inserted == 60 * len(HOSTILE)
    stored = lake.read_slice(root, "d", start=DAY0, end=DAY0 + 180 * 60)
    assert stored.digest == rows_digest(later)
    back = rows_block(stored.rows, start=DAY0, end=DAY0 + 179 * 60, step_seconds=60)
    assert sorted(map(str, back.labels)) == sorted(map(str, HOSTILE))


def test_a_stored_row_is_never_overwritten_by_a_later_different_value(tmp_path: Path) -> None:
    root = str(tmp_path)
    original = block_rows("d", block(DAY0, 10, seed=1))
    lake.merge_rows(root, "d", original)
    assert lake.merge_rows(root, "d", block_rows("d", block(DAY0, 10, seed=2))).inserted == 0
    assert lake.read_slice(root, "d", start=DAY0, end=DAY0 + 600).digest == rows_digest(original)


def test_detectors_are_separate_and_slices_are_inclusive_ranges(tmp_path: Path) -> None:
    root = str(tmp_path)
    lake.merge_rows(root, "a", block_rows("a", block(DAY0, 10)))
    lake.merge_rows(root, "b", block_rows("b", block(DAY0, 5)))
    assert lake.read_slice(root, "a", start=DAY0, end=DAY0 + 540).rows.num_rows == 10 * len(HOSTILE)
    assert lake.read_slice(root, "a", start=DAY0 + 60, end=DAY0 + 120).rows.num_rows == 2 * len(HOSTILE)
    assert lake.read_slice(root, "b", start=DAY0, end=DAY0 + 10 * 60).rows.num_rows == 5 * len(HOSTILE)
    assert lake.latest_timestamp(root, "a") == DAY0 + 540
    assert lake.latest_timestamp(root, "nobody") is None


def test_maintenance_drops_old_days_compacts_small_files_and_vacuums(tmp_path: Path) -> None:
    root = str(tmp_path)
    for day in range(3):
        for hour in range(3):  # three small files per day
            lake.merge_rows(root, "d", block_rows("d", block(DAY0 + day * SECONDS_PER_DAY + hour * 3600, 60)))
    before = lake.read_slice(root, "d", start=DAY0 + SECONDS_PER_DAY, end=DAY0 + 3 * SECONDS_PER_DAY)
    done = lake.maintain(
        root, retention_days=1, vacuum_retention_hours=0, now=DAY0 + 2 * SECONDS_PER_DAY + 60
    )
    assert done.dropped_files == 3
    assert done.compacted_files == 3  # day 1's three files (day 2 is "today" and left alone)
    table = lake.open_table(root)
    assert sorted(part["day"] for part in table.partitions()) == ["2024-10-05", "2024-10-06"]
    assert len(table.file_uris()) == 1 + 3
    after = lake.read_slice(root, "d", start=DAY0, end=DAY0 + 3 * SECONDS_PER_DAY)
    assert after.digest == before.digest
    on_disk = list((tmp_path / lake.TABLE_NAME).rglob("*.parquet"))
    assert len(on_disk) == 4  # vacuum removed the dropped and the compacted-away files


def test_reading_before_any_write_names_the_table_and_the_fix(tmp_path: Path) -> None:
    with pytest.raises(lake.LakeError, match=r"no lake table at .*samples.*lake sync"):
        lake.read_slice(str(tmp_path), "d", start=0, end=60)


def test_a_lake_path_that_is_a_file_fails_with_the_path(tmp_path: Path) -> None:
    (tmp_path / "lake").write_text("not a folder")
    with pytest.raises(lake.LakeError, match="lake"):
        lake.merge_rows(str(tmp_path / "lake"), "d", block_rows("d", block(DAY0, 2)))
