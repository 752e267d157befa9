"""SLO editing through the operator app: every change lands in the store with an audit revision."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from slo_pipeline.adapters.postgres import connect
from slo_pipeline.devstack import launch
from slo_pipeline.slo import store
from slo_pipeline.slo.spec import SpecError, parse_specs
from streamlit_app import slo_checks, slos
from tests.fixtures.database import fetch_all
from tests.fixtures.ui import CLOSED_PROMETHEUS, assert_only_prometheus_down, signed_in_app
from tests.fixtures.waiting import wait_until

pytestmark = pytest.mark.integration

SPEC = """
version: prometheus/v1
service: checkout
slos:
  - name: checkout-availability
    objective: 99.5
    time_period: 30d
    detectors: [checkout_errors]
    sli:
      events:
        error_query: sum(rate(http_requests_total{code=~"5.."}[{{.window}}]))
        total_query: sum(rate(http_requests_total[{{.window}}]))
    alerting: {name: CheckoutAvailability}
"""


def seed_slos(database_url: str) -> None:
    conn = connect(database_url)
    try:
        store.apply_slos(conn, parse_specs(SPEC), changed_by="seed", change_note="initial")
    finally:
        conn.close()


def _stored(database_url: str) -> list[tuple[object, ...]]:
    return fetch_all(database_url, "SELECT objective, time_period, updated_by FROM slos")


def test_save_edit_updates_the_slo_and_records_a_revision(database_url: str) -> None:
    seed_slos(database_url)
    (original,) = slos.load_slos(database_url)

    changed = slos.save_edit(database_url, original, slos.SLOEdit(99.9, "28d"), " erin ", "tighter SLA")

    assert changed
    assert _stored(database_url) == [(99.9, "28d", "erin")]
    newest = slos.revision_rows(database_url, "checkout-availability")[0]
    assert newest["revision"] == 2
    assert newest["changed_by"] == "erin"
    assert newest["note"] == "tighter SLA"
    assert "objective: 99.5 -> 99.9" in newest["change"]
    assert "time_period: '30d' -> '28d'" in newest["change"]


def test_an_edit_that_changes_nothing_writes_no_revision(database_url: str) -> None:
    seed_slos(database_url)
    (original,) = slos.load_slos(database_url)

    assert not slos.save_edit(database_url, original, slos.SLOEdit(99.5, "30d"), "erin", "")

    assert len(slos.revision_rows(database_url, "checkout-availability")) == 1


def test_an_invalid_edit_is_refused_before_storing(database_url: str) -> None:
    seed_slos(database_url)
    (original,) = slos.load_slos(database_url)

    with pytest.raises(SpecError, match="time_period"):
        slos.save_edit(database_url, original, slos.SLOEdit(99.9, "3d"), "erin", "")

    assert _stored(database_url) == [(99.5, "30d", "seed")]


def test_an_edit_of_a_stale_version_is_refused(database_url: str) -> None:
    seed_slos(database_url)
    (original,) = slos.load_slos(database_url)
    slos.save_edit(database_url, original, slos.SLOEdit(99.0, "30d"), "frank", "")

    with pytest.raises(slos.ConcurrentEditError, match="someone else"):
        slos.save_edit(database_url, original, slos.SLOEdit(99.9, "30d"), "erin", "")

    assert _stored(database_url) == [(99.0, "30d", "frank")]


def test_a_row_written_by_hand_in_its_own_form_can_still_be_edited(database_url: str) -> None:
    """The stored JSON of a hand-typed row (no defaults spelled out) differs from what the code
    writes; the compare-and-set must compare what it loads as, or the row could never be saved."""
    seed_slos(database_url)
    fetch_all(
        database_url,
        "UPDATE slos SET spec = spec - 'labels' #- '{slos,0,description}' #- '{slos,0,min_events}' "
        "RETURNING name",
    )
    (original,) = slos.load_slos(database_url)
    assert slos.save_edit(database_url, original, slos.SLOEdit(99.9, "30d"), "ivan", "")
    assert _stored(database_url) == [(99.9, "30d", "ivan")]


def _advisory_lock_waiters(database_url: str) -> int:
    """Sessions of this test's database waiting (not granted) on an advisory lock."""
    rows = fetch_all(
        database_url,
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
        "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    count = rows[0][0]
    assert isinstance(count, int)
    return count


def test_two_concurrent_saves_of_the_same_version_cannot_both_win(database_url: str) -> None:
    """Both editors opened version 1. While a third session holds the store's lock, both saves
    start and wait; when it is released exactly one may win. A check made outside the lock would
    let both pass and the second silently undo the first."""
    seed_slos(database_url)
    (original,) = slos.load_slos(database_url)
    holder = connect(database_url)
    outcomes: dict[str, str] = {}

    def save(who: str, objective: float) -> None:
        try:
            slos.save_edit(database_url, original, slos.SLOEdit(objective, "30d"), who, "")
            outcomes[who] = "saved"
        except slos.ConcurrentEditError:
            outcomes[who] = "refused"

    try:
        with holder.cursor() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (store._APPLY_LOCK,))
            editors = [threading.Thread(target=save, args=args) for args in (("gina", 99.0), ("hugo", 99.9))]
            for editor in editors:
                editor.start()
            # Both editors queue behind the held lock; a save that never takes it just finishes.
            wait_until(
                lambda: (_advisory_lock_waiters(database_url), sum(e.is_alive() for e in editors)),
                timeout=30,
                interval=0.05,
                describe="both editors to wait on the store's lock (lock waiters, editors alive)",
                until=lambda seen: seen[0] == 2 or seen[1] == 0,
            )
        holder.rollback()  # releases the transaction-scoped lock
        for editor in editors:
            editor.join(timeout=30)
    finally:
        holder.close()
    assert sorted(outcomes.values()) == ["refused", "saved"], outcomes
    winner = next(who for who, outcome in outcomes.items() if outcome == "saved")
    assert _stored(database_url) == [(99.0 if winner == "gina" else 99.9, "30d", winner)]
    assert len(slos.revision_rows(database_url, "checkout-availability")) == 2


@pytest.fixture
def prometheus_url(prometheus_factory: Callable[..., launch.ManagedProcess]) -> str:
    """A real (empty) Prometheus: the queries' names need not exist, only parse and run."""
    return prometheus_factory().url


def test_every_field_can_be_edited_and_is_checked_against_prometheus(
    database_url: str, prometheus_url: str
) -> None:
    seed_slos(database_url)
    (original,) = slos.load_slos(database_url)
    edit = slos.SLOEdit(
        objective=99.0,
        time_period="28d",
        min_events=50,
        description="checkout answers",
        detectors=("checkout_errors", "checkout_latency"),
        alert_labels={"team": "payments", "tier": "1"},
        error_query='sum(rate(http_requests_total{code=~"5..",job="shop"}[{{.window}}]))',
        total_query='sum(rate(http_requests_total{job="shop"}[{{.window}}]))',
    )

    assert slos.save_edit(
        database_url, original, edit, "erin", "all fields", slo_checks.query_checker(prometheus_url)
    )

    (stored,) = slos.load_slos(database_url)
    block = stored.block
    assert (block.objective, block.time_period, block.min_events, block.description) == (
        99.0,
        "28d",
        50,
        "checkout answers",
    )
    assert block.detectors == ["checkout_errors", "checkout_latency"]
    assert block.alerting.labels == {"team": "payments", "tier": "1"}
    assert block.sli.events is not None and 'job="shop"' in block.sli.events.total_query
    change = slos.revision_rows(database_url, "checkout-availability")[0]["change"]
    for field in ("objective", "time_period", "min_events", "detectors", "alerting.labels", "sli.events"):
        assert field in change, (field, change)


@pytest.mark.parametrize(
    ("query", "why"),
    [
        ("sum(rate(http_requests_total[{{.window}}])", "unclosed"),  # promtool's parser
        ("sum(rate(http_requests_total[{{.window}}])) by", "by"),
    ],
)
def test_a_query_prometheus_refuses_is_not_saved(
    database_url: str, prometheus_url: str, query: str, why: str
) -> None:
    seed_slos(database_url)
    (original,) = slos.load_slos(database_url)
    with pytest.raises(ValueError, match="total_query"):
        slos.save_edit(
            database_url,
            original,
            slos.SLOEdit(99.5, "30d", total_query=query),
            "erin",
            why,
            slo_checks.query_checker(prometheus_url),
        )
    assert len(slos.revision_rows(database_url, "checkout-availability")) == 1


def test_with_prometheus_down_an_edit_is_not_saved_and_says_why(database_url: str) -> None:
    seed_slos(database_url)
    (original,) = slos.load_slos(database_url)
    with pytest.raises(slo_checks.QueryRefusedError, match="Prometheus could not run it"):
        slos.save_edit(
            database_url,
            original,
            slos.SLOEdit(99.9, "30d"),
            "erin",
            "",
            slo_checks.query_checker(CLOSED_PROMETHEUS),
        )
    assert _stored(database_url) == [(99.5, "30d", "seed")]


def test_bad_alert_labels_are_refused() -> None:
    assert slos.parse_labels("team=shop\n\n tier = 1 ") == {"team": "shop", "tier": "1"}
    with pytest.raises(ValueError, match="line 2"):
        slos.parse_labels("team=shop\nno equals sign")


def test_slo_page_edits_shows_the_diff_and_reverts(
    database_url: str, prometheus_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed_slos(database_url)
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("SLO_PIPELINE_CONFIG", str(tmp_path / "absent.yml"))
    monkeypatch.setenv("PROMETHEUS_URL", prometheus_url)

    at = signed_in_app(database_url, "grace")
    at.sidebar.radio(key="page").set_value("SLOs").run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert list(at.dataframe[0].value["objective %"]) == [99.5]

    key = "checkout-availability"
    at.number_input(key=f"slo_objective_{key}").set_value(99.9)
    at.selectbox(key=f"slo_period_{key}").set_value("28d")
    at.text_area(key=f"slo_alert_labels_{key}").input("team=payments")
    at.text_area(key=f"slo_note_{key}").input("customer contract")
    at.button(key=f"FormSubmitter:slo-edit-{key}-Save change").click().run()

    assert not at.exception and not at.error, [e.value for e in at.error]
    assert _stored(database_url) == [(99.9, "28d", "grace")]
    assert list(at.dataframe[0].value["objective %"]) == [99.9]
    history = at.dataframe[-1].value
    assert list(history["changed_by"]) == ["grace", "seed"]
    assert "objective: 99.5 -> 99.9" in history["change"][0]
    assert list(history["note"]) == ["customer contract", "initial"]
    at.selectbox(key=f"slo_revision_{key}").set_value(2).run()
    diff = at.code[-1].value
    assert "-  objective: 99.5" in diff and "+  objective: 99.9" in diff

    at.selectbox(key=f"slo_revision_{key}").set_value(1).run()
    at.text_input(key=f"slo_revert_note_{key}").input("contract fell through")
    at.button(key=f"FormSubmitter:slo-revert-{key}-1-Revert {key} to revision 1").click().run()

    assert not at.exception and not at.error, [e.value for e in at.error]
    assert _stored(database_url) == [(99.5, "30d", "grace")]
    newest = slos.revision_rows(database_url, key)[0]
    assert (newest["revision"], newest["changed_by"], newest["note"]) == (
        3,
        "grace",
        "revert to revision 1: contract fell through",
    )
    (reverted,) = slos.load_slos(database_url)
    assert reverted.block.alerting.labels == {}


def test_slo_page_is_read_only_for_a_viewer(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed_slos(database_url)
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("SLO_PIPELINE_CONFIG", str(tmp_path / "absent.yml"))
    monkeypatch.setenv("PROMETHEUS_URL", CLOSED_PROMETHEUS)

    at = signed_in_app(database_url, "victor", role="viewer")
    at.sidebar.radio(key="page").set_value("SLOs").run()

    assert not at.exception
    assert_only_prometheus_down(at)
    assert not [n for n in at.number_input if n.key == "slo_objective_checkout-availability"]
    assert any("only editors can change SLOs" in i.value for i in at.info)
    assert _stored(database_url) == [(99.5, "30d", "seed")]
