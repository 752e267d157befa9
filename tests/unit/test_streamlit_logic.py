"""Pure parts of the operator app: validation, SQL filters, table shaping, threshold replay."""

from __future__ import annotations

import numpy as np
import pytest

from slo_pipeline.core.rule_timing import RuleTiming, anomaly_alert_rule
from slo_pipeline.settings import DetectorConfig
from slo_pipeline.slo.spec import SpecError, parse_specs
from streamlit_app import incidents, models, slos, threshold

SPEC = """
version: prometheus/v1
service: checkout
slos:
  - name: availability
    objective: 99.5
    sli: {raw: {error_ratio_query: "sum(rate(errors[{{.window}}])) / sum(rate(total[{{.window}}]))"}}
    alerting: {name: CheckoutAvailability}
"""


# --- incidents ---------------------------------------------------------------------------------


def test_feedback_is_trimmed_and_checked() -> None:
    assert incidents.validate_feedback("true_positive", " real ") == incidents.Feedback(
        "true_positive", "real"
    )
    with pytest.raises(ValueError, match="choose"):
        incidents.validate_feedback(None, "")
    with pytest.raises(ValueError, match="must be one of"):
        incidents.validate_feedback("maybe", "")
    with pytest.raises(ValueError, match="note is longer"):
        incidents.validate_feedback("false_positive", "x" * (incidents.MAX_NOTE_CHARS + 1))


def test_where_clause_uses_parameters_for_every_value() -> None:
    assert incidents.where_clause(incidents.IncidentFilter()) == ("", [])
    where, params = incidents.where_clause(
        incidents.IncidentFilter(status="firing", detector="x'; DROP TABLE incidents; --", slo="s")
    )
    assert where == "WHERE status = %s AND detector = %s AND slo = %s"
    assert params == ["firing", "x'; DROP TABLE incidents; --", "s"]
    assert incidents.where_clause(incidents.IncidentFilter(feedback=incidents.UNREVIEWED)) == (
        "WHERE feedback IS NULL",
        [],
    )
    assert incidents.where_clause(incidents.IncidentFilter(feedback="false_positive")) == (
        "WHERE feedback = %s",
        ["false_positive"],
    )


def test_training_effect_matches_what_training_reads() -> None:
    # incident_history: true positives are cut from training, unreviewed ones are kept.
    assert "excluded" in incidents.TRAINING_EFFECT[incidents.TRUE_POSITIVE]
    assert "kept" in incidents.TRAINING_EFFECT[None]
    assert "normal" in incidents.TRAINING_EFFECT[incidents.FALSE_POSITIVE]


# --- models ------------------------------------------------------------------------------------

VERSIONS = [
    {
        "version": "3",
        "run_id": "r3",
        "aliases": ["champion"],
        "tags": {"slo_pipeline.decision": "promoted", "slo_pipeline.reasons": "ok"},
        "created_at_ms": 1_700_000_000_000,
    },
    {"version": "2", "run_id": "r2", "aliases": [], "tags": {"slo_pipeline.decision": "rejected"}},
    {"version": "1", "run_id": "r1", "aliases": ["previous"], "tags": {}, "created_at_ms": None},
]


def test_version_rows_expose_aliases_and_decision_tags() -> None:
    rows = models.version_rows(VERSIONS)
    assert [r["version"] for r in rows] == ["3", "2", "1"]
    assert [r["aliases"] for r in rows] == ["champion", "", "previous"]
    assert [r["decision"] for r in rows] == ["promoted", "rejected", ""]
    assert rows[0]["reasons"] == "ok"
    assert rows[0]["created_at"].year == 2023
    assert rows[2]["created_at"] is None


def test_rollback_plan_needs_a_previous_version() -> None:
    assert models.rollback_plan("d", VERSIONS) == models.RollbackPlan(detector="d", current="3", target="1")
    without_previous = [{**v, "aliases": [a for a in v["aliases"] if a != "previous"]} for v in VERSIONS]
    assert models.rollback_plan("d", without_previous) is None


def test_format_reasons_accepts_any_json() -> None:
    assert models.format_reasons(None) == ""
    assert models.format_reasons(["a", "b"]) == "a; b"
    assert models.format_reasons("plain") == "plain"
    assert models.format_reasons({"b": 1, "a": 2}) == '{"a": 2, "b": 1}'


# --- SLOs --------------------------------------------------------------------------------------


def test_apply_edit_changes_only_objective_and_period_and_revalidates() -> None:
    (slo,) = parse_specs(SPEC)
    edited = slos.apply_edit(slo, slos.SLOEdit(objective=99.9, time_period=" 28d "))
    assert (edited.block.objective, edited.block.time_period) == (99.9, "28d")
    assert edited.block.sli == slo.block.sli
    with pytest.raises(SpecError, match="objective"):
        slos.apply_edit(slo, slos.SLOEdit(objective=0.0, time_period="30d"))
    with pytest.raises(SpecError, match="time_period"):
        slos.apply_edit(slo, slos.SLOEdit(objective=99.0, time_period="1000d"))


def test_spec_changes_spell_out_old_and_new() -> None:
    (slo,) = parse_specs(SPEC)
    old = slo.to_document()
    new = slos.apply_edit(slo, slos.SLOEdit(objective=99.9, time_period="28d")).to_document()
    assert slos.spec_changes(old, new) == ["objective: 99.5 -> 99.9", "time_period: '30d' -> '28d'"]
    assert slos.spec_changes(None, new) == ["created"]
    assert slos.spec_changes(old, None) == ["deleted"]
    assert slos.spec_changes(old, old) == []


def test_budget_minutes_and_period_choices() -> None:
    assert slos.budget_minutes(99.9, 30) == pytest.approx(43.2)
    assert slos.period_choices("45d") == ["7d", "14d", "28d", "30d", "45d", "90d"]


# --- threshold preview -------------------------------------------------------------------------

HOURLY = DetectorConfig(name="d", query="up", step_seconds=3600)  # 168 samples per week
# The shipped rule (for: 2m, keep_firing_for: 15m, evaluated every 15 s) at an hourly step.
HOURLY_RULE = anomaly_alert_rule(3600, RuleTiming(120.0, 900.0, 15.0))


def test_threshold_follows_the_detectors_own_rule() -> None:
    assert threshold.threshold_for(HOURLY, 1.0) == pytest.approx(1 / 168)
    assert (
        threshold.threshold_for(HOURLY, 2.0)
        == HOURLY.model_copy(update={"false_alarms_per_week": 2.0}).tail_probability_threshold
    )


def test_preview_counts_alarm_onsets_per_budget() -> None:
    probabilities = np.full((168, 3), 0.5)
    probabilities[10:15, 0] = 1e-6  # far beyond any budget: one alarm
    probabilities[50:55, 1] = 0.008  # alarms only once the budget allows more than 1/168 per sample
    probabilities[:, 2] = np.nan  # never scored: never alarms

    rows = {
        r.false_alarms_per_week: r
        for r in threshold.preview(probabilities, HOURLY, [0.5, 1.0, 2.0], HOURLY_RULE)
    }

    assert rows[0.5].alarms == 1 and rows[1.0].alarms == 1
    assert rows[2.0].alarms == 2
    assert rows[2.0].series_with_alarms == 2
    assert rows[2.0].alarms_per_series_week == pytest.approx(2 / 3)
    assert 0 < rows[1.0].firing_share < rows[2.0].firing_share


def test_preview_rejects_a_vector() -> None:
    with pytest.raises(ValueError, match="time, series"):
        threshold.preview(np.zeros(5), HOURLY, [1.0], HOURLY_RULE)


def test_budgets_to_show_include_configured_and_proposed() -> None:
    shown = threshold.budgets_to_show(3.0, 0.25)
    assert 3.0 in shown and 0.25 in shown and shown == sorted(shown)
