"""The data lake: every detector's samples in one Delta Lake table, `<lake>/samples`.

The table is partitioned by `detector` and `day` (hive-style folders,
`samples/detector=NAME/day=YYYY-MM-DD/*.parquet`); its rows are those of `lake_rows`. Delta's
transaction log makes each write one atomic commit, so readers never see half a sync, and two
writers that touch the same data cannot both commit: the loser gets `CommitFailedError`, re-reads
and retries (on S3 the commit is a conditional put, which AWS S3, MinIO and moto support).

`<lake>` is a folder (the default) or an `s3://bucket/prefix` URI; S3 credentials, region and
endpoint come from the usual AWS environment variables (`AWS_ACCESS_KEY_ID`, `AWS_ENDPOINT_URL`,
`AWS_ALLOW_HTTP=true` for a plain-HTTP endpoint, ...), which delta-rs reads itself.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pyarrow as pa
import pyarrow.compute as pc

from slo_pipeline.adapters.lake_rows import MICROSECONDS, PARTITION_COLUMNS, SCHEMA, days_between, rows_digest

log = logging.getLogger(__name__)

TABLE_NAME = "samples"
# Concurrent writers of the same partitions retry after a lost commit; each retry re-reads the
# table, so this bounds the work, not the wait.
MAX_COMMIT_ATTEMPTS = 8
READ_COLUMNS = ["series", "signal", "timestamp", "value"]
# Rows per merge commit: a merge holds its input and the matching target files in memory.
MERGE_BATCH_ROWS = 2_000_000

T = TypeVar("T")


class LakeError(RuntimeError):
    """The lake could not be read or written; the message names the table and the operation."""


@dataclass(frozen=True)
class LakeSlice:
    """One detector's rows over `[start, end]` as of table `version`: what a training run used."""

    table_uri: str
    version: int
    detector: str
    start: float
    end: float
    rows: pa.Table

    @property
    def predicate(self) -> str:
        """The slice as SQL over the table, e.g. for DuckDB's `delta_scan`."""
        return (
            f"detector = '{self.detector}' AND timestamp BETWEEN '{_iso(self.start)}' AND '{_iso(self.end)}'"
        )

    @property
    def digest(self) -> str:
        return rows_digest(self.rows)


def table_uri(lake: str) -> str:
    if "://" in lake:
        return f"{lake.rstrip('/')}/{TABLE_NAME}"
    return str(Path(lake).expanduser().resolve() / TABLE_NAME)


def _storage_options(lake: str) -> dict[str, str] | None:
    if lake.startswith(("s3://", "s3a://")):
        # Commits are put-if-absent on the log entry: the S3 conditional write. Said explicitly
        # so an older default can never fall back to an unsafe rename.
        return {"conditional_put": "etag"}
    return None


def _writer_properties() -> Any:
    from deltalake import ColumnProperties, WriterProperties

    # Measured (docs/lake.md, benchmarks/bench_lake_size.py): rows sorted by series then time make
    # `series` a few dictionary runs and `timestamp` a constant delta. Values get a dictionary
    # (rates of counters take few distinct values: 1.5 bytes instead of 5.3 with byte-stream-split);
    # a column chunk with too many falls back to plain (noisy gauges: 7.5 bytes, where
    # byte-stream-split would give 6.9, but deltalake cannot combine it with a dictionary).
    return WriterProperties(
        compression="ZSTD",
        compression_level=9,
        column_properties={
            "timestamp": ColumnProperties(dictionary_enabled=False, encoding="DELTA_BINARY_PACKED"),
            "value": ColumnProperties(dictionary_enabled=True),
            "series": ColumnProperties(dictionary_enabled=True),
            "signal": ColumnProperties(dictionary_enabled=True),
        },
    )


def open_table(lake: str, *, create: bool = False, version: int | None = None) -> Any:
    """The lake's Delta table; created (empty) when `create` and it does not exist yet."""
    from deltalake import DeltaTable
    from deltalake.exceptions import DeltaError, TableNotFoundError

    uri, options = table_uri(lake), _storage_options(lake)
    try:
        return DeltaTable(uri, version=version, storage_options=options)
    except TableNotFoundError as err:
        if not create:
            raise LakeError(f"no lake table at {uri!r} yet: run `slo-pipeline lake sync` to fill it") from err
    except (DeltaError, OSError) as err:
        raise LakeError(f"could not open the lake table at {uri!r}: {err}") from err
    try:
        if "://" not in uri:
            Path(uri).mkdir(parents=True, exist_ok=True)
        # mode="ignore": a concurrent creator may win; then this opens its table.
        DeltaTable.create(uri, SCHEMA, mode="ignore", partition_by=PARTITION_COLUMNS, storage_options=options)
        return DeltaTable(uri, storage_options=options)
    except (DeltaError, OSError) as err:
        # Two writers creating the table at once: the log's first entry is put-if-absent, so one
        # loses the commit (as "protocol changed"); the winner's table is the one to use.
        try:
            return DeltaTable(uri, storage_options=options)
        except (DeltaError, OSError):
            pass
        raise LakeError(f"could not create the lake table at {uri!r}: {err}") from err


def _with_retries(lake: str, what: str, attempt: Callable[[Any], T]) -> T:
    from deltalake.exceptions import CommitFailedError, DeltaError

    for number in range(1, MAX_COMMIT_ATTEMPTS + 1):
        table = open_table(lake, create=True)
        try:
            return attempt(table)
        except CommitFailedError as err:
            if number == MAX_COMMIT_ATTEMPTS:
                raise LakeError(
                    f"{what} in {table_uri(lake)!r} lost {number} commits to concurrent writers: {err}"
                ) from err
            log.info("%s: a concurrent writer committed first (attempt %d), retrying", what, number)
        except (DeltaError, OSError) as err:
            raise LakeError(f"{what} in {table_uri(lake)!r} failed: {err}") from err
    raise AssertionError("unreachable")


@dataclass(frozen=True)
class MergeResult:
    version: int
    inserted: int


def merge_rows(lake: str, detector: str, rows: pa.Table) -> MergeResult:
    """Insert the rows the lake lacks; rows already there (same series, signal, time) stay.

    Idempotent: merging the same rows twice inserts nothing the second time. Fills gaps: rows
    missing from an earlier sync are inserted when a later one brings them. Large inputs are
    merged in slices of MERGE_BATCH_ROWS (one commit each) to bound memory.
    """
    if rows.num_rows == 0:
        return MergeResult(version=open_table(lake, create=True).version(), inserted=0)
    inserted, version = 0, -1
    for offset in range(0, rows.num_rows, MERGE_BATCH_ROWS):
        result = _merge_batch(lake, detector, rows.slice(offset, MERGE_BATCH_ROWS))
        inserted += result.inserted
        version = result.version
    return MergeResult(version=version, inserted=inserted)


def _merge_batch(lake: str, detector: str, rows: pa.Table) -> MergeResult:
    days = sorted(set(rows.column("day").to_pylist()))
    day_list = ", ".join(f"'{day}'" for day in days)
    stamps = rows.column("timestamp")
    first, last = pc.min(stamps).as_py().isoformat(), pc.max(stamps).as_py().isoformat()
    series = rows.column("series")
    lowest, highest = _sql_text(pc.min(series).as_py()), _sql_text(pc.max(series).as_py())
    # Literal partition values, time and series bounds let delta-rs skip every file these rows
    # cannot match (partition pruning, then the files' min/max statistics): a sync reads the
    # files of its hour, a backfill batch those of its series.
    predicate = (
        f"t.detector = '{detector}' AND t.day IN ({day_list}) "
        f"AND t.timestamp >= '{first}' AND t.timestamp <= '{last}' "
        f"AND t.series >= {lowest} AND t.series <= {highest} AND t.day = s.day "
        "AND t.series = s.series AND t.signal = s.signal AND t.timestamp = s.timestamp"
    )

    def attempt(table: Any) -> MergeResult:
        metrics = (
            table.merge(
                rows,
                predicate=predicate,
                source_alias="s",
                target_alias="t",
                writer_properties=_writer_properties(),
            )
            .when_not_matched_insert_all()
            .execute()
        )
        return MergeResult(version=table.version(), inserted=int(metrics["num_target_rows_inserted"]))

    return _with_retries(lake, f"merging {rows.num_rows} rows of detector {detector!r}", attempt)


def read_slice(
    lake: str, detector: str, *, start: float, end: float, version: int | None = None
) -> LakeSlice:
    """The detector's rows with `start <= timestamp <= end` (at `version`, default the latest)."""
    table = open_table(lake, version=version)
    days = days_between(start, end)
    try:
        dataset = table.to_pyarrow_dataset(partitions=[("detector", "=", detector), ("day", "in", days)])
        stamp = pa.timestamp("us", tz="UTC")
        in_range = (pc.field("timestamp") >= pa.scalar(round(start * MICROSECONDS), stamp)) & (
            pc.field("timestamp") <= pa.scalar(round(end * MICROSECONDS), stamp)
        )
        rows = dataset.to_table(columns=READ_COLUMNS, filter=in_range)
    except (OSError, pa.ArrowException) as err:
        raise LakeError(f"could not read detector {detector!r} from {table_uri(lake)!r}: {err}") from err
    return LakeSlice(
        table_uri=table_uri(lake),
        version=table.version(),
        detector=detector,
        start=start,
        end=end,
        rows=rows,
    )


def latest_timestamp(lake: str, detector: str) -> float | None:
    """Unix seconds of the detector's newest row, from the file statistics; None when it has none."""
    try:
        table = open_table(lake)
    except LakeError:
        return None
    actions = pa.table(table.get_add_actions(flatten=True)).to_pydict()
    newest = [
        stamp
        for owner, stamp in zip(
            actions.get("partition.detector", []), actions.get("max.timestamp", []), strict=False
        )
        if owner == detector and stamp is not None
    ]
    if not newest:
        return None
    return max(_as_seconds(stamp) for stamp in newest)


def _as_seconds(stamp: Any) -> float:
    if isinstance(stamp, datetime):
        return (stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)).timestamp()
    return float(stamp) / MICROSECONDS


@dataclass(frozen=True)
class Maintenance:
    dropped_files: int
    compacted_files: int
    vacuumed_files: int
    version: int


def maintain(lake: str, *, retention_days: float, vacuum_retention_hours: int, now: float) -> Maintenance:
    """Drop days older than the retention, compact small files, then vacuum unreferenced files.

    Dropping is a partition-only delete (whole files leave the table in one commit); their bytes
    go when vacuum runs, after `vacuum_retention_hours` so a reader that started before the
    delete can still finish.
    """
    cutoff = (datetime.fromtimestamp(now, tz=UTC) - timedelta(days=retention_days)).strftime("%Y-%m-%d")

    def drop(table: Any) -> int:
        return int(table.delete(predicate=f"day < '{cutoff}'").get("num_removed_files", 0))

    dropped = _with_retries(lake, f"dropping days before {cutoff}", drop)

    def compact(table: Any) -> int:
        # Only whole past days: today's partition still receives a small file every sync.
        today = datetime.fromtimestamp(now, tz=UTC).strftime("%Y-%m-%d")
        metrics = table.optimize.compact(
            partition_filters=[("day", "<", today)], writer_properties=_writer_properties()
        )
        return int(metrics.get("numFilesRemoved", 0))

    compacted = _with_retries(lake, "compacting small files", compact)

    def vacuum(table: Any) -> int:
        removed = table.vacuum(
            retention_hours=vacuum_retention_hours,
            dry_run=False,
            enforce_retention_duration=False,
        )
        return len(removed)

    vacuumed = _with_retries(lake, "vacuuming unreferenced files", vacuum)
    version = open_table(lake, create=True).version()
    log.info(
        "lake %s: dropped %d files before %s, compacted %d, vacuumed %d (version %d)",
        table_uri(lake),
        dropped,
        cutoff,
        compacted,
        vacuumed,
        version,
    )
    return Maintenance(
        dropped_files=dropped, compacted_files=compacted, vacuumed_files=vacuumed, version=version
    )


def _sql_text(text: str) -> str:
    """A SQL string literal (label values may hold quotes)."""
    return "'" + text.replace("'", "''") + "'"


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, tz=UTC).isoformat()
