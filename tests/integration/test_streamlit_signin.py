"""Sign-in to the operator app (AppTest) against a real PostgreSQL, and `slo-pipeline ui user`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import psycopg2.extensions
import pytest
from streamlit.testing.v1 import AppTest

from slo_pipeline.devstack.pgserver import ManagedPostgres
from streamlit_app import users
from tests.fixtures.database import fetch_all
from tests.fixtures.ui import APP, PASSWORD, add_ui_user, sign_in, signed_in_app
from tests.integration.test_streamlit_data import seed_incident

pytestmark = pytest.mark.integration
PAGES = ["Incidents", "Models", "SLOs", "Threshold"]


@pytest.fixture
def app_env(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    config = tmp_path / "pipeline.yml"
    config.write_text("detectors:\n  - name: checkout_latency\n    query: up\n")
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("SLO_PIPELINE_CONFIG", str(config))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    monkeypatch.setenv("PROMETHEUS_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("SLO_PIPELINE_QUERY_TIMEOUT", "2")
    return database_url


def _texts(at: AppTest) -> str:
    parts = [e.value for e in (*at.markdown, *at.caption, *at.info, *at.warning, *at.success, *at.error)]
    return "\n".join(str(p) for p in parts)


def test_nothing_but_the_sign_in_form_is_shown_before_signing_in(app_env: str) -> None:
    seed_incident(app_env, "fp-a", alertname="SecretOutage")

    at = AppTest.from_file(APP, default_timeout=60).run()

    assert not at.exception
    assert [h.value for h in at.header] == ["Sign in"]
    assert [t.label for t in at.text_input] == ["User name", "Password"]
    assert (
        at.text_input(key="sign_in_password").proto.type
        == at.text_input(key="sign_in_password").proto.PASSWORD
    )
    assert not at.sidebar.radio  # no page picker
    assert not at.dataframe and "SecretOutage" not in _texts(at)


def test_a_wrong_password_or_unknown_name_is_refused_with_one_message(app_env: str) -> None:
    add_ui_user(app_env, "alice")
    for name, password in [("alice", "wrong password here"), ("mallory", PASSWORD), ("", "")]:
        at = sign_in(AppTest.from_file(APP, default_timeout=60), name, password)
        assert not at.exception
        assert [e.value for e in at.error] == ["Wrong user name or password."]
        assert not at.sidebar.radio
        assert at.text_input(key="sign_in_password").value == ""  # not kept in the session


def test_signing_in_shows_the_pages_with_who_is_signed_in(app_env: str) -> None:
    at = signed_in_app(app_env, "alice", role=users.EDITOR)

    assert at.sidebar.radio(key="page").options == PAGES
    captions = [c.value for c in at.sidebar.caption]
    assert "Signed in as **alice** (editor, password)" in captions
    # Whether the database answers, never its user, host or name.
    assert "Database: reachable" in captions
    dsn = psycopg2.extensions.parse_dsn(app_env)
    sidebar_text = "\n".join(captions)
    assert not [dsn[k] for k in ("user", "host", "dbname") if k in dsn and dsn[k] in sidebar_text]
    for page in PAGES:
        at.sidebar.radio(key="page").set_value(page).run()
        assert not at.exception, page

    at.sidebar.button(key="sign_out").click().run()
    assert [h.value for h in at.header] == ["Sign in"]


def test_repeated_failures_lock_the_name_even_for_the_right_password(app_env: str) -> None:
    add_ui_user(app_env, "bob")
    at = AppTest.from_file(APP, default_timeout=60)
    for _ in range(5):
        sign_in(at, "bob", "not the password!")
    sign_in(at, "bob", PASSWORD)

    assert any("Too many failed sign-ins for 'bob'" in e.value for e in at.error)
    assert not at.sidebar.radio


def test_a_removed_user_is_signed_out_on_the_next_click(app_env: str) -> None:
    at = signed_in_app(app_env, "carol")
    users.remove_user(app_env, "carol")

    at.sidebar.radio(key="page").set_value("SLOs").run()

    assert [h.value for h in at.header] == ["Sign in"]
    assert any("was removed" in e.value for e in at.error)


def test_a_role_change_takes_effect_on_the_next_click(app_env: str) -> None:
    incident_id = seed_incident(app_env, "fp-a")
    at = signed_in_app(app_env, "dora", role=users.EDITOR)
    assert at.button(key=f"mark-false_positive-{incident_id}")

    users.update_user(app_env, "dora", users.VIEWER, None)
    at.run()

    assert not [b for b in at.button if b.key and b.key.startswith("mark-")]
    assert "Signed in as **dora** (viewer, password)" in [c.value for c in at.sidebar.caption]


def test_database_down_before_sign_in_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://postgres@127.0.0.1:9/slo")
    monkeypatch.setenv("SLO_PIPELINE_CONFIG", str(tmp_path / "absent.yml"))

    at = sign_in(AppTest.from_file(APP, default_timeout=60), "alice")

    assert not at.exception
    (message,) = [e.value for e in at.error]
    assert message.startswith("Cannot sign in:") and "port=9" in message and "Connection refused" in message


def test_pages_name_the_database_when_it_goes_down_after_sign_in(
    private_postgres: ManagedPostgres,
    private_database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A signed-in operator keeps the role read before the outage for a while, so every page
    answers: the database parts name PostgreSQL, the rest (Prometheus here) work or say why not."""
    config = tmp_path / "pipeline.yml"
    config.write_text("detectors:\n  - name: checkout_latency\n    query: up\n")
    monkeypatch.setenv("DATABASE_URL", private_database_url)
    monkeypatch.setenv("SLO_PIPELINE_CONFIG", str(config))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("PROMETHEUS_URL", "http://127.0.0.1:9")
    at = signed_in_app(private_database_url, "erin")

    private_postgres.stop()

    for page in PAGES:
        at.sidebar.radio(key="page").set_value(page).run()
        assert not at.exception, page
        assert any("could not be re-checked" in w.value for w in at.warning), page
        if page in ("Incidents", "SLOs"):
            assert any("PostgreSQL" in e.value and "unavailable" in e.value for e in at.error), page


def _cli(*args: str, stdin: str = "", env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "slo_pipeline.cli", "ui", "user", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def test_ui_user_add_reads_the_password_from_stdin_and_it_signs_in(
    app_env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    env = {**os.environ, "DATABASE_URL": app_env}
    added = _cli("add", "frank", "--role", "viewer", stdin=PASSWORD + "\n", env=env)
    assert added.returncode == 0, added.stderr
    assert PASSWORD not in added.stdout + added.stderr

    (stored,) = fetch_all(app_env, "SELECT role, password_hash FROM ui_users WHERE name = 'frank'")
    assert stored[0] == "viewer" and stored[1].startswith("scrypt$") and PASSWORD not in stored[1]

    at = sign_in(AppTest.from_file(APP, default_timeout=60), "frank")
    assert "Signed in as **frank** (viewer, password)" in [c.value for c in at.sidebar.caption]

    again = _cli("add", "frank", "--role", "editor", stdin=PASSWORD + "\n", env=env)
    assert again.returncode == 2 and "already exists" in again.stderr
    short = _cli("add", "gina", "--role", "editor", stdin="short\n", env=env)
    assert short.returncode == 2 and "at least 12" in short.stderr
    bad_name = _cli("add", "gi na", "--role", "editor", stdin=PASSWORD + "\n", env=env)
    assert bad_name.returncode == 2 and "not allowed" in bad_name.stderr
    promoted = _cli("set", "frank", "--role", "editor", env=env)
    assert promoted.returncode == 0, promoted.stderr
    listing = _cli("list", env=env)
    assert listing.stdout.splitlines() == ["frank\teditor\tpassword"]
    assert _cli("remove", "frank", env=env).returncode == 0
    assert fetch_all(app_env, "SELECT count(*) FROM ui_users") == [(0,)]
    down = _cli("list", env={**env, "DATABASE_URL": "postgresql://postgres@127.0.0.1:9/x"})
    assert down.returncode == 1 and "port=9" in down.stderr
