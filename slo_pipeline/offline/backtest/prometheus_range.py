"""Mode (b) of the backtest: a detector's series over a time range, read from Prometheus.

- Times: RFC 3339 / ISO 8601 (UTC when no offset is given), unix seconds, `now`, `now-7d`.
- Fetching: the range is cut into chunks on the detector's step grid (the grid `fetch_range` uses
  for training and scoring, so rows are the instants production scores). Chunks keep every
  answer small whatever the number of series, and a terminal can show progress; they are merged
  by label set, so a series that appears mid-range is NaN before it (unscorable, as in production).
- Labels: a NAB-style windows file whose keys select series of the detector, e.g.
  `checkout_latency{route="checkout"}`; see `windows_for_series`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from slo_pipeline.adapters.prometheus import (
    MAX_POINTS_PER_QUERY,
    PrometheusQueryError,
    SeriesBlock,
    step_grid,
)
from slo_pipeline.core import instants
from slo_pipeline.offline.backtest.io import InputError, SeriesFile
from slo_pipeline.offline.evaluation.labels import LabelError

LOG = logging.getLogger(__name__)

# Result points (steps x series) per query_range request once the number of series is known:
# small enough that one answer decodes in about a second, large enough that few requests are made.
POINTS_PER_REQUEST = 1_000_000
# The first request does not know how many series the query returns yet, so it stays about as short
# as an exporter cycle's query (which the same Prometheus answers every minute).
FIRST_CHUNK_STEPS = 240

_SELECTOR = re.compile(r"([a-z][a-z0-9_]*)?\s*\{(.*)\}", re.DOTALL)
_MATCHER = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*(?:,|$)')

# (start, end) on the step grid -> the block of that chunk
ChunkFetcher = Callable[[float, float], SeriesBlock]
Progress = Callable[[int, int], None]
Window = tuple[pd.Timestamp, pd.Timestamp]


@dataclass(frozen=True)
class RangeSeries:
    series: SeriesFile  # columns are the series' selectors, e.g. `http_latency{route="checkout"}`
    labels: list[dict[str, str]]  # the label set of each column, as Prometheus returned it


def parse_duration(text: str) -> float:
    """Prometheus duration (`7d`, `1h30m`, `500ms`) in seconds."""
    try:
        return instants.parse_duration(text)
    except ValueError as err:
        raise InputError(str(err)) from err


def parse_time(text: str, *, now: float) -> float:
    """`core.instants.parse_time`, an `InputError` for text that is not a time."""
    try:
        return instants.parse_time(text, now=now)
    except ValueError as err:
        raise InputError(str(err)) from err


format_time = instants.format_time


def series_selector(labels: Mapping[str, str]) -> str:
    """`metric{a="x",b="y"}`: the series as PromQL would select it, so rows can be told apart."""
    name = labels.get("__name__", "")
    pairs = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(labels.items()) if k != "__name__")
    return f"{name}{{{pairs}}}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def fetch_series(
    fetch: ChunkFetcher,
    *,
    name: str,
    source: str,
    start: float,
    end: float,
    step_seconds: int,
    progress: Progress | None = None,
    allow_empty: bool = False,
) -> RangeSeries:
    """Every series `fetch` returns over `[start, end]`, one row per grid instant of the step.

    `name` names the result (the detector), `source` describes the query in messages. No series
    at all is an error unless `allow_empty` (another source may fill the range).
    """
    if end <= start:
        raise InputError(
            f"the range is empty: --start {format_time(start)} is not before --end {format_time(end)}"
        )
    grid = step_grid(start, end, step_seconds)
    blocks: list[SeriesBlock] = []
    done, size, most_series = 0, FIRST_CHUNK_STEPS, 0
    while done < len(grid):
        chunk = grid[done : done + size]
        block = fetch(float(chunk[0]), float(chunk[-1]))
        blocks.append(block)
        done += len(chunk)
        most_series = max(most_series, block.n_series)
        size = chunk_steps(most_series)
        if progress is not None:
            progress(done, len(grid))
    labels, values = merge_blocks(blocks, grid)
    if not labels and not allow_empty:
        raise InputError(f"{source} returned no series between {format_time(start)} and {format_time(end)}")
    timestamps = pd.DatetimeIndex(pd.to_datetime(grid, unit="s"))
    columns = [series_selector(label_set) for label_set in labels]
    series = SeriesFile(path=Path(name), timestamps=timestamps, columns=columns, values=values)
    return RangeSeries(series=series, labels=labels)


def chunk_steps(n_series: int) -> int:
    """Steps per request for `n_series` series: about POINTS_PER_REQUEST points, within
    Prometheus' limit of points per series."""
    return max(1, min(MAX_POINTS_PER_QUERY, POINTS_PER_REQUEST // max(1, n_series)))


def merge_blocks(blocks: Sequence[SeriesBlock], grid: np.ndarray) -> tuple[list[dict[str, str]], np.ndarray]:
    """Label sets (sorted, so the column order does not depend on chunking) and `values[T, N, ...]`."""
    keys = sorted({_label_key(label_set) for block in blocks for label_set in block.labels})
    column = {key: index for index, key in enumerate(keys)}
    trailing = blocks[0].values.shape[2:] if blocks else ()
    values = np.full((len(grid), len(keys), *trailing), np.nan)
    for block in blocks:
        if not block.labels:
            continue
        rows = np.searchsorted(grid, block.timestamps)
        columns = np.asarray([column[_label_key(label_set)] for label_set in block.labels], dtype=np.intp)
        values[np.ix_(rows, columns)] = block.values
    return [dict(key) for key in keys], values


def _label_key(labels: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(labels.items()))


def describe_query_error(err: PrometheusQueryError, *, url: str, query: str, timeout: float) -> str:
    """One line naming the URL and the query; a refused connection without the library noise."""
    import requests

    cause = err.__cause__
    if isinstance(cause, requests.Timeout):
        return f"Prometheus at {url!r} did not answer query {query!r} within {timeout:g}s"
    if isinstance(cause, requests.ConnectionError):
        reason = re.search(r"\[Errno -?\d+\] ([^'\")]+)", str(cause))
        because = reason.group(1).strip() if reason else "connection failed"
        return f"cannot reach Prometheus at {url!r} to run query {query!r}: {because}"
    return " ".join(str(err).split())


def windows_for_series(
    windows: Mapping[str, Sequence[Window]], detector_name: str, labels: Sequence[Mapping[str, str]]
) -> list[list[Window]]:
    """Labelled windows of every series: the union of the entries whose key selects it.

    Keys: `NAME` (every series of detector NAME), `NAME{route="checkout",...}` (series carrying
    all those label values; `__name__` matches the metric name) or `{...}` (any detector). Keys
    for other detectors (or NAB file names) are ignored. A series no key selects has no windows:
    the range is one labelled record, so each of its alarms is a false one. Times without an
    offset are UTC.
    """
    matchers = {key: _key_matcher(key, detector_name) for key in windows}
    relevant = {key: matcher for key, matcher in matchers.items() if matcher is not None}
    if not relevant:
        raise LabelError(
            f"the labels file has no entry for detector {detector_name!r} "
            f'(keys: {detector_name!r}, or {detector_name}{{label="value",...}} for some of its series)'
        )
    selected: list[list[Window]] = [[] for _ in labels]
    for key, matcher in relevant.items():
        hits = [k for k, label_set in enumerate(labels) if matcher.items() <= label_set.items()]
        if not hits:
            LOG.warning("labels entry %r selects none of the %d series", key, len(labels))
        for k in hits:
            selected[k].extend((utc_naive(start), utc_naive(end)) for start, end in windows[key])
    return [_union(found) for found in selected]


def _key_matcher(key: str, detector_name: str) -> dict[str, str] | None:
    """The label values `key` requires, or None when the key is not about this detector."""
    if key == detector_name:
        return {}
    selector = _SELECTOR.fullmatch(key.strip())
    if selector is None:
        return None
    name, body = selector.groups()
    if name is not None and name != detector_name:
        return None
    matcher: dict[str, str] = {}
    position = 0
    while position < len(body.rstrip()):
        pair = _MATCHER.match(body, position)
        if pair is None:
            raise LabelError(f'labels key {key!r}: only label="value" matchers are supported')
        matcher[pair.group(1)] = re.sub(
            r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), pair.group(2)
        )
        position = pair.end()
    return matcher


def utc_naive(moment: pd.Timestamp) -> pd.Timestamp:
    """Series times are naive UTC; a window given with an offset is converted, not mis-compared."""
    return moment.tz_convert("UTC").tz_localize(None) if moment.tzinfo is not None else moment


def _union(windows: list[Window]) -> list[Window]:
    """Overlapping windows from several keys become one: the scorers need disjoint windows."""
    merged: list[Window] = []
    for start, end in sorted(windows):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged
