"""Read metric ranges from any Prometheus-API backend into a time-major matrix.

One batched `query_range` per detector returns every series it watches; the answer is aligned
onto a step grid that is anchored at multiples of the step (not at "now"), so two calls in the
same step see the same instants and training, backtesting and scoring share one time axis.

Two transports produce identical blocks (tested against a real Prometheus):
- `prometheus-api-client` (the default the design asks for): `PrometheusConnect.custom_query_range`.
- `direct`: requests + orjson against `/api/v1/query_range`, decoding with orjson instead of the
  stdlib `json` behind `requests.Response.json()`.
Both ask for `Accept-Encoding: identity`: on loopback or a LAN, gzip costs Prometheus and us far
more CPU than the bytes it saves (measured: 10k series x 182 steps, 41 MB, HTTP 3.3 s with gzip
vs 0.55 s without). `benchmarks/bench_exporter.py` measures both transports stage by stage.

The pure part (`step_grid`, `align_matrix`) is separate from the HTTP part so it can be tested
without a server.
"""

from __future__ import annotations

import gc
import json
import math
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import pairwise
from typing import Any, Literal

import numpy as np

from slo_pipeline.adapters.prometheus_connection import PrometheusAuthError as PrometheusAuthError
from slo_pipeline.adapters.prometheus_connection import PrometheusQueryError as PrometheusQueryError
from slo_pipeline.adapters.prometheus_connection import (
    as_connection,
    prometheus_session,
    raise_for_auth,
    reason_of,
    redact_url,
)
from slo_pipeline.settings import DetectorConfig, PrometheusConnection

Transport = Literal["prometheus-api-client", "direct"]
TRANSPORTS: tuple[Transport, ...] = ("prometheus-api-client", "direct")
DEFAULT_TRANSPORT: Transport = "prometheus-api-client"

# Prometheus refuses a range query that would return more than 11,000 points per series;
# longer ranges (e.g. 14 days of training history at 60 s) are fetched in chunks below that.
MAX_POINTS_PER_QUERY = 10_000
# Grid instants come back as JSON numbers with millisecond precision.
_TIMESTAMP_TOLERANCE_SECONDS = 1e-3


# (query, start, end, step_seconds) -> the `result` list of one matrix answer
ChunkFetcher = Callable[[str, float, float, float], list[dict[str, Any]]]


@dataclass(frozen=True)
class SeriesBlock:
    labels: list[dict[str, str]]  # one label set per column, as Prometheus returned it
    timestamps: np.ndarray  # [T] unix seconds on the step grid
    values: np.ndarray  # [T, N] float64 ([T, N, K] with K signals), NaN where there is no sample
    signals: tuple[str, ...] = ()  # names of the K signals of a multivariate block

    def __post_init__(self) -> None:
        expected: tuple[int, ...] = (len(self.timestamps), len(self.labels))
        if self.signals:
            expected = (*expected, len(self.signals))
        if self.values.shape != expected:
            layout = "[T, N, K]" if self.signals else "[T, N]"
            raise ValueError(f"values shape {self.values.shape} does not match {layout} = {expected}")

    @property
    def n_series(self) -> int:
        return len(self.labels)


def series_keys(labels: Sequence[Mapping[str, str]]) -> list[str]:
    """Stable identity of each series across queries and trainings: its labels as sorted JSON.

    Per-series state that outlives one query (feedback thresholds, data-lake rows) is keyed by it.
    """
    return [json.dumps(dict(label_set), sort_keys=True) for label_set in labels]


def step_grid(start: float, end: float, step_seconds: float) -> np.ndarray:
    """Multiples of `step_seconds` in `[start, end]`; raises when the range holds none."""
    if not step_seconds > 0 or not math.isfinite(step_seconds):
        raise ValueError(f"step_seconds must be a positive number, got {step_seconds}")
    first = math.ceil(start / step_seconds - 1e-9)
    last = math.floor(end / step_seconds + 1e-9)
    if last < first:
        raise ValueError(f"range [{start}, {end}] contains no multiple of the step {step_seconds}s")
    return np.arange(first, last + 1, dtype=np.float64) * step_seconds


def align_matrix(results: Iterable[Sequence[Mapping[str, Any]]], timestamps: np.ndarray) -> SeriesBlock:
    """Place Prometheus `matrix` results (one list per query chunk) onto the grid `timestamps`.

    Series are matched across chunks by their full label set, so a series present in only some
    chunks gets NaN elsewhere; an answer of several chunks comes back sorted by label set. Points
    off the grid are ignored; values Prometheus sends as "NaN"/"+Inf"/"-Inf" keep their float
    meaning (features treat them as gaps), and a value that is not a number at all becomes NaN
    without touching other points.
    """
    return align_answer(results, timestamps).block


def _on_grid(point_time: Any, grid_time: float) -> bool:
    try:
        return abs(float(point_time) - grid_time) <= _TIMESTAMP_TOLERANCE_SECONDS
    except (TypeError, ValueError):
        return False


def _grid_rows(points: Sequence[Sequence[Any]], timestamps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row index of every point on the grid, and which points really sit on a grid instant."""
    point_times = np.array([_to_float(point[0]) for point in points], dtype=np.float64)
    step = float(timestamps[1] - timestamps[0]) if len(timestamps) > 1 else 1.0
    with np.errstate(invalid="ignore"):
        rows = np.rint((point_times - timestamps[0]) / step)
    usable = np.isfinite(rows) & (rows >= 0) & (rows < len(timestamps))
    rows = np.where(usable, rows, 0).astype(np.int64)
    usable &= np.abs(timestamps[rows] - point_times) <= _TIMESTAMP_TOLERANCE_SECONDS
    return rows, usable


def _to_floats(texts: list[Any]) -> np.ndarray:
    try:
        return np.fromiter(map(float, texts), dtype=np.float64, count=len(texts))
    except (TypeError, ValueError):
        # One unparsable value (a non-conforming backend) must not cost every other series.
        return np.array([_to_float(text) for text in texts], dtype=np.float64)


def _to_float(text: Any) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return math.nan


def fetch_range(
    prometheus: str | PrometheusConnection,
    query: str,
    *,
    start: float,
    end: float,
    step_seconds: float,
    timeout: float | None = None,
    transport: Transport = DEFAULT_TRANSPORT,
) -> SeriesBlock:
    """All series of `query` over `[start, end]` on the grid of multiples of `step_seconds`.

    Raises `PrometheusQueryError` (naming the query and the URL) when Prometheus cannot be
    reached, times out, or rejects the query; `ValueError` for an empty range or bad step.
    """
    answer = fetch_range_answer(
        prometheus,
        query,
        start=start,
        end=end,
        step_seconds=step_seconds,
        timeout=timeout,
        transport=transport,
    )
    return answer.block


def fetch_detector_range(
    prometheus: str | PrometheusConnection,
    detector: DetectorConfig,
    *,
    start: float,
    end: float,
    timeout: float | None = None,
    transport: Transport = DEFAULT_TRANSPORT,
) -> SeriesBlock:
    """A detector's input over `[start, end]` on its step grid: its query's block, or for a
    multivariate detector every signal's block joined by label set (`join_signals`)."""
    blocks = [
        fetch_range(
            prometheus,
            query,
            start=start,
            end=end,
            step_seconds=detector.step_seconds,
            timeout=timeout,
            transport=transport,
        )
        for _, query in detector.queries
    ]
    if not detector.signals:
        return blocks[0]
    return join_signals(blocks, detector.signal_names)


def join_signals(blocks: Sequence[SeriesBlock], names: Sequence[str]) -> SeriesBlock:
    """Join one block per signal into `[T, N, K]`: a series is its label set without `__name__`.

    Entities are the union over signals, in order of first appearance; an entity a signal lacks
    is NaN there (unscorable until it appears, rather than scored on invented data). Two series
    of one signal with the same entity label set cannot be told apart, so that is an error.
    """
    if len(blocks) != len(names) or not blocks:
        raise ValueError(f"{len(blocks)} blocks for signals {list(names)}")
    timestamps = blocks[0].timestamps
    for name, block in zip(names, blocks, strict=True):
        if not np.array_equal(block.timestamps, timestamps):
            raise ValueError(f"signal {name!r} was fetched on another time grid")
    entities: dict[tuple[tuple[str, str], ...], int] = {}
    placements: list[tuple[int, int, int]] = []  # (signal, column in its block, entity)
    for k, (name, block) in enumerate(zip(names, blocks, strict=True)):
        seen: set[int] = set()
        for column, label_set in enumerate(block.labels):
            key = tuple(sorted((n, v) for n, v in label_set.items() if n != "__name__"))
            entity = entities.setdefault(key, len(entities))
            if entity in seen:
                raise ValueError(
                    f"signal {name!r} returned two series for {dict(key)}: aggregate it "
                    f"(e.g. `sum by (...)`) so that each label set appears once"
                )
            seen.add(entity)
            placements.append((k, column, entity))
    values = np.full((len(timestamps), len(entities), len(names)), np.nan)
    for k, column, entity in placements:
        values[:, entity, k] = blocks[k].values[:, column]
    labels = [dict(key) for key in entities]
    return SeriesBlock(labels=labels, timestamps=timestamps, values=values, signals=tuple(names))


def _chunks(timestamps: np.ndarray, size: int) -> Iterator[np.ndarray]:
    for offset in range(0, len(timestamps), size):
        yield timestamps[offset : offset + size]


def _format_step(step_seconds: float) -> str:
    return str(int(step_seconds)) if step_seconds == int(step_seconds) else repr(float(step_seconds))


def _retry_policy() -> type[Any]:
    """urllib3's Retry, except that a timeout is never retried: a server that did not answer
    within the timeout gets no second one (a black-holed Prometheus would cost twice as long)."""
    from types import TracebackType
    from typing import Self

    from urllib3.connectionpool import ConnectionPool
    from urllib3.exceptions import ConnectTimeoutError, NewConnectionError, ReadTimeoutError
    from urllib3.response import BaseHTTPResponse
    from urllib3.util.retry import Retry

    class RetryUnlessTimedOut(Retry):
        def increment(
            self,
            method: str | None = None,
            url: str | None = None,
            response: BaseHTTPResponse | None = None,
            error: Exception | None = None,
            _pool: ConnectionPool | None = None,
            _stacktrace: TracebackType | None = None,
        ) -> Self:
            timed_out = isinstance(error, (ConnectTimeoutError, ReadTimeoutError))
            # urllib3 files a refused connection under ConnectTimeoutError too: that one is retried.
            if timed_out and not isinstance(error, NewConnectionError):
                # Exhausted: urllib3 raises MaxRetryError, which requests turns into its own error.
                return Retry.increment(self.new(total=0), method, url, response, error, _pool, _stacktrace)
            return super().increment(method, url, response, error, _pool, _stacktrace)

    return RetryUnlessTimedOut


@contextmanager
def _api_client_fetcher(connection: PrometheusConnection) -> Iterator[ChunkFetcher]:
    from prometheus_api_client import PrometheusApiClientException, PrometheusConnect
    from requests import RequestException

    base_url, shown_url = connection.url.rstrip("/"), redact_url(connection.url.rstrip("/"))
    # One retry for a dropped keep-alive connection only; the library's default (3 retries with
    # exponential back-off on 5xx) would stall a whole exporter cycle while Prometheus is down.
    # The session carries the credentials, headers and TLS settings (adapters/prometheus_connection.py).
    client = PrometheusConnect(
        url=base_url,
        session=prometheus_session(connection),
        retry=_retry_policy()(total=1, backoff_factor=0, status_forcelist=(), raise_on_status=False),
        timeout=connection.timeout_seconds,
    )

    def fetch(query: str, start: float, end: float, step_seconds: float) -> list[dict[str, Any]]:
        try:
            return client.custom_query_range(
                query,
                start_time=datetime.fromtimestamp(start, tz=UTC),
                end_time=datetime.fromtimestamp(end, tz=UTC),
                step=_format_step(step_seconds),
            )
        except PrometheusApiClientException as err:
            status = re.search(r"HTTP Status Code (\d+)", str(err))
            if status:
                raise_for_auth(int(status.group(1)), base_url)
            raise PrometheusQueryError(
                f"Prometheus at {shown_url!r} rejected query {query!r}: {_api_client_reason(str(err))}",
                "http_status",
            ) from err
        except RequestException as err:
            raise PrometheusQueryError(
                f"could not run query {query!r} against Prometheus at {shown_url!r}: {_scrub(err, base_url)}",
                reason_of(err),
            ) from err
        except (ValueError, KeyError, TypeError) as err:  # the library could not read the answer
            raise PrometheusQueryError(
                f"could not run query {query!r} against Prometheus at {shown_url!r}: {_scrub(err, base_url)}",
                "bad_answer",
            ) from err

    with client:
        yield fetch


@contextmanager
def _direct_fetcher(connection: PrometheusConnection) -> Iterator[ChunkFetcher]:
    import orjson
    import requests

    base_url, shown_url = connection.url.rstrip("/"), redact_url(connection.url.rstrip("/"))
    session = prometheus_session(connection)
    url = f"{base_url}/api/v1/query_range"

    def fetch(query: str, start: float, end: float, step_seconds: float) -> list[dict[str, Any]]:
        params = {"query": query, "start": repr(start), "end": repr(end), "step": _format_step(step_seconds)}
        try:
            response = session.get(url, params=params, timeout=connection.timeout_seconds)
            raise_for_auth(response.status_code, base_url)
            body = orjson.loads(response.content) if response.content else {}
        except requests.RequestException as err:
            raise PrometheusQueryError(
                f"could not run query {query!r} against Prometheus at {shown_url!r}: {_scrub(err, base_url)}",
                reason_of(err),
            ) from err
        except orjson.JSONDecodeError as err:
            raise PrometheusQueryError(
                f"Prometheus at {shown_url!r} answered query {query!r} with HTTP {response.status_code} "
                f"and a body that is not JSON: {_shorten(response.text)}",
                "http_status" if response.status_code != 200 else "bad_answer",
            ) from err
        if response.status_code != 200 or body.get("status") != "success":
            detail = body.get("error") or _shorten(response.text)
            raise PrometheusQueryError(
                f"Prometheus at {shown_url!r} rejected query {query!r} "
                f"(HTTP {response.status_code}): {detail}",
                "http_status",
            )
        data = body.get("data") or {}
        if data.get("resultType") != "matrix":
            raise PrometheusQueryError(
                f"query {query!r} at {shown_url!r} returned {data.get('resultType')!r}, expected a matrix",
                "bad_answer",
            )
        return data.get("result") or []

    with session:
        yield fetch


def _scrub(err: BaseException, base_url: str) -> str:
    """A transport error's text with the URL's password (urllib3 repeats the URL) redacted."""
    return str(err).replace(base_url, redact_url(base_url))


def _api_client_reason(message: str) -> str:
    """`HTTP Status Code 400 (b'{..."error":"parse error..."}')` -> `HTTP 400: parse error...`."""
    status = re.search(r"HTTP Status Code (\d+)", message)
    reason = re.search(r'"error":"((?:[^"\\]|\\.)*)"', message)
    if status and reason:
        return f"HTTP {status.group(1)}: {reason.group(1)}"
    return _shorten(message)


@contextmanager
def _gc_paused() -> Iterator[None]:
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _shorten(text: str, limit: int = 300) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[:limit] + "..."


# --- answers for an incremental cache (exporter/series_cache.py) --------------------------------

LabelKey = tuple[tuple[str, str], ...]


def label_key(labels: Mapping[str, str]) -> LabelKey:
    """A series' identity inside one query's answer: its label set, sorted by name.

    Comparing two keys as tuples orders them the way Prometheus sorts a range query's result
    (`labels.Compare`: name, then value, pairwise; a prefix sorts first), byte order and code-point
    order being the same for UTF-8.
    """
    return tuple(sorted(labels.items()))


@dataclass(frozen=True)
class RangeAnswer:
    """One query's answer on its grid, with what merging answers needs besides the values.

    `present[t, n]` says whether series n had a point at instant t. That is not the same as a
    finite value: Prometheus answers "NaN" for 0/0 in a ratio, and such a series is in a full
    fetch's answer although every value is NaN. `keys[n]` is `label_key(block.labels[n])`.
    """

    block: SeriesBlock
    present: np.ndarray  # [T, N] bool
    keys: list[LabelKey]


def align_answer(results: Iterable[Sequence[Mapping[str, Any]]], timestamps: np.ndarray) -> RangeAnswer:
    """The aligned block (`align_matrix` is this without the extras) plus which grid instants each
    series had a point at, and its label key.

    One pass places the values and fills the presence mask: the exporter runs this every cycle,
    so the per-series Python work is done once.
    """
    columns: dict[LabelKey, int] = {}
    labels: list[dict[str, str]] = []
    pieces: list[tuple[int, Sequence[Sequence[Any]]]] = []
    requests = 0
    for result in results:
        requests += 1
        for series in result:
            metric = dict(series.get("metric") or {})
            key = label_key(metric)
            column = columns.get(key)
            if column is None:
                column = columns[key] = len(labels)
                labels.append(metric)
            pieces.append((column, series.get("values") or ()))

    n_steps = len(timestamps)
    by_series = np.full((len(labels), n_steps), np.nan)
    present = np.zeros((len(labels), n_steps), dtype=bool)
    if n_steps:
        flat = _to_floats([point[1] for _, points in pieces for point in points])
        offset = 0
        for column, points in pieces:
            count = len(points)
            chunk = flat[offset : offset + count]
            offset += count
            if count == 0:
                continue
            if (
                count == n_steps
                and _on_grid(points[0][0], timestamps[0])
                and _on_grid(points[-1][0], timestamps[-1])
            ):
                by_series[column] = chunk
                present[column] = True
                continue
            rows, usable = _grid_rows(points, timestamps)
            by_series[column, rows[usable]] = chunk[usable]
            present[column, rows[usable]] = True
    keys = list(columns)
    if requests > 1 and not _is_sorted(keys):
        # Each request's answer is sorted, but a window split into several requests lists a series
        # that first appears in a later request after the others: restore one sorted order, so the
        # exporter's cache (which relies on it) does not fall back to full fetches for a week. A
        # single answer is left as the backend sent it: the cache checks that order itself.
        order = sorted(range(len(keys)), key=keys.__getitem__)
        labels, keys = [labels[i] for i in order], [keys[i] for i in order]
        by_series, present = by_series[order], present[order]
    block = SeriesBlock(labels=labels, timestamps=timestamps, values=by_series.T)
    return RangeAnswer(block=block, present=present.T, keys=keys)


def _is_sorted(keys: Sequence[LabelKey]) -> bool:
    return all(before <= after for before, after in pairwise(keys))


def fetch_range_answer(
    prometheus: str | PrometheusConnection,
    query: str,
    *,
    start: float,
    end: float,
    step_seconds: float,
    timeout: float | None = None,
    transport: Transport = DEFAULT_TRANSPORT,
) -> RangeAnswer:
    """`fetch_range`, answering a `RangeAnswer` (same block, plus point presence and label keys).

    Raises like `fetch_range`.
    """
    if transport not in TRANSPORTS:
        raise ValueError(f"unknown transport {transport!r}, expected one of {TRANSPORTS}")
    timestamps = step_grid(start, end, step_seconds)
    if transport == "prometheus-api-client" and step_seconds != int(step_seconds):
        # custom_query_range rounds start/end to whole seconds, which would shift a fractional grid.
        raise ValueError(f"the prometheus-api-client transport needs a whole-second step, got {step_seconds}")
    connection = as_connection(prometheus, timeout)
    open_fetcher = _api_client_fetcher if transport == "prometheus-api-client" else _direct_fetcher
    # Decoding allocates millions of small container objects (one list per point); pausing the
    # cyclic GC meanwhile spares repeated collections that can find nothing to free.
    with open_fetcher(connection) as fetch_chunk, _gc_paused():
        results = [
            fetch_chunk(query, float(chunk[0]), float(chunk[-1]), step_seconds)
            for chunk in _chunks(timestamps, MAX_POINTS_PER_QUERY)
        ]
        return align_answer(results, timestamps)
