"""The data lake on a real S3-compatible server (moto, loopback) fed by a real Prometheus.

- syncing a range twice adds nothing, and a hole in the lake is filled from Prometheus;
- concurrent writers of the same range leave one copy of every sample;
- with Prometheus stopped, `lake export` still returns the whole range;
- training reads a range that Prometheus no longer holds and records the slice in MLflow;
- retention drops old day partitions (and vacuum deletes their objects).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml

from slo_pipeline import cli
from slo_pipeline.adapters import lake
from slo_pipeline.adapters.lake_rows import SECONDS_PER_DAY, block_rows, rows_digest
from slo_pipeline.adapters.prometheus import SeriesBlock, fetch_detector_range
from slo_pipeline.devstack import launch
from slo_pipeline.orchestration.lake_sync import sync_pass, sync_range
from slo_pipeline.orchestration.lake_sync_metrics import LakeSyncMetrics
from slo_pipeline.orchestration.retrain import retrain_detector
from slo_pipeline.settings import Settings
from tests.fixtures.object_store import S3Bucket
from tests.fixtures.simulated import SimulatedService, simulated_service

pytestmark = pytest.mark.integration

DETECTOR = "request_rate"
PIPELINE = {
    "detectors": [
        {
            "name": DETECTOR,
            "query": "sum by (route) (rate(demo_http_requests_total[5m]))",
            "step_seconds": 60,
            "training_window_seconds": 2 * 86400,
            "false_alarms_per_week": 1,
        }
    ]
}


@pytest.fixture
def service(tmp_path: Path, database_url: str, prometheus_factory, s3_bucket: S3Bucket) -> SimulatedService:
    """2.2 days of simulated history in Prometheus; the lake in the S3 bucket."""
    simulated = simulated_service(
        tmp_path, database_url=database_url, prometheus_factory=prometheus_factory, pipeline=PIPELINE
    )
    settings = simulated.settings.model_copy(update={"data_lake": f"{s3_bucket.uri}/lake"})
    return SimulatedService(settings=settings, anchor=simulated.anchor)


@pytest.fixture
def run_cli(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Callable[..., tuple[int, str, str]]:
    """`run_cli(settings, *args, **env)`: `slo-pipeline ARGS` in-process, configured by environment
    variables as in production; returns (exit code, stdout, stderr)."""
    config = tmp_path / "pipeline.yml"
    config.write_text(yaml.safe_dump(PIPELINE), encoding="utf-8")

    def run(settings: Settings, *args: str, **env: str) -> tuple[int, str, str]:
        monkeypatch.setenv("PROMETHEUS_URL", settings.prometheus_url)
        monkeypatch.setenv("SLO_PIPELINE_DATA_LAKE", settings.data_lake)
        monkeypatch.setenv("SLO_PIPELINE_CONFIG", str(config))
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        capsys.readouterr()
        code = cli.main(list(args))
        out, err = capsys.readouterr()
        return code, out, err

    return run


def prometheus_block(settings: Settings, start: float, end: float) -> SeriesBlock:
    detector = settings.pipeline.detector(DETECTOR)
    return fetch_detector_range(settings.prometheus_url, detector, start=start, end=end)


def assert_no_duplicates(rows) -> None:  # type: ignore[no-untyped-def]
    frame = rows.select(["series", "signal", "timestamp"]).to_pandas()
    assert not frame.duplicated().any(), frame[frame.duplicated(keep=False)].head()


def test_sync_twice_adds_nothing_fills_holes_and_export_works_with_prometheus_stopped(
    service: SimulatedService,
    run_cli: Callable[..., tuple[int, str, str]],
    managed_processes: list[launch.ManagedProcess],
    s3_bucket: S3Bucket,
    tmp_path: Path,
) -> None:
    settings, end = service.settings, service.anchor
    start = end - SECONDS_PER_DAY
    expected = block_rows(DETECTOR, prometheus_block(settings, start, end))
    assert expected.num_rows > 1000

    args = ("lake", "sync", "--detector", DETECTOR, "--start", str(start), "--end", str(end))
    code, out, err = run_cli(settings, *args)
    assert code == 0, err
    assert f"{expected.num_rows} samples read from Prometheus, {expected.num_rows} new" in out
    first = lake.read_slice(settings.data_lake, DETECTOR, start=start, end=end)
    assert first.rows.num_rows == expected.num_rows
    assert first.digest == rows_digest(expected)
    # Partitioned by detector and day, in the bucket.
    assert any(f"/detector={DETECTOR}/day=" in key for key in s3_bucket.keys("lake/samples/"))

    code, out, err = run_cli(settings, *args)
    assert code == 0, err
    assert (
        f"{expected.num_rows} samples read from Prometheus, 0 new in the lake (version {first.version})"
        in out
    )
    again = lake.read_slice(settings.data_lake, DETECTOR, start=start, end=end)
    assert again.version == first.version and again.rows.num_rows == expected.num_rows
    assert_no_duplicates(again.rows)

    # A hole (an outage of the sync, a lost file): the next sync of the range fills it exactly.
    hole_start, hole_end = (
        pd.Timestamp(start + 3600, unit="s", tz="UTC"),
        pd.Timestamp(start + 7200, unit="s", tz="UTC"),
    )
    table = lake.open_table(settings.data_lake)
    deleted = table.delete(
        predicate=f"timestamp >= '{hole_start.isoformat()}' AND timestamp < '{hole_end.isoformat()}'"
    )
    assert deleted["num_deleted_rows"] > 0
    code, out, err = run_cli(settings, *args)
    assert code == 0, err
    assert f", {deleted['num_deleted_rows']} new" in out
    filled = lake.read_slice(settings.data_lake, DETECTOR, start=start, end=end)
    assert filled.digest == first.digest

    # One pass of the loop continues from the newest row (less the overlap) to two minutes ago.
    code, _, err = run_cli(settings, "lake", "sync", "--once")
    assert code == 0, err
    newest = lake.latest_timestamp(settings.data_lake, DETECTOR)
    assert newest is not None and newest > end + 3600
    continued = lake.read_slice(settings.data_lake, DETECTOR, start=start, end=newest)
    assert_no_duplicates(continued.rows)
    assert continued.digest == rows_digest(block_rows(DETECTOR, prometheus_block(settings, start, newest)))

    # The loop's metrics: what a pass read and inserted, then a failed pass with Prometheus gone.
    metrics = LakeSyncMetrics([DETECTOR])

    def sample(name: str) -> float | None:
        return metrics.registry.get_sample_value(name, {"detector": DETECTOR})

    assert sample("slo_pipeline_lake_sync_last_success_timestamp_seconds") == 0
    assert len(sync_pass(settings, now=newest + 600, metrics=metrics)) == 1
    assert sample("slo_pipeline_lake_sync_samples_read_total") > 0  # the re-read overlap at least
    assert sample("slo_pipeline_lake_sync_failures_total") == 0
    synced_at = sample("slo_pipeline_lake_sync_last_success_timestamp_seconds")
    assert synced_at is not None and synced_at > 0

    # Prometheus gone: export reads the lake only, and still has every sample of the range.
    for process in managed_processes:
        process.stop()
    assert sync_pass(settings, now=newest + 600, metrics=metrics) == []
    assert sample("slo_pipeline_lake_sync_failures_total") == 1
    assert sample("slo_pipeline_lake_sync_last_success_timestamp_seconds") == synced_at
    code, _, err = run_cli(settings, *args)
    assert code == 2 and "Prometheus" in err and len(err.strip().splitlines()) == 1
    output = tmp_path / "export" / "range.csv"
    code, _, err = run_cli(
        settings,
        "lake",
        "export",
        "--detector",
        DETECTOR,
        "--start",
        str(start),
        "--end",
        str(end),
        "--output",
        str(output),
    )
    assert code == 0, err
    exported = pd.read_csv(output)
    assert list(exported.columns) == ["timestamp", "series", "value"]
    assert len(exported) == expected.num_rows
    assert not exported.duplicated(["timestamp", "series"]).any()
    want = expected.to_pandas()
    want = want.assign(timestamp=want["timestamp"].dt.strftime("%Y-%m-%dT%H:%M:%SZ"))
    merged = exported.merge(want, on=["timestamp", "series"], suffixes=("", "_prometheus"))
    assert len(merged) == expected.num_rows
    np.testing.assert_array_equal(merged["value"], merged["value_prometheus"])
    assert exported["timestamp"].iloc[0] == pd.Timestamp(start, unit="s", tz="UTC").strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )


def test_concurrent_writers_of_one_range_leave_one_copy_of_each_sample(service: SimulatedService) -> None:
    settings, end = service.settings, service.anchor
    ranges = [
        (end - 6 * 3600, end),
        (end - 9 * 3600, end - 3 * 3600),
        (end - 6 * 3600, end),
        (end - 7200, end),
    ]
    batches = [block_rows(DETECTOR, prometheus_block(settings, start, stop)) for start, stop in ranges]
    # All writers start their merge at once, on a table that does not exist yet: they race to
    # create it, then to commit overlapping rows; the losers re-read and retry.
    barrier = threading.Barrier(len(batches))
    errors: list[BaseException] = []

    def write(rows) -> None:  # type: ignore[no-untyped-def]
        try:
            barrier.wait()
            lake.merge_rows(settings.data_lake, DETECTOR, rows)
        except BaseException as err:  # reported by the assertion below
            errors.append(err)

    threads = [threading.Thread(target=write, args=(rows,)) for rows in batches]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    stored = lake.read_slice(settings.data_lake, DETECTOR, start=end - 9 * 3600, end=end)
    assert_no_duplicates(stored.rows)
    assert stored.digest == rows_digest(block_rows(DETECTOR, prometheus_block(settings, end - 9 * 3600, end)))


def test_training_reads_history_prometheus_no_longer_holds_and_records_the_slice(
    service: SimulatedService,
    tmp_path: Path,
    prometheus_factory,
    managed_processes: list[launch.ManagedProcess],
) -> None:
    settings, anchor = service.settings, service.anchor
    window_start = anchor - 2 * SECONDS_PER_DAY
    recent = anchor - 0.5 * SECONDS_PER_DAY
    detector = settings.pipeline.detector(DETECTOR)
    # The older part reaches the lake while the first Prometheus still holds it...
    sync_range(settings, detector, start=window_start, end=recent - 60)
    old_part = lake.read_slice(settings.data_lake, DETECTOR, start=window_start, end=recent - 60)
    for process in managed_processes:
        process.stop()

    # ...then a Prometheus that holds only the last half day (a short retention) serves training.
    from slo_pipeline.devstack.simulator.history import write_history

    history = tmp_path / "recent.om"
    write_history(history, start=recent - 3600, end=anchor + 60, step_seconds=60, seed=3)
    tsdb = tmp_path / "recent-tsdb"
    launch.backfill_openmetrics(history, tsdb)
    short = prometheus_factory(data_dir=tsdb)
    settings = settings.model_copy(update={"prometheus_url": short.url})
    assert prometheus_block(settings, window_start, recent - 3600 - 600).n_series == 0

    outcome = retrain_detector(settings, DETECTOR, now=anchor)

    run = mlflow.MlflowClient(settings.mlflow_tracking_uri).get_run(outcome.run_id)
    (dataset_input,) = run.inputs.dataset_inputs
    dataset = dataset_input.dataset
    assert dataset.source_type == "delta_table"
    source = yaml.safe_load(dataset.source)
    assert source["path"] == lake.table_uri(settings.data_lake)
    assert source["path"].startswith("s3://")
    version = int(source["delta_table_version"])
    assert run.data.params["lake_version"] == str(version)
    tags = {tag.key: tag.value for tag in dataset_input.tags}
    assert f"detector = '{DETECTOR}'" in tags["lake_slice"]
    # The digest is that of the slice read back at the recorded version: the run can be reproduced.
    trained = lake.read_slice(settings.data_lake, DETECTOR, start=window_start, end=anchor, version=version)
    assert dataset.digest == trained.digest
    assert tags["lake_rows"] == str(trained.rows.num_rows)
    # It holds the old part exactly as synced from the first Prometheus, and the recent part
    # from the second one.
    older = lake.read_slice(
        settings.data_lake, DETECTOR, start=window_start, end=recent - 60, version=version
    )
    assert older.digest == old_part.digest
    newer = lake.read_slice(settings.data_lake, DETECTOR, start=recent, end=anchor, version=version)
    assert newer.digest == rows_digest(block_rows(DETECTOR, prometheus_block(settings, recent, anchor)))
    # No per-run snapshot copies any more: only the table.
    assert all(key.startswith("lake/samples/") for key in _bucket_keys(settings))

    # A backtest over the same window takes what the short Prometheus has and the lake the rest.
    scored = tmp_path / "backtest.csv"
    code = cli.main(
        [
            "backtest",
            "--detector",
            DETECTOR,
            "--config",
            str(_config(tmp_path)),
            "--prometheus-url",
            settings.prometheus_url,
            "--source",
            "auto",
            "--lake",
            settings.data_lake,
            "--start",
            str(window_start),
            "--end",
            str(anchor),
            "--n-estimators",
            "20",
            "--retrain-every-hours",
            "48",
            "--quiet",
            "--output",
            str(scored),
        ]
    )
    assert code == 0
    replayed = pd.read_csv(scored)
    per_series = replayed.groupby("series")["value"].count()
    # Every step of the two days has a value: the old part from the lake, the new from Prometheus.
    assert (per_series >= 0.99 * (2 * SECONDS_PER_DAY / 60)).all(), per_series
    first_hour = replayed[
        replayed["timestamp"] < pd.Timestamp(window_start + 3600, unit="s").strftime("%Y-%m-%dT%H:%M:%SZ")
    ]
    assert first_hour["value"].notna().all()


def _config(folder: Path) -> Path:
    path = folder / "backtest-pipeline.yml"
    path.write_text(yaml.safe_dump(PIPELINE), encoding="utf-8")
    return path


def _bucket_keys(settings: Settings) -> list[str]:
    import boto3

    bucket = settings.data_lake.removeprefix("s3://").split("/", 1)[0]
    client = boto3.client("s3")
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return [item["Key"] for page in pages for item in page.get("Contents", [])]


def test_retention_drops_old_day_partitions_and_vacuum_deletes_their_objects(
    service: SimulatedService, run_cli: Callable[..., tuple[int, str, str]], s3_bucket: S3Bucket
) -> None:
    import time

    settings, anchor = service.settings, service.anchor
    start = anchor - 2 * SECONDS_PER_DAY
    sync_range(settings, settings.pipeline.detector(DETECTOR), start=start, end=anchor)
    table = lake.open_table(settings.data_lake)
    days = sorted({part["day"] for part in table.partitions()})
    assert len(days) == 3  # the anchor is 06:00 UTC: two days back touches three dates
    # Keep the newest two dates: the cutoff is the second one.
    keep_from = pd.Timestamp(days[1])
    # Measured to noon of that date, so the cutoff date is that date whatever the rounding.
    retention_days = (time.time() - keep_from.timestamp() - SECONDS_PER_DAY / 2) / SECONDS_PER_DAY
    code, out, err = run_cli(
        settings,
        "lake",
        "maintain",
        SLO_PIPELINE_LAKE_RETENTION_DAYS=f"{retention_days:.6f}",
        SLO_PIPELINE_LAKE_VACUUM_RETENTION_HOURS="0",
    )
    assert code == 0, err
    dropped = re.search(r"dropped (\d+) files", out)
    assert dropped and int(dropped.group(1)) >= 1, out
    table = lake.open_table(settings.data_lake)
    assert sorted({part["day"] for part in table.partitions()}) == days[1:]
    kept = lake.read_slice(settings.data_lake, DETECTOR, start=start, end=anchor)
    oldest = kept.rows.column("timestamp").to_pandas().min()
    assert oldest == keep_from.tz_localize("UTC")
    keys = s3_bucket.keys("lake/samples/")
    assert not [key for key in keys if f"day={days[0]}/" in key]
    assert [key for key in keys if f"day={days[1]}/" in key]
