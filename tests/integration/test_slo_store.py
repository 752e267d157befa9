"""SLOs in a real PostgreSQL (fresh, migrated database per test): upsert, audit trail, round trip."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from slo_pipeline.adapters.postgres import connect
from slo_pipeline.slo import store
from slo_pipeline.slo.spec import SpecError, dump_specs, parse_specs
from tests.fixtures.paths import REPO_ROOT

pytestmark = pytest.mark.integration

EXAMPLE = REPO_ROOT / "examples" / "slos.yml"
NAMES = ["demo-availability", "demo-checkout-availability", "demo-latency"]


def example_slos():  # type: ignore[no-untyped-def]
    return parse_specs(EXAMPLE.read_text(encoding="utf-8"), str(EXAMPLE))


def revisions(database_url: str) -> list[tuple[object, ...]]:
    conn = connect(database_url)
    try:
        with conn, conn.cursor() as cur:
            cur.execute("SELECT slo_name, revision, changed_by, change_note FROM slo_revisions ORDER BY id")
            return cur.fetchall()
    finally:
        conn.close()


def cli(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": database_url}
    return subprocess.run(
        [sys.executable, "-m", "slo_pipeline.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def test_apply_records_one_revision_per_real_change(database_url: str) -> None:
    conn = connect(database_url)
    try:
        first = store.apply_slos(conn, example_slos(), changed_by="alice", change_note="initial")
        assert first.created == NAMES and not first.updated and not first.unchanged
        assert revisions(database_url) == [(name, 1, "alice", "initial") for name in NAMES]

        again = store.apply_slos(conn, example_slos(), changed_by="bob")
        assert again.unchanged == NAMES and not again.changed
        assert len(revisions(database_url)) == 3  # nothing changed, nothing recorded

        text = EXAMPLE.read_text(encoding="utf-8").replace("objective: 99.5", "objective: 99.9")
        changed = store.apply_slos(conn, parse_specs(text), changed_by="carol", change_note="tighter")
        assert changed.updated == ["demo-availability"]
        (latest, *_) = store.list_revisions(conn, "demo-availability")
        assert (latest.revision, latest.changed_by, latest.change_note) == (2, "carol", "tighter")
        assert latest.old_spec is not None and latest.new_spec is not None
        assert latest.old_spec["slos"][0]["objective"] == 99.5
        assert latest.new_spec["slos"][0]["objective"] == 99.9
        with conn, conn.cursor() as cur:
            cur.execute(
                "SELECT objective, updated_by, time_period FROM slos WHERE name = 'demo-availability'"
            )
            assert cur.fetchone() == (99.9, "carol", "30d")
    finally:
        conn.close()


def test_prune_deletes_and_keeps_the_history(database_url: str) -> None:
    conn = connect(database_url)
    try:
        store.apply_slos(conn, example_slos(), changed_by="alice")
        only_latency = [s for s in example_slos() if s.name == "demo-latency"]
        result = store.apply_slos(conn, only_latency, changed_by="dave", change_note="retire", prune=True)
        assert result.deleted == ["demo-availability", "demo-checkout-availability"]
        assert [s.name for s in store.load_slos(conn)] == ["demo-latency"]
        (deleted, created) = store.list_revisions(conn, "demo-availability")
        assert (deleted.revision, deleted.changed_by, deleted.change_note) == (2, "dave", "retire")
        assert deleted.new_spec is None and deleted.old_spec is not None
        assert created.old_spec is None
        # Re-creating continues the numbering.
        store.apply_slos(conn, example_slos(), changed_by="erin")
        assert store.list_revisions(conn, "demo-availability")[0].revision == 3
        assert store.delete_slo(conn, "demo-latency", changed_by="frank")
        assert not store.delete_slo(conn, "demo-latency", changed_by="frank")
        assert store.list_revisions(conn, "demo-latency")[0].changed_by == "frank"
    finally:
        conn.close()


def test_the_trigger_audits_edits_made_outside_the_store(database_url: str) -> None:
    conn = connect(database_url)
    try:
        store.apply_slos(conn, example_slos(), changed_by="alice")
        with conn, conn.cursor() as cur:
            cur.execute("UPDATE slos SET updated_at = now() WHERE name = 'demo-latency'")  # no spec change
            cur.execute(
                "UPDATE slos SET spec = jsonb_set(spec, '{slos,0,description}', '\"by hand\"'), "
                "updated_by = 'psql-user' WHERE name = 'demo-latency'"
            )
        (latest, first) = store.list_revisions(conn, "demo-latency")
        assert (latest.revision, latest.changed_by) == (2, "psql-user")
        assert latest.new_spec is not None and latest.new_spec["slos"][0]["description"] == "by hand"
        assert first.revision == 1
    finally:
        conn.close()


def test_load_revalidates_stored_specs(database_url: str) -> None:
    conn = connect(database_url)
    try:
        store.apply_slos(conn, example_slos(), changed_by="alice")
        assert store.detectors_for_slo(conn, "demo-availability") == [
            "demo_error_ratio",
            "demo_request_rate",
            "demo_route_health",
        ]
        assert store.detectors_for_slo(conn, "demo-checkout-availability") == []
        assert store.detectors_for_slo(conn, "no-such-slo") == []
        with conn, conn.cursor() as cur:
            cur.execute(
                "UPDATE slos SET spec = jsonb_set(spec, '{slos,0,objective}', '0'), updated_by = 'x' "
                "WHERE name = 'demo-latency'"
            )
        with pytest.raises(SpecError, match=r"slos\[0\] \(demo-latency\)\.objective: must be in \(0, 100\]"):
            store.load_slos(conn)
    finally:
        conn.close()


def test_changed_by_is_required(database_url: str) -> None:
    conn = connect(database_url)
    try:
        with pytest.raises(ValueError, match="changed_by must name who"):
            store.apply_slos(conn, example_slos(), changed_by=" ")
    finally:
        conn.close()


def test_export_then_apply_is_a_no_op(database_url: str) -> None:
    conn = connect(database_url)
    try:
        store.apply_slos(conn, example_slos(), changed_by="alice")
        exported = dump_specs(store.load_slos(conn))
        result = store.apply_slos(conn, parse_specs(exported), changed_by="bob")
        assert not result.changed and result.unchanged == NAMES
        assert len(revisions(database_url)) == 3
    finally:
        conn.close()


def test_cli_apply_export_round_trip_renders_rules(database_url: str, tmp_path: Path) -> None:
    out = tmp_path / "rules"
    applied = cli(
        database_url, "slo", "apply", "-f", str(EXAMPLE), "--by", "ci", "--note", "seed", "--out", str(out)
    )
    assert applied.returncode == 0, applied.stderr
    assert '"created": ["demo-availability", "demo-checkout-availability", "demo-latency"]' in applied.stdout
    rendered = out / "demo.rules.yml"
    assert rendered.read_text(encoding="utf-8") == (REPO_ROOT / "rules" / "slo" / "demo.rules.yml").read_text(
        encoding="utf-8"
    )

    exported_file = tmp_path / "exported.yml"
    exported = cli(database_url, "slo", "export", "-o", str(exported_file))
    assert exported.returncode == 0, exported.stderr
    documents = list(yaml.safe_load_all(exported_file.read_text(encoding="utf-8")))
    assert [d["service"] for d in documents] == ["demo"]
    assert documents[0]["version"] == "prometheus/v1"

    again = cli(database_url, "slo", "apply", "-f", str(exported_file), "--by", "ci", "--out", str(out))
    assert again.returncode == 0, again.stderr
    assert '"created": [], "updated": [], "unchanged": ["demo-availability"' in again.stdout
    assert '"written": [], "unchanged": ["demo.rules.yml"]' in again.stdout
    assert len(revisions(database_url)) == 3

    history = cli(database_url, "slo", "history", "demo-latency")
    assert history.returncode == 0 and '"changed_by": "ci"' in history.stdout


def test_cli_apply_refuses_an_invalid_spec_without_touching_the_database(
    database_url: str, tmp_path: Path
) -> None:
    spec = tmp_path / "bad.yml"
    spec.write_text(
        EXAMPLE.read_text(encoding="utf-8").replace(
            'code=~"5.."}[{{.window}}]))', 'code=~"5.."}[{{.window}}])'
        ),
        encoding="utf-8",
    )
    completed = cli(database_url, "slo", "apply", "-f", str(spec), "--out", str(tmp_path / "rules"))
    assert completed.returncode == 2
    assert (
        "slo 'demo-availability' (service 'demo') sli.events.error_query: Prometheus refuses it"
        in completed.stderr
    )
    assert revisions(database_url) == []
    assert not (tmp_path / "rules").exists()
