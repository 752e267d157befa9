"""Incremental fetching (exporter/series_cache.py): merge logic, fallbacks, and equality with full fetches.

The backend is `FakePrometheus` (tests/unit/fake_prometheus.py): plain-selector evaluation with
lookback, staleness markers and late-visible samples, answered through the real `align_answer`.
The same equality is checked against a real Prometheus in
tests/integration/test_exporter_incremental_fetch.py.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest

from exporter.series_cache import (
    CachedMatrix,
    CacheMergeError,
    CachingSeriesSource,
    UnsortedAnswer,
    incremental_query,
    merge,
)
from slo_pipeline.adapters.prometheus import (
    RangeAnswer,
    SeriesBlock,
    align_answer,
    label_key,
    step_grid,
)
from slo_pipeline.settings import DetectorConfig, FeatureWindows, SignalConfig
from tests.unit.fake_prometheus import STALE, FakePrometheus

STEP = 60
WINDOWS = FeatureWindows(short=2, medium=4, long=8)
LATENCY = DetectorConfig(name="lat", query="lat", step_seconds=STEP, windows=WINDOWS)
SERVICE = DetectorConfig(
    name="svc",
    step_seconds=STEP,
    windows=WINDOWS,
    signals=[SignalConfig(name="lat", query="lat"), SignalConfig(name="err", query="err")],
)
WINDOW = LATENCY.scoring_window_seconds  # 13 steps
T0 = 1_700_000_017.0  # not on the step grid, like a real clock
REREAD = 120.0


def assert_same_block(incremental: SeriesBlock, full: SeriesBlock, context: str = "") -> None:
    assert incremental.labels == full.labels, context
    np.testing.assert_array_equal(incremental.timestamps, full.timestamps, err_msg=context)
    np.testing.assert_array_equal(incremental.values, full.values, err_msg=context)  # NaN == NaN here
    assert incremental.signals == full.signals, context


def random_world(seed: int, span: float, *, max_delay: float, n_series: int = 12) -> FakePrometheus:
    """Series that appear, vanish (with or without a staleness marker), come back, carry NaN and
    Inf values, at different scrape intervals, each sample visible up to `max_delay` late."""
    rng = np.random.default_rng(seed)
    prometheus = FakePrometheus(lookback_seconds=300)
    for metric in ("lat", "err"):
        for i in range(n_series):
            labels = {"__name__": metric, "route": f"/r{i:02d}"}
            if i % 4 == 0:
                labels["zone"] = "a"  # a longer label set sorts after its prefix
            interval = float(rng.choice([30, 60, 90]))
            time = T0 - 3600 + rng.uniform(0, interval)
            born = T0 + rng.uniform(-3600, span)
            on, switch = True, born + rng.exponential(span / 3)
            while time < T0 + span:
                if time >= born:
                    if time >= switch:
                        if on and rng.random() < 0.5:
                            prometheus.add(labels, time, STALE, visible_at=time + rng.uniform(0, max_delay))
                            time += interval
                        on, switch = not on, time + rng.exponential(span / 4)
                    if on:
                        draw = rng.random()
                        value = np.nan if draw < 0.05 else np.inf if draw < 0.06 else rng.normal(1, 0.1)
                        prometheus.add(labels, time, value, visible_at=time + rng.uniform(0, max_delay))
                time += interval
    return prometheus


def cycle_ends(seed: int, n_cycles: int) -> list[float]:
    """Cycle times 60 s apart with jitter, some overruns, and one pause longer than the window."""
    rng = np.random.default_rng(seed + 1000)
    ends, end = [], T0
    for k in range(n_cycles):
        end += STEP + rng.uniform(-5, 5)
        if rng.random() < 0.1:
            end += STEP * int(rng.integers(1, 4))  # overran: skipped slots
        if k == n_cycles // 2:
            end += WINDOW + 300  # the exporter was stopped for a while
        ends.append(end)
    return ends


@pytest.mark.parametrize("detector", [LATENCY, SERVICE], ids=["univariate", "multivariate"])
@pytest.mark.parametrize("seed", range(6))
def test_incremental_blocks_equal_full_fetches_over_many_cycles(detector: DetectorConfig, seed: int) -> None:
    n_cycles = 80
    ends = cycle_ends(seed, n_cycles)
    prometheus = random_world(seed, ends[-1] - T0, max_delay=REREAD - 5)
    cached = CachingSeriesSource(prometheus.answer, reread_seconds=REREAD, full_refresh_seconds=1e9)
    full = CachingSeriesSource(prometheus.answer, incremental=False)
    incremental_cycles = 0
    for k, end in enumerate(ends):
        prometheus.now = end
        block = cached.fetch(detector, start=end - WINDOW, end=end)
        stats = cached.last_fetch(detector.name)
        assert stats is not None
        incremental_cycles += not stats.full
        expected = full.fetch(detector, start=end - WINDOW, end=end)
        assert_same_block(block, expected, f"cycle {k} at {end} ({stats})")
    # Everything but the first cycle, the one after the long pause, and overruns beyond the re-read.
    assert incremental_cycles >= n_cycles * 0.7


def test_a_steady_cycle_asks_for_the_reread_steps_and_the_new_one() -> None:
    prometheus = random_world(0, 3600, max_delay=0)
    source = CachingSeriesSource(prometheus.answer, reread_seconds=REREAD)
    for k in range(3):
        prometheus.now = end = T0 + k * STEP
        source.fetch(LATENCY, start=end - WINDOW, end=end)
    (_, start, end, _) = prometheus.requests[-1]
    previous_end = T0 + STEP
    # 120 s before the previous end, rounded up to the grid: 2 cached instants plus the new one.
    assert start == step_grid(previous_end - REREAD, end, STEP)[0]
    stats = source.last_fetch("lat")
    assert stats is not None and not stats.full and stats.steps == 3


def fetch_reason(
    source: CachingSeriesSource, detector: DetectorConfig, end: float, window: float = WINDOW
) -> str:
    source.fetch(detector, start=end - window, end=end)
    stats = source.last_fetch(detector.name)
    assert stats is not None
    return stats.reason if stats.full else "incremental"


@pytest.fixture
def world() -> FakePrometheus:
    prometheus = random_world(3, 4 * 3600, max_delay=0)
    prometheus.now = T0 + 4 * 3600
    return prometheus


def test_the_first_fetch_is_full_then_incremental(world: FakePrometheus) -> None:
    source = CachingSeriesSource(world.answer)
    assert fetch_reason(source, LATENCY, T0) == "no cached matrix"
    assert fetch_reason(source, LATENCY, T0 + STEP) == "incremental"


def test_a_changed_query_or_step_fetches_the_whole_window(world: FakePrometheus) -> None:
    source = CachingSeriesSource(world.answer)
    fetch_reason(source, LATENCY, T0)
    other_query = LATENCY.model_copy(update={"query": "err"})
    assert fetch_reason(source, other_query, T0 + STEP) == "the detector's queries or step changed"
    other_step = other_query.model_copy(update={"step_seconds": 30})
    assert fetch_reason(source, other_step, T0 + 2 * STEP) == "the detector's queries or step changed"
    assert fetch_reason(source, other_step, T0 + 3 * STEP) == "incremental"


def test_a_longer_window_fetches_the_whole_window(world: FakePrometheus) -> None:
    """A new champion trained with longer windows needs rows the cache never held."""
    source = CachingSeriesSource(world.answer)
    fetch_reason(source, LATENCY, T0)
    longer = WINDOW + 10 * STEP
    assert fetch_reason(source, LATENCY, T0 + STEP, longer) == "the window starts before the cached rows"
    assert fetch_reason(source, LATENCY, T0 + 2 * STEP, longer) == "incremental"
    # A shorter one is served from the cache.
    assert fetch_reason(source, LATENCY, T0 + 3 * STEP) == "incremental"


def test_a_cache_older_than_the_window_is_not_used(world: FakePrometheus) -> None:
    source = CachingSeriesSource(world.answer)
    fetch_reason(source, LATENCY, T0)
    assert fetch_reason(source, LATENCY, T0 + WINDOW + STEP) == "the cache is older than the window"


def test_a_clock_that_went_backwards_fetches_the_whole_window(world: FakePrometheus) -> None:
    source = CachingSeriesSource(world.answer)
    fetch_reason(source, LATENCY, T0)
    assert fetch_reason(source, LATENCY, T0 - 30) == "the clock went backwards"


def test_the_whole_window_is_refetched_periodically(world: FakePrometheus) -> None:
    source = CachingSeriesSource(world.answer, full_refresh_seconds=10 * STEP)
    reasons = [fetch_reason(source, LATENCY, T0 + k * STEP) for k in range(12)]
    assert reasons[0] == "no cached matrix" and reasons[10] == "periodic full refresh"
    assert set(reasons[1:10]) == set(reasons[11:]) == {"incremental"}


def test_after_a_failed_fetch_the_next_one_is_full(world: FakePrometheus) -> None:
    source = CachingSeriesSource(world.answer)
    fetch_reason(source, LATENCY, T0)
    world.failing = True
    with pytest.raises(ConnectionError):
        source.fetch(LATENCY, start=T0 + STEP - WINDOW, end=T0 + STEP)
    world.failing = False
    assert fetch_reason(source, LATENCY, T0 + 2 * STEP) == "the previous fetch failed (ConnectionError)"


def test_an_invalidated_cache_is_not_used(world: FakePrometheus) -> None:
    source = CachingSeriesSource(world.answer)
    fetch_reason(source, LATENCY, T0)
    source.invalidate("lat", "scoring failed")
    assert fetch_reason(source, LATENCY, T0 + STEP) == "scoring failed"


@pytest.mark.parametrize(
    "query",
    ["lat @ end()", "lat @ 1700000000", "rate(lat[5m] offset -1m)", 'lat{route="@"}', "lat OFFSET -5m"],
)
def test_queries_whose_instants_depend_on_the_range_are_always_fetched_whole(query: str) -> None:
    assert not incremental_query(query)
    prometheus = FakePrometheus()
    source = CachingSeriesSource(prometheus.answer)
    detector = LATENCY.model_copy(update={"query": query})
    assert fetch_reason(source, detector, T0) == "no cached matrix"
    assert fetch_reason(source, detector, T0 + STEP) == "its query uses `@` or a negative offset"


def test_ordinary_queries_are_incremental() -> None:
    for query in ["lat", "sum by (route) (rate(x[5m] offset 1h))", "histogram_quantile(0.9, rate(b[5m]))"]:
        assert incremental_query(query), query


def test_a_backend_that_does_not_sort_gets_full_fetches_with_one_warning(
    world: FakePrometheus, caplog: pytest.LogCaptureFixture
) -> None:
    world.reverse_order = True
    source = CachingSeriesSource(world.answer)
    full = CachingSeriesSource(world.answer, incremental=False)
    with caplog.at_level(logging.WARNING, logger="exporter.series_cache"):
        for k in range(3):
            end = T0 + k * STEP
            block = source.fetch(LATENCY, start=end - WINDOW, end=end)
            assert_same_block(block, full.fetch(LATENCY, start=end - WINDOW, end=end))
            stats = source.last_fetch("lat")
            assert stats is not None and stats.full
    assert "not sorted" in stats.reason
    assert len([r for r in caplog.records if "not sorted" in r.getMessage()]) == 1


def test_an_unsorted_incremental_answer_is_replaced_by_a_full_fetch_in_the_same_cycle(
    world: FakePrometheus,
) -> None:
    source = CachingSeriesSource(world.answer)
    source.fetch(LATENCY, start=T0 - WINDOW, end=T0)
    world.reverse_order = True
    block = source.fetch(LATENCY, start=T0 + STEP - WINDOW, end=T0 + STEP)
    stats = source.last_fetch("lat")
    assert stats is not None and stats.full and "not sorted" in stats.reason
    # Two requests this cycle: the incremental one, then the whole window.
    assert [start for _, start, _, _ in world.requests[-2:]][1] == step_grid(T0 + STEP - WINDOW, T0, STEP)[0]
    assert block.n_series > 0


# --- the merge itself ------------------------------------------------------------------------


def answer(grid: np.ndarray, series: dict[str, list[str | None]]) -> RangeAnswer:
    """An answer over `grid`: route -> one value per instant (None = no point there)."""
    results = [
        {
            "metric": {"route": route},
            "values": [[t, v] for t, v in zip(grid.tolist(), values, strict=True) if v is not None],
        }
        for route, values in sorted(series.items())
    ]
    return align_answer([[r for r in results if r["values"]]], grid)


def test_a_vanished_series_stays_while_it_has_a_point_in_the_window_then_leaves() -> None:
    grid = step_grid(0, 4 * STEP, STEP)  # 5 instants
    cached = CachedMatrix.from_answer(
        answer(grid, {"/a": ["1", "1", "1", "1", "1"], "/gone": ["2", "2", "NaN", None, None]})
    )
    # One step later: /gone has no point in the newest 2 instants, but its NaN point at row 2 is
    # still in the window (a full fetch would return it, all NaN but present).
    window = step_grid(STEP, 5 * STEP, STEP)
    merged = merge(cached, answer(window[-2:], {"/a": ["1", "1"]}), window, STEP)
    assert [labels["route"] for labels in merged.labels] == ["/a", "/gone"]
    np.testing.assert_array_equal(merged.values[:, 1], [2, np.nan, np.nan, np.nan, np.nan])
    # Two steps later its last point has left the window: gone, as from a full fetch.
    window = step_grid(3 * STEP, 7 * STEP, STEP)
    merged = merge(merged, answer(window[-2:], {"/a": ["1", "1"]}), window, STEP)
    assert [labels["route"] for labels in merged.labels] == ["/a"]


def test_a_new_series_is_merged_in_label_order_with_no_past() -> None:
    grid = step_grid(0, 2 * STEP, STEP)
    cached = CachedMatrix.from_answer(answer(grid, {"/a": ["1", "1", "1"], "/c": ["3", "3", "3"]}))
    window = step_grid(STEP, 3 * STEP, STEP)
    merged = merge(
        cached, answer(window[-2:], {"/a": ["1", "1"], "/b": [None, "2"], "/c": ["3", "3"]}), window, STEP
    )
    assert [labels["route"] for labels in merged.labels] == ["/a", "/b", "/c"]
    np.testing.assert_array_equal(merged.values, [[1, np.nan, 3], [1, np.nan, 3], [1, 2, 3]])


def test_reread_instants_are_replaced_by_the_new_answer() -> None:
    grid = step_grid(0, 2 * STEP, STEP)
    cached = CachedMatrix.from_answer(answer(grid, {"/a": ["1", "1", "1"], "/late": ["5", "5", "5"]}))
    window = step_grid(STEP, 3 * STEP, STEP)
    # The re-read instant 2*STEP changed (a late sample), and /late got a staleness marker there.
    merged = merge(cached, answer(window[-2:], {"/a": ["7", "8"], "/late": [None, None]}), window, STEP)
    np.testing.assert_array_equal(merged.values, [[1, 5], [7, np.nan], [8, np.nan]])


def test_merge_refuses_answers_that_do_not_fit() -> None:
    grid = step_grid(0, 2 * STEP, STEP)
    cached = CachedMatrix.from_answer(answer(grid, {"/a": ["1", "1", "1"]}))
    window = step_grid(STEP, 3 * STEP, STEP)
    with pytest.raises(CacheMergeError, match="is not the end of the window"):
        merge(cached, answer(window[:2], {"/a": ["1", "1"]}), window, STEP)
    later = step_grid(10 * STEP, 12 * STEP, STEP)
    with pytest.raises(CacheMergeError, match="do not cover"):
        merge(cached, answer(later[-1:], {"/a": ["1"]}), later, STEP)
    unsorted = answer(window[-1:], {"/a": ["1"], "/b": ["1"]})
    unsorted.keys.reverse()
    with pytest.raises(UnsortedAnswer):
        merge(cached, unsorted, window, STEP)


def test_cached_arrays_cannot_be_written_through_the_block(world: FakePrometheus) -> None:
    source = CachingSeriesSource(world.answer)
    block = source.fetch(LATENCY, start=T0 - WINDOW, end=T0)
    with pytest.raises(ValueError, match="read-only"):
        block.values[0, 0] = 1.0


def test_late_samples_beyond_the_reread_window_are_corrected_by_the_periodic_refresh() -> None:
    """The documented bound: data later than `reread_seconds` can differ until the next full fetch."""
    prometheus = FakePrometheus()
    labels = {"__name__": "lat", "route": "/a"}
    for k in range(-20, 40):
        # Every sample becomes visible 200 s late: more than the 120 s re-read.
        prometheus.add(labels, T0 + k * STEP, float(k), visible_at=T0 + k * STEP + 200)
    source = CachingSeriesSource(prometheus.answer, reread_seconds=REREAD, full_refresh_seconds=10 * STEP)
    full = CachingSeriesSource(prometheus.answer, incremental=False)
    differed = []
    for k in range(12):
        prometheus.now = end = T0 + k * STEP + 1
        block = source.fetch(LATENCY, start=end - WINDOW, end=end)
        expected = full.fetch(LATENCY, start=end - WINDOW, end=end)
        differed.append(not np.array_equal(block.values, expected.values, equal_nan=True))
    assert any(differed[1:10]), "the test must produce a difference for the refresh to correct"
    assert not differed[10], "the periodic full fetch re-synchronises"


def test_align_answer_tells_nan_points_from_missing_ones() -> None:
    grid = step_grid(0, 3 * STEP, STEP)
    results = [
        [
            {"metric": {"route": "/a", "__name__": "m"}, "values": [[0, "NaN"], [60, "1"], [180, "+Inf"]]},
            {"metric": {"route": "/b"}, "values": [[0, "2"], [60, "2"], [120, "2"], [180, "2"]]},
        ]
    ]
    aligned = align_answer(results, grid)
    assert aligned.block.labels == [{"route": "/a", "__name__": "m"}, {"route": "/b"}]
    np.testing.assert_array_equal(aligned.block.values[:, 0], [np.nan, 1, np.nan, np.inf])
    np.testing.assert_array_equal(aligned.block.values[:, 1], [2, 2, 2, 2])
    np.testing.assert_array_equal(aligned.present[:, 0], [True, True, False, True])
    assert aligned.present[:, 1].all()
    assert aligned.keys == [label_key({"__name__": "m", "route": "/a"}), label_key({"route": "/b"})]
