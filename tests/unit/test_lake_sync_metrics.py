from slo_pipeline.orchestration.lake_sync_metrics import LakeSyncMetrics


def value(metrics: LakeSyncMetrics, name: str, detector: str = "d") -> float | None:
    return metrics.registry.get_sample_value(name, {"detector": detector})


def test_every_detector_is_there_from_the_first_scrape() -> None:
    metrics = LakeSyncMetrics(["d", "e"])
    for detector in ("d", "e"):
        assert value(metrics, "slo_pipeline_lake_sync_failures_total", detector) == 0
        assert value(metrics, "slo_pipeline_lake_sync_last_success_timestamp_seconds", detector) == 0


def test_a_pass_that_read_nothing_is_no_success() -> None:
    # A query that matches nothing any more (a renamed metric): the lake learns nothing, so the
    # staleness alert must keep counting.
    metrics = LakeSyncMetrics(["d"])
    metrics.synced("d", read=0, inserted=0)
    assert value(metrics, "slo_pipeline_lake_sync_last_success_timestamp_seconds") == 0
    metrics.synced("d", read=120, inserted=60)
    synced_at = value(metrics, "slo_pipeline_lake_sync_last_success_timestamp_seconds")
    assert synced_at is not None and synced_at > 0
    assert value(metrics, "slo_pipeline_lake_sync_samples_read_total") == 120
    assert value(metrics, "slo_pipeline_lake_sync_samples_inserted_total") == 60


def test_failures_and_maintenance_are_counted() -> None:
    metrics = LakeSyncMetrics(["d"])
    metrics.failed("d")
    metrics.maintained(ok=False)
    metrics.maintained(ok=True)
    assert value(metrics, "slo_pipeline_lake_sync_failures_total") == 1
    assert metrics.registry.get_sample_value("slo_pipeline_lake_maintenance_failures_total") == 1
    last = metrics.registry.get_sample_value("slo_pipeline_lake_maintenance_last_success_timestamp_seconds")
    assert last is not None and last > 0
