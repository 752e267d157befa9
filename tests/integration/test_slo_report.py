"""`slo-pipeline slo report` against a real PostgreSQL holding stored SLO history.

The history is written through the same adapter the worker's pass uses (what a pass reads from
Prometheus is proven in tests/integration/test_slo_validation_history.py)."""

from __future__ import annotations

import json
import time

import pytest

from slo_pipeline.adapters import slo_history as history_store
from slo_pipeline.adapters.postgres import connect
from slo_pipeline.cli import main
from slo_pipeline.core.slo_history import BreachPeriod, Snapshot, parse_period, period_of, previous_periods
from slo_pipeline.slo import store
from slo_pipeline.slo.spec import parse_specs
from tests.fixtures.paths import REPO_ROOT

pytestmark = pytest.mark.integration

SLO = "demo-availability"
HOUR = 3600.0


def last_month() -> str:
    return previous_periods(period_of(time.time()), 2)[1]


def seed_history(database_url: str, period: str) -> tuple[float, float]:
    """The example SLOs, and for SLO: a full month of hourly snapshots, 0.1% errors except one
    hour at 30% with a page, and that hour's page period."""
    specs = parse_specs((REPO_ROOT / "examples" / "slos.yml").read_text(encoding="utf-8"))
    start, end = parse_period(period)
    bad_hour = start + 100 * HOUR
    snapshots = [
        Snapshot(
            slo=SLO,
            taken_at=t,
            interval_seconds=HOUR,
            objective=99.5,
            time_period="30d",
            recorded=True,
            period_error_ratio=0.002,
            budget_remaining=0.6,
            burn_rates={"fast": 60.0 if t == bad_hour else 0.2},
            interval_error_ratio=0.3 if t == bad_hour else 0.001,
            interval_weight=1000.0,
            pages=1 if t == bad_hour else 0,
            tickets=0,
        )
        for t in [start + HOUR * k for k in range(1, int((end - start) / HOUR) + 1)]
    ]
    conn = connect(database_url)
    try:
        store.apply_slos(conn, specs, changed_by="test")
        history_store.write_pass(
            conn,
            SLO,
            detectors=[],
            snapshots=snapshots,
            breaches=[BreachPeriod("page", bad_hour - 1800, bad_hour)],
            gap_seconds=60,
            relink_since=start,
        )
    finally:
        conn.close()
    return start, end


def report(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["slo", "report", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_report_of_a_stored_month(
    database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", database_url)
    period = last_month()
    start, end = seed_history(database_url, period)
    hours = int((end - start) / HOUR)

    code, out, err = report(capsys, "--slo", SLO, "--period", period, "--json")
    assert (code, err) == (0, "")
    data = json.loads(out)
    expected = (0.3 + 0.001 * (hours - 1)) / hours
    assert data["sli_error_ratio"] == pytest.approx(expected)
    assert data["meets_objective"] is True and data["budget_remaining"] == pytest.approx(1 - expected / 0.005)
    assert (data["pages"], data["tickets"], data["snapshots"], data["expected_snapshots"]) == (
        1,
        0,
        hours,
        hours,
    )
    assert data["worst_burn"] == {"fast": 60.0}
    assert [b["severity"] for b in data["breaches"]] == ["page"]

    code, out, _ = report(capsys, "--slo", SLO, "--period", period)
    assert code == 0
    assert f"SLO {SLO}, period {period}" in out
    assert f"SLI error ratio   {100 * expected:.3f}%" in out and "objective met" in out
    assert "fast 5m/1h 60.00x (factor 14.4)" in out
    assert "pages / tickets   1 / 0" in out
    assert f"{hours} of {hours} scheduled, {hours} with data (100% of the instants due)" in out


def test_every_slo_by_default_and_no_history_is_said(
    database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", database_url)
    seed_history(database_url, last_month())

    code, out, _ = report(capsys, "--json")  # the current month: nothing stored in it
    assert code == 0
    rows = [json.loads(line) for line in out.splitlines()]
    assert len(rows) == 3 and {row["period"] for row in rows} == {period_of(time.time())}
    assert all(row["snapshots"] == 0 and row["sli_error_ratio"] is None for row in rows)
    code, out, _ = report(capsys, "--slo", SLO)
    assert code == 0 and "no snapshots stored for this period" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--period", "2026-13"], "period '2026-13' is not a month: the month must be 01 to 12"),
        (["--period", "last-month"], "period 'last-month' is not a month: expected YYYY-MM"),
        (["--period", "2999-01"], "period '2999-01' has not begun"),
        (["--slo", "no-such-slo"], "unknown SLO 'no-such-slo' (known: demo-availability, "),
    ],
)
def test_bad_requests_exit_2_naming_the_problem(
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    message: str,
) -> None:
    monkeypatch.setenv("DATABASE_URL", database_url)
    seed_history(database_url, last_month())
    code, out, err = report(capsys, *args)
    assert code == 2 and out == ""
    assert message in err


def test_a_database_without_the_migration_is_named(
    empty_database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", empty_database_url)
    code, _, err = report(capsys)
    assert code == 1
    assert "reading the SLO history from" in err and "slo-pipeline db migrate" in err
