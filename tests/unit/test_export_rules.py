"""The rule that puts real exports on a time line: sort, last value per timestamp, gaps filled."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from slo_pipeline.cli import main
from slo_pipeline.core.export_rules import TimelineError, build_timeline
from slo_pipeline.core.scorability import DUPLICATE_TIMESTAMP, UNREADABLE_TIMESTAMP
from slo_pipeline.offline.backtest.io import read_series_csv

MINUTE = 60 * 10**9


def _minutes(*values: float) -> np.ndarray:
    return (np.asarray(values) * MINUTE).astype(np.int64)


def _all_readable(times: np.ndarray) -> np.ndarray:
    return np.ones(len(times), dtype=bool)


def test_a_clean_export_is_taken_as_it_is() -> None:
    times = _minutes(0, 5, 10, 15)
    timeline = build_timeline(times, _all_readable(times))
    np.testing.assert_array_equal(timeline.times_ns, times)
    np.testing.assert_array_equal(timeline.source_row, [0, 1, 2, 3])
    assert timeline.report.clean and timeline.report.summary() == "clean"
    assert timeline.step_ns == 5 * MINUTE


def test_a_clock_stepping_back_keeps_the_last_value_per_timestamp_in_time_order() -> None:
    # 10:00..10:15, then the clock steps back to 10:05 and carries on.
    times = _minutes(0, 5, 10, 15, 5, 10, 15, 20)
    timeline = build_timeline(times, _all_readable(times))
    np.testing.assert_array_equal(timeline.times_ns, _minutes(0, 5, 10, 15, 20))
    # Each repeated timestamp takes the later row of the file.
    np.testing.assert_array_equal(timeline.source_row, [0, 4, 5, 6, 7])
    np.testing.assert_array_equal(timeline.superseded, [False, True, True, True, False, False, False, False])
    assert timeline.report.duplicates == 3
    assert timeline.report.out_of_order == 2  # 10:05 and 10:10 came after 10:15
    values = np.array([1.0, 2, 3, 4, 20, 30, 40, 50])
    np.testing.assert_array_equal(timeline.take(values), [1, 20, 30, 40, 50])


def test_rows_out_of_order_are_sorted_and_results_go_back_to_the_input_rows() -> None:
    times = _minutes(10, 0, 5, 15)
    timeline = build_timeline(times, _all_readable(times))
    np.testing.assert_array_equal(timeline.times_ns, _minutes(0, 5, 10, 15))
    assert timeline.report.out_of_order == 2
    per_sample = np.array([100.0, 105.0, 110.0, 115.0])  # a result per sample, in time order
    np.testing.assert_array_equal(timeline.to_input_rows(per_sample, fill=np.nan), [110, 100, 105, 115])


def test_a_gap_gets_missing_samples_on_the_step_grid() -> None:
    times = _minutes(0, 5, 10, 30, 35)
    timeline = build_timeline(times, _all_readable(times))
    np.testing.assert_array_equal(timeline.times_ns, _minutes(0, 5, 10, 15, 20, 25, 30, 35))
    np.testing.assert_array_equal(timeline.source_row, [0, 1, 2, -1, -1, -1, 3, 4])
    taken = timeline.take(np.arange(5.0))
    assert np.isnan(taken[3:6]).all() and taken[6] == 3.0
    assert (timeline.report.gaps, timeline.report.inserted_rows) == (1, 3)
    np.testing.assert_array_equal(timeline.row_position, [0, 1, 2, 6, 7])


def test_irregular_spacing_is_kept_one_sample_per_row_and_counted() -> None:
    times = _minutes(0, 5, 6, 10, 15, 20)
    timeline = build_timeline(times, _all_readable(times))
    np.testing.assert_array_equal(timeline.times_ns, times)
    assert timeline.report.irregular == 1  # 5 -> 6 is off the 5-minute step by over half a step
    assert timeline.report.gaps == 0


def test_unreadable_timestamps_are_left_out_and_reported() -> None:
    times = _minutes(0, 5, 0, 10)
    readable = np.array([True, True, False, True])
    timeline = build_timeline(times, readable)
    np.testing.assert_array_equal(timeline.source_row, [0, 1, 3])
    assert timeline.row_position[2] == -1 and timeline.report.unreadable_timestamps == 1
    assert timeline.to_input_rows(np.array([1.0, 2.0, 3.0]), fill=-1.0)[2] == -1.0
    assert "1 rows with an unreadable timestamp" in timeline.report.summary()


@pytest.mark.parametrize(
    ("times", "readable", "message"),
    [
        (_minutes(0, 5), np.array([False, False]), "no readable timestamp"),
        (_minutes(5, 5, 5), np.array([True, True, True]), "two distinct"),
    ],
)
def test_what_cannot_be_read_is_refused(times: np.ndarray, readable: np.ndarray, message: str) -> None:
    with pytest.raises(TimelineError, match=message):
        build_timeline(times, readable)


def test_a_stray_far_timestamp_is_refused_instead_of_filling_millions_of_rows() -> None:
    times = _minutes(0, 5, 10, 5 * 10**8)
    with pytest.raises(TimelineError, match="missing samples"):
        build_timeline(times, _all_readable(times))


def test_a_real_export_is_backtested_and_written_back_in_its_own_row_order(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    times = list(pd.date_range("2024-01-01", periods=1500, freq="5min"))
    values = list(10 + np.random.default_rng(0).normal(0, 1, len(times)))
    # The clock steps back an hour at row 1000 (12 timestamps repeat with new values), rows
    # 1200-1230 are missing, two rows are swapped and one timestamp is garbage.
    times = times[:1000] + times[988:1000] + times[1000:1200] + times[1230:]
    values = values[:1000] + [50.0] * 12 + values[1000:1200] + values[1230:]
    text = [t.strftime("%Y-%m-%d %H:%M:%S") for t in times]
    text[500], text[501] = text[501], text[500]
    values[500], values[501] = values[501], values[500]
    text[700] = "not a time"
    source = tmp_path / "export.csv"
    pd.DataFrame({"timestamp": text, "value": values}).to_csv(source, index=False)

    series = read_series_csv(source)
    assert series.timeline is not None
    report = series.timeline.report
    # Out of order: 11 of the repeated hour (its last row equals the latest time so far) + 1 swap.
    assert (report.duplicates, report.out_of_order, report.unreadable_timestamps) == (12, 12, 1)
    # The 30 missing rows, and the slot of the unreadable row (a missing sample, not a false step).
    assert (report.gaps, report.inserted_rows) == (2, 31)
    # The repeated hour holds the later values (the last row per timestamp wins).
    repeated = series.timestamps.get_indexer(pd.DatetimeIndex(times[988:1000]))
    np.testing.assert_array_equal(series.values[repeated, 0], 50.0)

    out = tmp_path / "export.scored.csv"
    assert (
        main(["backtest", "--input", str(source), "--output", str(out), "--n-estimators", "20", "--quiet"])
        == 0
    )
    assert "12 rows with a repeated timestamp (the last one kept)" in capsys.readouterr().err
    scored = pd.read_csv(out, keep_default_na=False)
    assert len(scored) == len(text)
    assert list(scored["timestamp"][[0, 500, 501, 700]]) == [text[0], text[500], text[501], "not a time"]
    np.testing.assert_allclose(scored["value"], values, rtol=1e-5)  # written with 6 digits
    replaced = scored.iloc[988:1000]
    assert set(replaced["reason"]) == {DUPLICATE_TIMESTAMP} and not replaced["scored"].any()
    assert scored["reason"][700] == UNREADABLE_TIMESTAMP
    assert scored["scored"][1012:1100].all()  # the kept rows of the repeated hour and after


def test_a_file_without_any_readable_time_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "bad.csv"
    pd.DataFrame({"timestamp": ["soon", "later"], "value": [1, 2]}).to_csv(source, index=False)
    assert main(["backtest", "--input", str(source), "--quiet"]) == 2
    assert "no readable timestamp" in capsys.readouterr().err
