"""The SLO page's compliance per month, through AppTest against a real PostgreSQL: what it shows
with no history yet, and the stored months' reports (the same text as `slo report`)."""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from slo_pipeline.adapters import slo_history as history_store
from slo_pipeline.adapters.postgres import connect
from slo_pipeline.core.slo_history import BreachPeriod, Snapshot, parse_period, period_of, previous_periods
from tests.fixtures.ui import CLOSED_PROMETHEUS, assert_only_prometheus_down, signed_in_app
from tests.integration.test_streamlit_slos import seed_slos

pytestmark = pytest.mark.integration

SLO = "checkout-availability"
HOUR = 3600.0


def hourly(start: float, end: float, error_ratio: float, *, pages_at: float | None = None) -> list[Snapshot]:
    return [
        Snapshot(
            slo=SLO,
            taken_at=t,
            interval_seconds=HOUR,
            objective=99.5,
            time_period="30d",
            recorded=True,
            period_error_ratio=error_ratio,
            budget_remaining=1 - error_ratio / 0.005,
            burn_rates={"fast": error_ratio / 0.005},
            interval_error_ratio=error_ratio,
            interval_weight=500.0,
            pages=1 if t == pages_at else 0,
            tickets=0,
        )
        for t in [start + HOUR * k for k in range(1, int((end - start) // HOUR) + 1)]
    ]


def open_slo_page(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AppTest:
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("SLO_PIPELINE_CONFIG", str(tmp_path / "absent.yml"))
    monkeypatch.setenv("PROMETHEUS_URL", CLOSED_PROMETHEUS)
    at = signed_in_app(database_url, "heidi")
    at.sidebar.radio(key="page").set_value("SLOs").run()
    assert not at.exception, [e.value for e in at.exception]
    assert_only_prometheus_down(at)
    return at


def frames_with(at: AppTest, column: str) -> list[pd.DataFrame]:
    return [df.value for df in at.dataframe if column in df.value.columns]


def test_without_history_the_page_says_so_and_stays_usable(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed_slos(database_url)
    at = open_slo_page(database_url, tmp_path, monkeypatch)
    infos = [i.value for i in at.info]
    assert any(f"PostgreSQL holds no history of '{SLO}' yet" in i and "every 3600 s" in i for i in infos), (
        infos
    )
    # The rest of the page is there: the edit form and the revision trail.
    assert at.button and any(df.value.shape[0] == 1 for df in at.dataframe)


def test_stored_months_are_reported_with_the_earlier_ones_beside(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed_slos(database_url)
    now = time.time()
    current, previous, *_, old = previous_periods(period_of(now), 9)
    old_start, _ = parse_period(old)
    last_start, last_end = parse_period(previous)
    this_start, _ = parse_period(current)
    bad = last_start + 30 * HOUR
    conn = connect(database_url)
    try:
        history_store.write_pass(
            conn,
            SLO,
            detectors=[],
            snapshots=hourly(last_start, last_end, 0.01, pages_at=bad)
            + hourly(this_start, now - HOUR, 0.001)
            + hourly(old_start, old_start + 2 * HOUR, 0.002),
            breaches=[BreachPeriod("page", bad - 1200, bad)],
            gap_seconds=60,
            relink_since=now,
        )
    finally:
        conn.close()

    at = open_slo_page(database_url, tmp_path, monkeypatch)
    period = at.selectbox(key=f"slo_report_period_{SLO}")
    # Months with history beyond the table's six are still there to pick.
    assert period.options == [current, previous, old]
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Compliance"] == "99.900%" and metrics["Budget left (month)"] == "80.0%"
    assert metrics["Pages / tickets"] == "0 / 0"
    (table,) = frames_with(at, "compliance %")
    assert list(table["period"]) == [previous, current]
    assert list(table["compliance %"]) == [99.0, 99.9]
    assert list(table["met"]) == ["no", "yes"]
    assert list(table["budget left %"]) == [-100.0, 80.0]
    assert list(table["pages"]) == [1, 0]

    period.set_value(previous).run()
    assert not at.exception
    (text,) = [c.value for c in at.code if f"SLO {SLO}, period {previous}" in c.value]
    assert "objective MISSED" in text and "budget remaining  -100.0%" in text
    (breaches,) = frames_with(at, "minutes")
    assert list(breaches["severity"]) == ["page"] and list(breaches["minutes"]) == [20]

    at.selectbox(key=f"slo_report_period_{SLO}").set_value(old).run()
    assert not at.exception
    (text,) = [c.value for c in at.code if f"SLO {SLO}, period {old}" in c.value]
    assert "SLI error ratio   0.200%" in text and "2 of " in text
