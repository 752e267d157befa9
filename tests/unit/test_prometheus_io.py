"""The pure part of the Prometheus query path: the step grid and the alignment of matrix answers.

The HTTP part is tested against a real Prometheus in tests/integration/test_exporter_query_path.py;
here only what needs no server: grid arithmetic, alignment, and the error for an address where
nothing listens (a real refused connection, not a simulated one).
"""

from __future__ import annotations

import socket

import numpy as np
import pytest

from slo_pipeline.adapters.prometheus import (
    TRANSPORTS,
    PrometheusQueryError,
    SeriesBlock,
    align_answer,
    align_matrix,
    fetch_range,
    step_grid,
)
from slo_pipeline.devstack.launch import free_port


def matrix_series(labels: dict[str, str], points: list[tuple[float, str]]) -> dict[str, object]:
    return {"metric": labels, "values": [[t, v] for t, v in points]}


def test_grid_is_anchored_at_multiples_of_the_step() -> None:
    grid = step_grid(1_000_010.0, 1_000_250.5, 60)
    assert grid.tolist() == [1_000_020.0, 1_000_080.0, 1_000_140.0, 1_000_200.0]
    # Two calls inside the same step share every instant: scoring is stable between cycles.
    assert step_grid(1_000_011.0, 1_000_259.0, 60).tolist() == grid.tolist()


def test_grid_includes_both_ends_when_they_are_on_the_step() -> None:
    assert step_grid(120, 300, 60).tolist() == [120.0, 180.0, 240.0, 300.0]


@pytest.mark.parametrize(("start", "end", "step"), [(121, 179, 60), (100, 50, 10), (0, 100, 0), (0, 100, -5)])
def test_grid_refuses_empty_ranges_and_bad_steps(start: float, end: float, step: float) -> None:
    with pytest.raises(ValueError):
        step_grid(start, end, step)


def test_complete_series_fill_their_columns_in_order() -> None:
    grid = step_grid(600, 780, 60)
    result = [
        matrix_series({"__name__": "m", "i": "a"}, [(600, "1"), (660, "2"), (720, "3"), (780, "4")]),
        matrix_series({"__name__": "m", "i": "b"}, [(600, "10"), (660, "20"), (720, "30"), (780, "40")]),
    ]
    block = align_matrix([result], grid)
    assert block.labels == [{"__name__": "m", "i": "a"}, {"__name__": "m", "i": "b"}]
    assert block.values.shape == (4, 2)
    np.testing.assert_array_equal(block.values[:, 0], [1, 2, 3, 4])
    np.testing.assert_array_equal(block.values[:, 1], [10, 20, 30, 40])
    np.testing.assert_array_equal(block.timestamps, grid)


def test_missing_points_become_nan_at_the_right_rows() -> None:
    grid = step_grid(600, 840, 60)
    result = [matrix_series({"i": "gappy"}, [(660, "2"), (840, "5")])]
    block = align_matrix([result], grid)
    np.testing.assert_array_equal(np.isnan(block.values[:, 0]), [True, False, True, True, False])
    assert block.values[1, 0] == 2 and block.values[4, 0] == 5


def test_points_off_the_grid_are_ignored() -> None:
    grid = step_grid(600, 720, 60)
    result = [matrix_series({"i": "x"}, [(600, "1"), (630, "99"), (720, "3"), (9999, "7")])]
    block = align_matrix([result], grid)
    np.testing.assert_array_equal(block.values[:, 0], [1, np.nan, 3])


def test_special_and_unparsable_values_stay_in_their_own_cells() -> None:
    grid = step_grid(0, 180, 60)
    result = [
        matrix_series({"i": "special"}, [(0, "NaN"), (60, "+Inf"), (120, "-Inf"), (180, "1e-3")]),
        matrix_series({"i": "broken"}, [(0, "1"), (60, "not-a-number"), (120, "3"), (180, "4")]),
    ]
    block = align_matrix([result], grid)
    special, broken = block.values[:, 0], block.values[:, 1]
    assert np.isnan(special[0]) and special[1] == np.inf and special[2] == -np.inf and special[3] == 1e-3
    np.testing.assert_array_equal(broken, [1, np.nan, 3, 4])


def test_chunks_are_merged_by_label_set() -> None:
    grid = step_grid(0, 300, 60)
    first_chunk = [matrix_series({"i": "a"}, [(0, "1"), (60, "2"), (120, "3")])]
    second_chunk = [
        matrix_series({"i": "b"}, [(180, "40"), (240, "50")]),
        matrix_series({"i": "a"}, [(180, "4"), (240, "5"), (300, "6")]),
    ]
    block = align_matrix([first_chunk, second_chunk], grid)
    assert block.labels == [{"i": "a"}, {"i": "b"}]
    np.testing.assert_array_equal(block.values[:, 0], [1, 2, 3, 4, 5, 6])
    np.testing.assert_array_equal(block.values[:, 1], [np.nan, np.nan, np.nan, 40, 50, np.nan])


def test_an_empty_answer_is_an_empty_block() -> None:
    grid = step_grid(0, 120, 60)
    block = align_matrix([[]], grid)
    assert block.labels == [] and block.values.shape == (3, 0)


def test_block_refuses_values_that_do_not_match_labels_and_times() -> None:
    with pytest.raises(ValueError, match=r"does not match \[T, N\]"):
        SeriesBlock(labels=[{"i": "a"}], timestamps=np.arange(3.0), values=np.zeros((3, 2)))


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_unreachable_prometheus_raises_an_error_naming_query_and_url(transport: str) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(PrometheusQueryError) as raised:
        fetch_range(url, 'up{job="x"}', start=0, end=600, step_seconds=60, timeout=2, transport=transport)  # type: ignore[arg-type]
    assert url in str(raised.value)
    assert 'up{job="x"}' in str(raised.value)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_server_that_never_answers_times_out_with_context(transport: str) -> None:
    # A listening socket nobody accepts from: the kernel completes the handshake, no reply comes.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        with pytest.raises(PrometheusQueryError, match="could not run query 'up'") as raised:
            fetch_range(url, "up", start=0, end=600, step_seconds=60, timeout=0.3, transport=transport)  # type: ignore[arg-type]
        assert url in str(raised.value)
        # One retry at most (a dropped keep-alive connection), never the library's back-off:
        # every attempt left a connection in the backlog.
        silent.setblocking(False)
        attempts = 0
        while True:
            try:
                connection, _ = silent.accept()
            except BlockingIOError:
                break
            connection.close()
            attempts += 1
        assert 1 <= attempts <= 2, attempts


def test_unknown_transport_and_fractional_step_with_the_api_client_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown transport"):
        fetch_range("http://127.0.0.1:1", "up", start=0, end=60, step_seconds=60, transport="grpc")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="whole-second step"):
        fetch_range("http://127.0.0.1:1", "up", start=0, end=60, step_seconds=0.5)


def test_an_answer_split_into_requests_comes_back_sorted_by_label_set() -> None:
    """Each request's answer is sorted, but a series first seen in a later request would land
    after the others; the exporter's cache needs one sorted order (or it re-fetches everything)."""
    grid = step_grid(0, 180, 60)
    first = [matrix_series({"i": "a"}, [(0, "1"), (60, "2")]), matrix_series({"i": "c"}, [(0, "30")])]
    second = [
        matrix_series({"i": "a"}, [(120, "3"), (180, "4")]),
        matrix_series({"i": "b"}, [(120, "20"), (180, "21")]),
        matrix_series({"i": "c"}, [(180, "31")]),
    ]
    answer = align_answer([first, second], grid)
    assert answer.block.labels == [{"i": "a"}, {"i": "b"}, {"i": "c"}]
    assert answer.keys == [(("i", "a"),), (("i", "b"),), (("i", "c"),)]
    np.testing.assert_array_equal(answer.block.values[:, 1], [np.nan, np.nan, 20, 21])
    np.testing.assert_array_equal(answer.block.values[:, 2], [30, np.nan, np.nan, 31])
    np.testing.assert_array_equal(answer.present[:, 2], [True, False, False, True])
