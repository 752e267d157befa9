"""The operator app rendered headless (streamlit.testing AppTest) against a real database."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.fixtures.database import fetch_all
from tests.fixtures.ui import CLOSED_PROMETHEUS, assert_only_prometheus_down, signed_in_app
from tests.integration.test_streamlit_data import seed_incident, seed_job

pytestmark = pytest.mark.integration


@pytest.fixture
def app_env(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """The app reads its settings from the environment, exactly as under `streamlit run`."""
    config = tmp_path / "pipeline.yml"
    config.write_text(
        "detectors:\n  - name: checkout_latency\n    query: up\n  - name: checkout_errors\n    query: up\n"
    )
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("SLO_PIPELINE_CONFIG", str(config))
    monkeypatch.setenv("PROMETHEUS_URL", CLOSED_PROMETHEUS)
    # Nothing listens there: the Models page must say so instead of showing a traceback.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    return database_url


def _texts(at: AppTest) -> str:
    """Everything the page shows as text, for content assertions."""
    parts = [e.value for e in (*at.markdown, *at.caption, *at.info, *at.warning, *at.success, *at.error)]
    return "\n".join(str(p) for p in parts)


def test_incidents_table_lists_seeded_incidents(app_env: str) -> None:
    seed_incident(app_env, "fp-a", alertname="AnomalyScoreHigh", detector="checkout_latency", slo="checkout")
    seed_incident(app_env, "fp-b", alertname="SLOBurnFast", detector=None, slo="payments", status="resolved")

    at = signed_in_app(app_env)

    assert not at.exception
    assert_only_prometheus_down(at)
    table = at.dataframe[0].value
    assert sorted(table["alertname"]) == ["AnomalyScoreHigh", "SLOBurnFast"]
    assert "excluded" in _texts(at)  # the page says what feedback does to training


def test_incidents_show_their_driver_in_the_table_and_the_details(app_env: str) -> None:
    seed_incident(app_env, "fp-old", alertname="AnomalyDetected", starts_at="2024-05-01T09:00:00Z")
    explained = seed_incident(
        app_env, "fp-new", alertname="AnomalyThreatensSLO", driver="errors:level_vs_long"
    )

    at = signed_in_app(app_env)

    assert not at.exception
    assert_only_prometheus_down(at)
    table = at.dataframe[0].value
    assert list(table["alertname"]) == ["AnomalyThreatensSLO", "AnomalyDetected"]  # newest first
    assert list(table["driver"].fillna("(empty)")) == ["errors:level_vs_long", "(empty)"]
    assert at.selectbox(key="incident_id").value == explained
    assert [c.value for c in at.code] == ["errors:level_vs_long"]

    at.selectbox(key="incident_id").set_value(explained - 1).run()
    assert not at.code
    assert any(t.value.startswith("not recorded") for t in at.text)


def test_filter_by_status_narrows_the_table(app_env: str) -> None:
    seed_incident(app_env, "fp-a", alertname="StillFiring")
    seed_incident(app_env, "fp-b", alertname="AlreadyResolved", status="resolved")

    at = signed_in_app(app_env)
    at.selectbox(key="filter_status").set_value("resolved").run()

    assert list(at.dataframe[0].value["alertname"]) == ["AlreadyResolved"]


def test_submitting_feedback_writes_the_incident_row(app_env: str) -> None:
    incident_id = seed_incident(app_env, "fp-a", alertname="AnomalyScoreHigh", detector="checkout_latency")

    at = signed_in_app(app_env, "alice")
    assert at.selectbox(key="incident_id").value == incident_id
    at.text_area(key=f"note-{incident_id}").input("deploy spike, expected")
    at.button(key=f"mark-false_positive-{incident_id}").click().run()

    assert not at.exception
    rows = fetch_all(
        app_env,
        "SELECT feedback, feedback_by, feedback_note, feedback_at IS NOT NULL FROM incidents WHERE id = %s",
        (incident_id,),
    )
    # The author is the signed-in user: there is no name field to type into.
    assert rows == [("false_positive", "alice", "deploy spike, expected", True)]
    assert any("kept in the next training data" in s.value for s in at.success)
    # Drawn after the callback stored it: the table already shows the verdict.
    assert list(at.dataframe[0].value["feedback"]) == ["false_positive"]


def test_clearing_feedback_is_audited_with_what_was_cleared(app_env: str) -> None:
    incident_id = seed_incident(app_env, "fp-a")
    at = signed_in_app(app_env, "alice")
    at.text_area(key=f"note-{incident_id}").input("looked real")
    at.button(key=f"mark-true_positive-{incident_id}").click().run()
    at.button(key=f"clear-{incident_id}").click().run()

    assert not at.exception
    assert_only_prometheus_down(at)
    assert fetch_all(
        app_env, "SELECT feedback, feedback_by FROM incidents WHERE id = %s", (incident_id,)
    ) == [(None, None)]
    events = fetch_all(
        app_env,
        "SELECT changed_by, old_feedback, old_feedback_by, old_feedback_note, new_feedback "
        "FROM incident_feedback_events WHERE incident_id = %s ORDER BY id",
        (incident_id,),
    )
    assert events == [
        ("alice", None, None, None, "true_positive"),
        ("alice", "true_positive", "alice", "looked real", None),
    ]
    history = at.dataframe[-1].value  # the page shows the trail under the buttons
    assert list(history["new_feedback"].fillna("(cleared)")) == ["(cleared)", "true_positive"]


def test_a_viewer_sees_incidents_but_cannot_give_feedback(app_env: str) -> None:
    incident_id = seed_incident(app_env, "fp-a")

    at = signed_in_app(app_env, "victor", role="viewer")

    assert not at.exception
    assert list(at.dataframe[0].value["id"]) == [incident_id]
    assert not [b for b in at.button if b.key and b.key.startswith("mark-")]
    assert any("only editors can give feedback" in i.value for i in at.info)


def test_models_page_shows_jobs_and_reports_unreachable_mlflow(app_env: str) -> None:
    seed_job(app_env, "checkout_errors", status="failed", error="prometheus timed out")
    seed_job(
        app_env, "checkout_errors", status="succeeded", decision="rejected", reasons=["alarm rate too high"]
    )

    at = signed_in_app(app_env)
    at.sidebar.radio(key="page").set_value("Models").run()
    at.selectbox(key="models_detector").set_value("checkout_errors").run()

    assert not at.exception
    assert any("MLflow registry" in e.value and "unavailable" in e.value for e in at.error)
    jobs = at.dataframe[0].value
    assert sorted(jobs["status"]) == ["failed", "succeeded"]
    assert "alarm rate too high" in list(jobs["decision_reasons"])
    assert "prometheus timed out" in list(jobs["error"])


def _register_versions(tracking_uri: str, name: str, count: int) -> None:
    """Registry entries without trained models: the page only reads versions, aliases and tags."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    client.create_registered_model(name)
    for _ in range(count):
        client.create_model_version(name, source="file:///nonexistent/model")


def test_models_page_rolls_back_after_confirmation(
    app_env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow import MlflowClient

    tracking_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri)
    _register_versions(tracking_uri, "checkout_latency", 3)
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    client.set_registered_model_alias("checkout_latency", "previous", "2")
    client.set_registered_model_alias("checkout_latency", "champion", "3")
    client.set_model_version_tag("checkout_latency", "3", "slo_pipeline.decision", "promoted")
    client.set_model_version_tag("checkout_latency", "1", "slo_pipeline.decision", "rejected")
    client.set_model_version_tag("checkout_latency", "1", "slo_pipeline.reasons", "misses the SLO breach")

    at = signed_in_app(app_env, "dave")
    at.sidebar.radio(key="page").set_value("Models").run()

    assert_only_prometheus_down(at)
    versions = at.dataframe[0].value
    assert list(versions["version"]) == ["3", "2", "1"]
    assert list(versions["aliases"]) == ["champion", "previous", ""]
    assert list(versions["decision"]) == ["promoted", "", "rejected"]
    assert "misses the SLO breach" in list(versions["reasons"])
    rollback = at.button(key="rollback_checkout_latency")
    assert rollback.disabled  # no confirmation yet

    at.checkbox(key="rollback_confirm_checkout_latency").check().run()
    at.button(key="rollback_checkout_latency").click().run()

    assert not at.exception
    assert any("version 2 is the champion now" in s.value for s in at.success)
    model = client.get_registered_model("checkout_latency")
    assert {alias: str(v) for alias, v in model.aliases.items()} == {"champion": "2", "previous": "3"}
    assert client.get_model_version("checkout_latency", "2").tags["slo_pipeline.rollback_by"] == "dave"
    # The confirmation is used up: a second rollback needs a second tick.
    assert at.button(key="rollback_checkout_latency").disabled


def test_alert_supplied_strings_are_shown_as_text_never_as_markdown(app_env: str) -> None:
    """Issue 9 finding 9: alert names, label values, generator URLs and feedback notes come from
    whoever can post alerts or sign in; none of them may become a link or formatting."""
    alertname = "**URGENT** [sign in again](http://evil.example)"
    incident = seed_incident(app_env, "fp-x", alertname=alertname)
    fetch_all(
        app_env,
        "UPDATE incidents SET severity = '# page', generator_url = 'javascript:alert(1)', "
        "feedback = 'true_positive', feedback_by = 'alice', feedback_at = now(), "
        "feedback_note = ':red[ignore] [this](http://evil.example)' WHERE id = %s RETURNING id",
        (incident,),
    )

    at = signed_in_app(app_env)

    assert not at.exception
    shown_as_text = [t.value for t in at.text]
    assert alertname in shown_as_text
    assert "# page" in shown_as_text
    assert any(":red[ignore] [this](http://evil.example)" in t for t in shown_as_text)
    markdown = "\n".join([str(m.value) for m in at.markdown] + [str(s.value) for s in at.subheader])
    assert "evil.example" not in markdown and "URGENT" not in markdown and "javascript" not in markdown
    assert at.get("link_button") == []  # javascript: is not an http(s) link: no button for it
    fetch_all(app_env, "UPDATE incidents SET generator_url = 'http://127.0.0.1:9090/graph' RETURNING id")
    assert len(at.run().get("link_button")) == 1  # an http(s) URL does get its button


def test_every_page_names_a_refused_database_without_a_traceback(
    app_env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL refusing connections after sign-in (Prometheus and MLflow are closed too): each
    page still answers, every error box names the service it could not reach, and none is a
    traceback. The sign-in grace keeps the session (the role read a moment ago)."""
    seed_incident(app_env, "fp-a", alertname="AnomalyScoreHigh", detector="checkout_latency")
    at = signed_in_app(app_env)
    monkeypatch.setenv("DATABASE_URL", "postgresql://postgres@127.0.0.1:9/gone")

    for page in ("Incidents", "Models", "SLOs", "Threshold"):
        at.sidebar.radio(key="page").set_value(page).run()

        assert not at.exception, (page, [e.value for e in at.exception])
        errors = [e.value for e in at.error]
        assert any("PostgreSQL at" in e and "port=9" in e for e in errors), (page, errors)
        unnamed = [e for e in errors if not any(s in e for s in ("PostgreSQL", "Prometheus", "MLflow"))]
        assert not unnamed, (page, unnamed)
        assert not any("Traceback" in e for e in errors)
        assert any("could not be re-checked" in w.value for w in at.warning), page
