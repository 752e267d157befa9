"""The SLO history's writes against real PostgreSQL: the worker's pass when Prometheus or the
database is down (it names what failed, stores nothing half-read, never stops the worker), breach
periods merged and linked to incidents, concurrent passes storing everything once. (What a pass
reads from real recording-rule history: tests/integration/test_slo_validation_history.py.)"""

from __future__ import annotations

import http.server
import json
import logging
import socket
import threading
import time

import pytest
from prometheus_client import generate_latest

from slo_pipeline.adapters import slo_history as history_store
from slo_pipeline.adapters.incident_history import incident_history
from slo_pipeline.adapters.postgres import connect, with_dbname
from slo_pipeline.cli import main
from slo_pipeline.core.slo_history import BreachPeriod, Snapshot
from slo_pipeline.settings import load_settings
from slo_pipeline.slo import store
from slo_pipeline.slo.spec import parse_specs
from tests.fixtures.database import fetch_all
from tests.fixtures.paths import REPO_ROOT
from tests.fixtures.ui import CLOSED_PROMETHEUS
from tests.integration.test_slo_evidence_fetch import seed_incident
from worker.metrics import create_registry
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


def test_a_black_holed_prometheus_is_waited_on_once_per_pass_not_once_per_slo(database_url: str) -> None:
    names = store_example_slos(database_url)
    assert len(names) > 1
    accepted: list[socket.socket] = []
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        server.settimeout(0.2)
        done = threading.Event()

        def accept_and_never_answer() -> None:
            while not done.is_set():
                try:
                    accepted.append(server.accept()[0])
                except TimeoutError:
                    continue

        thread = threading.Thread(target=accept_and_never_answer, daemon=True)
        thread.start()
        url = f"http://127.0.0.1:{server.getsockname()[1]}"
        settings = load_settings(database_url=database_url, prometheus_url=url, query_timeout_seconds=1.0)
        try:
            result = RetrainWorker(settings, worker_id="w1").snapshot_slos()
        finally:
            done.set()
            thread.join(5)
            for connection in accepted:
                connection.close()
    assert result is not None and sorted(result.failed) == names
    assert len(accepted) == 1, f"{len(accepted)} connections: the pass waited on a dead Prometheus per SLO"


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


def snapshot(taken_at: float) -> Snapshot:
    return Snapshot(
        slo="demo-availability",
        taken_at=taken_at,
        interval_seconds=3600.0,
        objective=99.5,
        time_period="30d",
        recorded=True,
        period_error_ratio=0.001,
        budget_remaining=0.8,
        burn_rates={"fast": 0.2},
        interval_error_ratio=0.001,
        interval_weight=100.0,
        pages=0,
        tickets=0,
    )


def write(database_url: str, snapshots: list[Snapshot], breaches: list[BreachPeriod]) -> int:
    conn = connect(database_url)
    try:
        return history_store.write_pass(
            conn,
            "demo-availability",
            detectors=["demo_error_ratio"],
            snapshots=snapshots,
            breaches=breaches,
            gap_seconds=60.0,
            relink_since=0.0,
        ).snapshots_inserted
    finally:
        conn.close()


def breach_rows(database_url: str) -> list[tuple[object, ...]]:
    return fetch_all(
        database_url,
        "SELECT severity, extract(epoch FROM starts_at)::bigint, extract(epoch FROM ends_at)::bigint,"
        " incident_ids FROM slo_breaches ORDER BY starts_at",
    )


def test_a_period_bridging_two_stored_ones_joins_them_and_keeps_the_incident_links(database_url: str) -> None:
    base = 1_790_000_000.0
    write(
        database_url,
        [],
        [BreachPeriod("page", base, base + 1000), BreachPeriod("page", base + 3000, base + 4000)],
    )
    # An anomaly incident of a detector the SLO lists, starting 10 min before the second period.
    seed_incident(
        database_url,
        detector="demo_error_ratio",
        slo=None,
        starts_at=base + 2400,
        ends_at=base + 2500,
        feedback=None,
    )
    ((incident,),) = fetch_all(database_url, "SELECT id FROM incidents")
    write(database_url, [], [])  # a pass that saw nothing new still refreshes the links
    assert breach_rows(database_url) == [
        ("page", base, base + 1000, []),
        ("page", base + 3000, base + 4000, [incident]),
    ]

    write(database_url, [], [BreachPeriod("page", base + 900, base + 3100)])
    assert breach_rows(database_url) == [("page", base, base + 4000, [incident])]


def test_concurrent_passes_store_each_snapshot_and_period_once(database_url: str) -> None:
    store_example_slos(database_url)
    instants = [1_790_002_800.0 + 3600 * k for k in range(1200)]  # more than one page of rows
    periods = [
        BreachPeriod("ticket", instants[3], instants[5]),
        BreachPeriod("page", instants[4], instants[4] + 600),
    ]
    errors: list[BaseException] = []
    inserted: list[int] = []

    def run() -> None:
        try:
            inserted.append(write(database_url, [snapshot(t) for t in instants], periods))
        except BaseException as err:  # collected: a thread's failure must fail the test
            errors.append(err)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert fetch_all(database_url, "SELECT count(*) FROM slo_snapshots") == [(1200,)]
    assert sorted(inserted) == [0, 0, 0, 1200]  # each counted once, by whichever pass stored it
    assert [row[:3] for row in breach_rows(database_url)] == [
        ("ticket", instants[3], instants[5]),
        ("page", instants[4], instants[4] + 600),
    ]


def test_the_worker_metrics_say_how_fresh_each_slos_history_is(database_url: str) -> None:
    names = store_example_slos(database_url)
    write(database_url, [snapshot(1_790_002_800.0), snapshot(1_790_006_400.0)], [])

    text = generate_latest(create_registry(database_url)).decode()

    metric = "slo_pipeline_slo_history_newest_snapshot_timestamp_seconds"
    for name in names:
        value = "1.7900064e+09" if name == "demo-availability" else "0.0"
        assert f'{metric}{{slo="{name}"}} {value}' in text, text


def test_training_excludes_the_stored_breach_periods_of_the_detectors_slo(database_url: str) -> None:
    base = 1_790_000_000.0
    write(
        database_url,
        [],
        [BreachPeriod("page", base + 600, base + 1200), BreachPeriod("ticket", base + 9000, base + 9600)],
    )
    window = {"start": base, "end": base + 3600}

    (breach,) = incident_history(database_url, "demo_error_ratio", slo="demo-availability", **window)
    assert (breach.start, breach.end, breach.slo_wide, breach.confirmed, breach.false_positive) == (
        base + 600,
        base + 1200,
        True,
        False,
        False,
    )
    assert incident_history(database_url, "demo_error_ratio", slo="demo-latency", **window) == []
    assert incident_history(database_url, "demo_error_ratio", slo=None, **window) == []


def test_the_snapshot_command_names_what_it_could_not_read(
    database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("PROMETHEUS_URL", CLOSED_PROMETHEUS)
    assert main(["slo", "snapshot"]) == 0  # no SLOs: nothing to read
    assert json.loads(capsys.readouterr().out) == {
        "breaches_written": 0,
        "failed": [],
        "slos": 0,
        "snapshots_inserted": 0,
    }

    names = store_example_slos(database_url)
    assert main(["slo", "snapshot"]) == 1
    out, err = capsys.readouterr()
    assert json.loads(out)["failed"] == names
    assert f"Prometheus at {CLOSED_PROMETHEUS} could not be read for {', '.join(names)}" in err

    monkeypatch.setenv("DATABASE_URL", with_dbname(database_url, "slo_test_no_such_database"))
    assert main(["slo", "snapshot"]) == 1
    assert "storing the SLO history in" in capsys.readouterr().err


def test_the_snapshot_command_exits_2_when_prometheus_refuses_the_credentials(
    database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    class Refusing(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self._refuse()

        def do_POST(self) -> None:
            self._refuse()

        def _refuse(self) -> None:
            self.send_response(401)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    store_example_slos(database_url)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Refusing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("DATABASE_URL", database_url)
        monkeypatch.setenv("PROMETHEUS_URL", f"http://127.0.0.1:{server.server_address[1]}")
        capsys.readouterr()
        assert main(["slo", "snapshot"]) == 2  # configuration: retrying would not help
    finally:
        server.shutdown()
        server.server_close()
    err = capsys.readouterr().err
    assert err.startswith("slo snapshot: ") and "401" in err, err
    assert fetch_all(database_url, "SELECT count(*) FROM slo_snapshots") == [(0,)]
