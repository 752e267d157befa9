"""Mode (b) of the backtest without a server: times, chunked fetching, labels per series, rows."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import requests

from slo_pipeline.adapters.prometheus import MAX_POINTS_PER_QUERY, PrometheusQueryError, SeriesBlock
from slo_pipeline.offline.backtest import prometheus_range as pr
from slo_pipeline.offline.backtest.io import InputError, SeriesFile
from slo_pipeline.offline.backtest.report import series_rows
from slo_pipeline.offline.backtest.run import BacktestOutcome
from slo_pipeline.offline.evaluation.labels import LabelError

NOW = 1_700_000_000.0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1700000000", 1_700_000_000.0),
        ("1699999999.5", 1_699_999_999.5),
        ("2023-11-14T22:13:20Z", NOW),
        ("2023-11-15T00:13:20+02:00", NOW),
        ("2023-11-14T22:13:20", NOW),  # no offset: UTC, never the machine's zone
        ("2023-11-14 22:13:20", NOW),
        ("now", NOW),
        ("now-7d", NOW - 7 * 86400),
        ("now - 1h30m", NOW - 5400),
        ("now+15m", NOW + 900),
        ("now-500ms", NOW - 0.5),
    ],
)
def test_times_parse_rfc3339_unix_and_relative(text: str, expected: float) -> None:
    assert pr.parse_time(text, now=NOW) == pytest.approx(expected)


@pytest.mark.parametrize("text", ["yesterday", "now-7x", "now-", "2024-13-01", "nan", "inf", ""])
def test_bad_times_name_the_text(text: str) -> None:
    with pytest.raises(InputError, match="not a"):
        pr.parse_time(text, now=NOW)


def test_selector_quotes_label_values_like_promql() -> None:
    labels = {"__name__": "http_latency", "route": 'a"b\\c', "code": "200"}
    assert pr.series_selector(labels) == 'http_latency{code="200",route="a\\"b\\\\c"}'
    assert pr.series_selector({"route": "x"}) == '{route="x"}'


def _fake_prometheus(step: int, late_from: float) -> tuple[pr.ChunkFetcher, list[tuple[float, float]]]:
    """Series `a` always, `b` only from `late_from` on; value = timestamp (+1 for b)."""
    calls: list[tuple[float, float]] = []

    def fetch(start: float, end: float) -> SeriesBlock:
        calls.append((start, end))
        grid = np.arange(start, end + 1, step, dtype=np.float64)
        labels = [{"__name__": "m", "s": "a"}]
        columns = [grid]
        if end >= late_from:
            labels.insert(0, {"__name__": "m", "s": "b"})  # another order than the first chunk
            columns.insert(0, np.where(grid >= late_from, grid + 1, np.nan))
        return SeriesBlock(labels=labels, timestamps=grid, values=np.stack(columns, axis=1))

    return fetch, calls


def test_long_ranges_are_fetched_in_contiguous_chunks_and_merged_by_label_set() -> None:
    step, n_steps = 60, 2 * pr.FIRST_CHUNK_STEPS + 10
    start = 1_000_000 * step
    late_from = start + (pr.FIRST_CHUNK_STEPS + 5) * step
    fetch, calls = _fake_prometheus(step, late_from)
    seen: list[tuple[int, int]] = []
    result = pr.fetch_series(
        fetch,
        name="det",
        source="query 'm'",
        start=start - 30,  # off the grid: the first instant is the next multiple of the step
        end=start + (n_steps - 1) * step,
        step_seconds=step,
        progress=lambda done, total: seen.append((done, total)),
    )
    # First chunk short (the number of series is unknown), then large; no gap, no overlap.
    assert calls[0] == (start, start + (pr.FIRST_CHUNK_STEPS - 1) * step)
    assert all(b[0] == a[1] + step for a, b in itertools.pairwise(calls))
    assert calls[-1][1] == start + (n_steps - 1) * step
    assert seen[-1] == (n_steps, n_steps)
    grid = start + step * np.arange(n_steps, dtype=np.float64)
    assert result.series.columns == ['m{s="a"}', 'm{s="b"}']
    assert result.labels == [{"__name__": "m", "s": "a"}, {"__name__": "m", "s": "b"}]
    np.testing.assert_array_equal(result.series.values[:, 0], grid)
    np.testing.assert_array_equal(result.series.values[:, 1], np.where(grid >= late_from, grid + 1, np.nan))
    np.testing.assert_array_equal(result.series.epoch_seconds, grid)


def test_chunks_shrink_with_the_number_of_series_within_prometheus_limit() -> None:
    assert pr.chunk_steps(1) == MAX_POINTS_PER_QUERY
    assert pr.chunk_steps(10_000) == pr.POINTS_PER_REQUEST // 10_000
    assert pr.chunk_steps(10**9) == 1


def test_a_query_without_series_and_an_empty_range_are_input_errors() -> None:
    def nothing(start: float, end: float) -> SeriesBlock:
        grid = np.arange(start, end + 1, 60, dtype=np.float64)
        return SeriesBlock(labels=[], timestamps=grid, values=np.empty((len(grid), 0)))

    with pytest.raises(InputError, match="query 'up' returned no series between 2023-11-14T"):
        pr.fetch_series(nothing, name="d", source="query 'up'", start=NOW - 3600, end=NOW, step_seconds=60)
    with pytest.raises(InputError, match="range is empty"):
        pr.fetch_series(nothing, name="d", source="q", start=NOW, end=NOW - 60, step_seconds=60)


def _query_error(cause: Exception) -> PrometheusQueryError:
    try:
        raise PrometheusQueryError(
            f"could not run query 'up' against Prometheus at 'http://x': {cause}"
        ) from cause
    except PrometheusQueryError as err:
        return err


def test_query_errors_become_one_line_naming_url_and_query() -> None:
    refused = requests.ConnectionError(
        "HTTPConnectionPool(host='127.0.0.1', port=1): Max retries exceeded with url: /api/v1/query_range?"
        'query=up (Caused by NewConnectionError("...: Failed to establish a new connection: '
        '[Errno 111] Connection refused"))'
    )
    text = pr.describe_query_error(_query_error(refused), url="http://x", query="up", timeout=60)
    assert text == "cannot reach Prometheus at 'http://x' to run query 'up': Connection refused"
    slow = pr.describe_query_error(
        _query_error(requests.ReadTimeout("t")), url="http://x", query="up", timeout=60
    )
    assert slow == "Prometheus at 'http://x' did not answer query 'up' within 60s"
    rejected = PrometheusQueryError("Prometheus at 'http://x' rejected query 'sum((':\nHTTP 400: parse error")
    assert "\n" not in pr.describe_query_error(rejected, url="http://x", query="sum((", timeout=60)


T = pd.Timestamp
LABELS = [{"__name__": "lat", "route": "a"}, {"__name__": "lat", "route": "b"}, {"route": "c"}]


def test_label_keys_select_series_of_the_detector() -> None:
    windows = {
        "det": [(T("2024-01-01 10:00"), T("2024-01-01 11:00"))],  # every series
        'det{route="a"}': [(T("2024-01-02T00:00:00+02:00"), T("2024-01-02T01:00:00+02:00"))],
        '{__name__="lat", route="b"}': [(T("2024-01-03"), T("2024-01-03 01:00"))],
        'other{route="a"}': [(T("2024-01-04"), T("2024-01-04 01:00"))],  # another detector
        "realAWSCloudwatch/x.csv": [(T("2024-01-05"), T("2024-01-05 01:00"))],
    }
    a, b, c = pr.windows_for_series(windows, "det", LABELS)
    # Times with an offset become naive UTC, like the rows' timestamps.
    assert a == [
        (T("2024-01-01 10:00"), T("2024-01-01 11:00")),
        (T("2024-01-01 22:00"), T("2024-01-01 23:00")),
    ]
    assert b == [(T("2024-01-01 10:00"), T("2024-01-01 11:00")), (T("2024-01-03"), T("2024-01-03 01:00"))]
    assert c == [(T("2024-01-01 10:00"), T("2024-01-01 11:00"))]


def test_overlapping_windows_of_several_keys_are_merged() -> None:
    windows = {
        'det{route="a"}': [(T("2024-01-01 10:00"), T("2024-01-01 11:00"))],
        "{}": [(T("2024-01-01 10:30"), T("2024-01-01 12:00"))],
    }
    a, b, _ = pr.windows_for_series(windows, "det", LABELS)
    assert a == [(T("2024-01-01 10:00"), T("2024-01-01 12:00"))]
    assert b == [(T("2024-01-01 10:30"), T("2024-01-01 12:00"))]


def test_labels_for_another_detector_or_bad_selectors_are_errors() -> None:
    with pytest.raises(LabelError, match="no entry for detector 'det'"):
        pr.windows_for_series({"other": [], "a/b.csv": []}, "det", LABELS)
    with pytest.raises(LabelError, match='only label="value" matchers'):
        pr.windows_for_series({'det{route=~"a.*"}': []}, "det", LABELS)


def test_series_rows_have_one_row_per_step_per_series_with_labels() -> None:
    timestamps = pd.date_range("2024-01-01", periods=3, freq="60s")
    values = np.array([[1.0, 10.0], [2.0, np.nan], [3.0, 30.0]])
    series = SeriesFile(path=Path("det"), timestamps=timestamps, columns=["x{a}", "x{b}"], values=values)
    probability = np.array([[np.nan, np.nan], [0.5, np.nan], [0.001, 0.2]])
    outcome = BacktestOutcome(
        tail_probability=probability,
        anomaly_score=np.where(np.isfinite(probability), 0.7, np.nan),
        firing=np.zeros((3, 2), dtype=bool),
        alarm=np.array([[False, False], [False, False], [True, False]]),
        models_trained=1,
    )
    labels = [{"__name__": "x", "route": "a", "value": "v"}, {"__name__": "x", "route": "b"}]
    frame = series_rows(series, labels, outcome)
    assert list(frame.columns) == [
        "timestamp",
        "series",
        "__name__",
        "route",
        "label_value",  # a label may not shadow a result column
        "value",
        "anomaly_score",
        "anomaly_tail_probability",
        "alarm",
        "firing",
        "scored",
    ]
    assert frame["series"].tolist() == ["x{a}"] * 3 + ["x{b}"] * 3
    assert frame["timestamp"].tolist()[:3] == [
        "2024-01-01T00:00:00Z",
        "2024-01-01T00:01:00Z",
        "2024-01-01T00:02:00Z",
    ]
    assert frame["label_value"].tolist() == ["v"] * 3 + [""] * 3
    np.testing.assert_array_equal(frame["value"], [1, 2, 3, 10, np.nan, 30])
    assert frame["anomaly_tail_probability"].tolist() == [1.0, 0.5, 0.001, 1.0, 1.0, 0.2]
    assert frame["scored"].tolist() == [0, 1, 1, 0, 0, 1]
    assert frame["alarm"].tolist() == [0, 0, 1, 0, 0, 0]
