"""The worker's SLO history pass against real PostgreSQL when Prometheus or the database is down:
it names what failed, stores nothing half-read, and never stops the worker. (What a pass stores
from real recording-rule history: tests/integration/test_slo_validation_history.py.)"""

from __future__ import annotations

import logging
import time

import pytest

from slo_pipeline.adapters.postgres import connect, with_dbname
from slo_pipeline.settings import load_settings
from slo_pipeline.slo import store
from slo_pipeline.slo.spec import parse_specs
from tests.fixtures.database import fetch_all
from tests.fixtures.paths import REPO_ROOT
from tests.fixtures.ui import CLOSED_PROMETHEUS
from worker.runner import RetrainWorker

pytestmark = pytest.mark.integration


def store_example_slos(database_url: str) -> list[str]:
    specs = parse_specs((REPO_ROOT / "examples" / "slos.yml").read_text(encoding="utf-8"))
    conn = connect(database_url)
    try:
        store.apply_slos(conn, specs, changed_by="test")
    finally:
        conn.close()
    return sorted(slo.name for slo in specs)


def test_a_pass_with_prometheus_down_names_every_slo_and_stores_nothing(database_url: str) -> None:
    names = store_example_slos(database_url)
    settings = load_settings(database_url=database_url, prometheus_url=CLOSED_PROMETHEUS)
    worker = RetrainWorker(settings, worker_id="w1")

    started = time.monotonic()
    result = worker.snapshot_slos()

    assert result is not None
    assert (result.slos, sorted(result.failed), result.snapshots_inserted) == (len(names), names, 0)
    assert fetch_all(database_url, "SELECT count(*) FROM slo_snapshots") == [(0,)]
    assert time.monotonic() - started < 10


def test_a_pass_with_the_database_down_logs_and_returns(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    missing = with_dbname(database_url, "slo_test_no_such_database")
    worker = RetrainWorker(
        load_settings(database_url=missing, prometheus_url=CLOSED_PROMETHEUS), worker_id="w1"
    )

    with caplog.at_level(logging.WARNING, logger="worker.runner"):
        assert worker.snapshot_slos() is None

    assert any(
        "SLO history pass failed" in r.getMessage() and "slo_test_no_such_database" in r.getMessage()
        for r in caplog.records
    )
