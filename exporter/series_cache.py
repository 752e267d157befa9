"""Incremental range fetching: keep each detector's last matrix, ask Prometheus only for the newest steps.

A scoring cycle needs the detector's whole window (~190 steps at the default windows) but only
its last step is new. A full `query_range` over the window costs ~1.7 s at 10k series
(docs/benchmarks.md); asking for the last few steps and merging them onto the cached matrix costs
a fraction of that.

Why the merged block is identical to what a full fetch over the same window returns:

- PromQL evaluates every instant of a range query on its own, and our grid is anchored at
  multiples of the step: asking again for an instant gives the same value as long as the samples
  at or before it did not change.
- They do change for a little while. A scrape's samples carry the scrape's start time but are
  visible only once it ends (up to its timeout), a recording rule's samples carry the group's
  evaluation time and are written when the group finishes, and a staleness marker lands at the
  time of the scrape that failed. So every fetch re-reads the instants of the last
  `reread_seconds` before the previous fetch's end, and the new answer replaces them. The default,
  120 s, covers a scrape timeout at a 60 s interval plus a rule group evaluated every minute; at
  the default 60 s step that is 2 re-read steps plus the new one.
- Samples later than that (remote write, federation behind a slow link, a backfill) would leave
  the cache behind, so once per `full_refresh_seconds` (default 1 h, ~1 % of the cycles) the whole
  window is fetched again, which bounds how long such a difference can last.
- Series are matched by label set and ordered as Prometheus orders a range query's result
  (sorted by label set). Every answer is checked; a backend whose answers are not sorted gets
  full fetches, since the place of a series in a full answer could not be reproduced otherwise.
- A series absent from the newest answer stays only while it has a point in the rows kept from
  the cache (tracked per instant, since a point may carry NaN, e.g. 0/0 in a ratio): exactly as
  long as a full fetch would return it. Its newest rows are NaN, so it becomes unscorable as soon
  as a full fetch would make it so, and it leaves the matrix when its last point leaves the window.

The whole window is fetched instead when there is no cached matrix, the detector's queries or
step changed, the window starts before the cached rows (a model with longer windows), the cache
is older than the window, the previous fetch (or the scoring of its block) failed, the clock went
backwards, an answer was not sorted, or a query uses `@` or a negative offset (its values then
depend on the query's range, not only on the instant).
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import pairwise

import numpy as np

from slo_pipeline.adapters.prometheus import LabelKey, RangeAnswer, SeriesBlock, join_signals, step_grid
from slo_pipeline.settings import DetectorConfig

log = logging.getLogger(__name__)

DEFAULT_REREAD_SECONDS = 120.0
DEFAULT_FULL_REFRESH_SECONDS = 3600.0

# (query, start, end, step_seconds) -> that query's answer on the grid of [start, end]
AnswerFetcher = Callable[[str, float, float, int], RangeAnswer]

# `@ <time>`, `@ start()`, `@ end()` and negative offsets make an instant's value depend on the
# query's range. '@' anywhere (even inside a label matcher's string) just costs full fetches.
_RANGE_DEPENDENT = re.compile(r"@|\boffset\s*-", re.IGNORECASE)


class CacheMergeError(ValueError):
    """An answer cannot be merged onto the cached matrix; the whole window is fetched instead."""


class UnsortedAnswer(CacheMergeError):
    """The backend did not sort the series by label set, so their order cannot be reproduced."""


def incremental_query(query: str) -> bool:
    """Whether each instant of `query` evaluates the same whatever the range it is asked in."""
    return _RANGE_DEPENDENT.search(query) is None


def check_sorted(keys: Sequence[LabelKey]) -> None:
    for before, after in pairwise(keys):
        if not before < after:
            raise UnsortedAnswer(
                f"series {dict(after)} came after {dict(before)}: the answer is not sorted by label set"
            )


def _read_only(array: np.ndarray) -> np.ndarray:
    # The model gets views of the cached arrays; writing into them would corrupt the next cycle's
    # block silently, so it raises instead.
    array.flags.writeable = False
    return array


@dataclass(frozen=True)
class CachedMatrix:
    """One query's matrix over the last window: values plus which instants had a point."""

    keys: list[LabelKey]  # sorted, one per column
    labels: list[dict[str, str]]
    timestamps: np.ndarray  # [T] the grid
    values: np.ndarray  # [T, N] read-only
    present: np.ndarray  # [T, N] bool, read-only

    @classmethod
    def from_answer(cls, answer: RangeAnswer) -> CachedMatrix:
        block = answer.block
        return cls(
            keys=list(answer.keys),
            labels=list(block.labels),
            timestamps=block.timestamps,
            values=_read_only(block.values),
            present=_read_only(answer.present),
        )

    def block(self) -> SeriesBlock:
        return SeriesBlock(labels=list(self.labels), timestamps=self.timestamps, values=self.values)


def _span(timestamps: np.ndarray) -> str:
    if len(timestamps) == 0:
        return "[]"
    return f"[{timestamps[0]:.0f} .. {timestamps[-1]:.0f}] ({len(timestamps)} instants)"


def _first_kept_row(cached: np.ndarray, kept: np.ndarray, step: float) -> int:
    """Row of `cached` where the instants `kept` start; raises when the cache does not hold them."""
    if len(kept) == 0:
        return 0
    first = round((kept[0] - cached[0]) / step) if len(cached) else -1
    if first < 0 or not np.array_equal(cached[first : first + len(kept)], kept):
        raise CacheMergeError(f"the cached rows {_span(cached)} do not cover {_span(kept)}")
    return first


def merge(cached: CachedMatrix, answer: RangeAnswer, window: np.ndarray, step: float) -> CachedMatrix:
    """The matrix over `window`: cached rows before the answer's grid, the answer from there on.

    `answer` must cover the end of `window` (its grid is `window[k:]`) and `cached` the rows
    before it. A cached series without a point in the kept rows is dropped; series are ordered
    by label key, as Prometheus orders them. Raises `CacheMergeError` when an invariant fails.
    """
    fetched = answer.block.timestamps
    n_kept = len(window) - len(fetched)
    if n_kept < 0 or not np.array_equal(fetched, window[n_kept:]):
        raise CacheMergeError(
            f"the answer's grid {_span(fetched)} is not the end of the window {_span(window)}"
        )
    check_sorted(answer.keys)
    first = _first_kept_row(cached.timestamps, window[:n_kept], step)
    kept_values = cached.values[first : first + n_kept]
    kept_present = cached.present[first : first + n_kept]
    alive = np.flatnonzero(kept_present.any(axis=0))
    kept_keys = [cached.keys[column] for column in alive.tolist()]

    if kept_keys == answer.keys:
        # Steady state: the same series as last cycle, in the same order.
        everyone = len(alive) == len(cached.keys)
        values = np.concatenate([kept_values if everyone else kept_values[:, alive], answer.block.values])
        present = np.concatenate([kept_present if everyone else kept_present[:, alive], answer.present])
        return CachedMatrix(
            keys=list(answer.keys),
            labels=list(answer.block.labels),
            timestamps=window,
            values=_read_only(values),
            present=_read_only(present),
        )

    # Both key lists are sorted: timsort merges the two runs in linear time; then drop the series
    # that are in both (adjacent after the sort, kept once by dict.fromkeys).
    keys = list(dict.fromkeys(sorted(kept_keys + answer.keys)))
    position = {key: column for column, key in enumerate(keys)}
    from_cache = np.array([position[key] for key in kept_keys], dtype=np.intp)
    from_answer = np.array([position[key] for key in answer.keys], dtype=np.intp)
    values = np.full((len(window), len(keys)), np.nan)
    present = np.zeros((len(window), len(keys)), dtype=bool)
    values[:n_kept, from_cache] = kept_values[:, alive]
    present[:n_kept, from_cache] = kept_present[:, alive]
    values[n_kept:, from_answer] = answer.block.values
    present[n_kept:, from_answer] = answer.present
    labels_by_key = dict(zip(kept_keys, [cached.labels[column] for column in alive.tolist()], strict=True))
    labels_by_key.update(zip(answer.keys, answer.block.labels, strict=True))
    return CachedMatrix(
        keys=keys,
        labels=[labels_by_key[key] for key in keys],
        timestamps=window,
        values=_read_only(values),
        present=_read_only(present),
    )


@dataclass(frozen=True)
class DetectorCache:
    """What was fetched for one detector: one matrix per query, all on one grid."""

    queries: tuple[tuple[str, str], ...]
    step: int
    fetched_until: float  # `end` of the last fetch
    full_fetch_until: float  # `end` of the last full fetch
    matrices: tuple[CachedMatrix, ...]


@dataclass(frozen=True)
class FetchPlan:
    start: float | None  # first grid instant to ask for; None = the whole window
    reason: str = ""  # why the whole window


def plan_fetch(
    cache: DetectorCache | None,
    detector: DetectorConfig,
    window: np.ndarray,
    end: float,
    *,
    reread_seconds: float,
    full_refresh_seconds: float,
) -> FetchPlan:
    """Where this cycle's fetch starts: after the rows the cache can keep, or the whole window."""
    if cache is None:
        return FetchPlan(None, "no cached matrix")
    if cache.queries != detector.queries or cache.step != detector.step_seconds:
        return FetchPlan(None, "the detector's queries or step changed")
    if not all(incremental_query(query) for _, query in detector.queries):
        return FetchPlan(None, "its query uses `@` or a negative offset")
    if end < cache.fetched_until:
        return FetchPlan(None, "the clock went backwards")
    if end - cache.full_fetch_until >= full_refresh_seconds:
        return FetchPlan(None, "periodic full refresh")
    cached = cache.matrices[0].timestamps
    if len(cached) == 0 or window[0] < cached[0]:
        return FetchPlan(None, "the window starts before the cached rows")
    step = detector.step_seconds
    reread_from = math.ceil((cache.fetched_until - reread_seconds) / step - 1e-9) * step
    # The newest instant is always asked for, even when no new one began since the last fetch.
    start = min(max(float(reread_from), float(window[0])), float(window[-1]))
    if start <= window[0]:
        return FetchPlan(None, "the cache is older than the window")
    if start > cached[-1] + step:
        return FetchPlan(None, "the cached rows end before the instants to re-read")
    return FetchPlan(start)


@dataclass(frozen=True)
class FetchStats:
    """What one detector's last fetch asked Prometheus for."""

    full: bool
    reason: str  # why the whole window was fetched; "" for an incremental fetch
    steps: int  # grid instants asked for, per query


class CachingSeriesSource:
    """A `SeriesSource` that fetches only the newest steps once it holds a detector's matrix.

    `fetch_answer` runs one query over a range (Prometheus in production, a fake in unit tests).
    `incremental=False` fetches the whole window every time (the v1 behaviour, for comparisons).
    """

    def __init__(
        self,
        fetch_answer: AnswerFetcher,
        *,
        reread_seconds: float = DEFAULT_REREAD_SECONDS,
        full_refresh_seconds: float = DEFAULT_FULL_REFRESH_SECONDS,
        incremental: bool = True,
    ) -> None:
        if reread_seconds < 0 or full_refresh_seconds <= 0:
            raise ValueError(
                f"need reread_seconds >= 0 and full_refresh_seconds > 0, got {reread_seconds} and "
                f"{full_refresh_seconds}"
            )
        self._fetch_answer = fetch_answer
        self._reread_seconds = reread_seconds
        self._full_refresh_seconds = full_refresh_seconds
        self._incremental = incremental
        self._caches: dict[str, DetectorCache] = {}
        self._invalidated: dict[str, str] = {}  # detector -> why its cache was dropped
        self._stats: dict[str, FetchStats] = {}
        self._warned_unsorted: set[str] = set()

    def fetch(self, detector: DetectorConfig, *, start: float, end: float) -> SeriesBlock:
        name = detector.name
        window = step_grid(start, end, detector.step_seconds)
        # Taken out for the duration: whatever fails below leaves no cache behind.
        cache = self._caches.pop(name, None)
        try:
            matrices, stats = self._fetch_matrices(detector, cache, window, end)
        except BaseException as err:
            self._invalidated[name] = f"the previous fetch failed ({type(err).__name__})"
            raise
        self._stats[name] = stats
        full_fetch_until = end if stats.full or cache is None else cache.full_fetch_until
        if self._incremental and self._remember(detector, matrices):
            self._caches[name] = DetectorCache(
                detector.queries, detector.step_seconds, end, full_fetch_until, matrices
            )
        blocks = [matrix.block() for matrix in matrices]
        return join_signals(blocks, detector.signal_names) if detector.signals else blocks[0]

    def invalidate(self, detector_name: str, reason: str) -> None:
        """Forget the detector's matrix: its next fetch asks for the whole window."""
        if self._caches.pop(detector_name, None) is not None:
            self._invalidated[detector_name] = reason

    def last_fetch(self, detector_name: str) -> FetchStats | None:
        return self._stats.get(detector_name)

    def _fetch_matrices(
        self, detector: DetectorConfig, cache: DetectorCache | None, window: np.ndarray, end: float
    ) -> tuple[tuple[CachedMatrix, ...], FetchStats]:
        name, step = detector.name, detector.step_seconds
        if not self._incremental:
            plan = FetchPlan(None, "incremental fetching is off")
        else:
            plan = plan_fetch(
                cache,
                detector,
                window,
                end,
                reread_seconds=self._reread_seconds,
                full_refresh_seconds=self._full_refresh_seconds,
            )
        reason = plan.reason
        if cache is None and name in self._invalidated:
            reason = self._invalidated.pop(name)
        if plan.start is not None and cache is not None:
            answers = [self._fetch_answer(query, plan.start, end, step) for _, query in detector.queries]
            try:
                matrices = tuple(
                    merge(matrix, answer, window, step)
                    for matrix, answer in zip(cache.matrices, answers, strict=True)
                )
                return matrices, FetchStats(full=False, reason="", steps=len(answers[0].block.timestamps))
            except CacheMergeError as err:
                reason = f"the newest steps could not be merged: {err}"
                if not isinstance(err, UnsortedAnswer):
                    log.error("detector %r: %s; fetching the whole window", name, reason)
        log.debug("detector %r: fetching the whole window: %s", name, reason)
        answers = [self._fetch_answer(query, float(window[0]), end, step) for _, query in detector.queries]
        matrices = tuple(CachedMatrix.from_answer(answer) for answer in answers)
        return matrices, FetchStats(full=True, reason=reason, steps=len(window))

    def _remember(self, detector: DetectorConfig, matrices: tuple[CachedMatrix, ...]) -> bool:
        """Whether the matrices can seed the next incremental fetch (their series are sorted)."""
        try:
            for matrix in matrices:
                check_sorted(matrix.keys)
        except UnsortedAnswer as err:
            self._invalidated[detector.name] = f"the last answer was not sorted ({err})"
            if detector.name not in self._warned_unsorted:
                self._warned_unsorted.add(detector.name)
                log.warning(
                    "detector %r: the backend's answer is not sorted by label set (%s); fetching the "
                    "whole window every cycle",
                    detector.name,
                    err,
                )
            return False
        return True
