"""A budget applied in the UI reaches the exporter and the worker's training without a restart."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from exporter.service import ExporterService
from slo_pipeline.adapters.budgets import BudgetOverrides
from slo_pipeline.adapters.postgres import migrate
from slo_pipeline.core.model import DetectorModel
from slo_pipeline.core.training import fit_detector_model
from slo_pipeline.devstack.pgserver import ManagedPostgres
from slo_pipeline.settings import PipelineConfig, load_settings
from streamlit_app import budgets
from tests.fixtures.database import fetch_all
from tests.unit.test_exporter_cycle import LATENCY, NOW, InMemoryModels, InMemorySeries, normal_history

pytestmark = pytest.mark.integration


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_an_override_wins_over_the_yaml_after_the_cache_expires(empty_database_url: str) -> None:
    clock = Clock()
    overrides = BudgetOverrides(empty_database_url, ttl_seconds=30, clock=clock)
    assert overrides.budget(LATENCY) == LATENCY.false_alarms_per_week  # not migrated: the YAML's

    migrate(empty_database_url)
    budgets.apply(empty_database_url, LATENCY.name, 4.0, "too many misses", "alice")
    assert overrides.budget(LATENCY) == LATENCY.false_alarms_per_week  # still cached
    clock.now += 31
    assert overrides.budget(LATENCY) == 4.0
    assert overrides.apply(LATENCY).false_alarms_per_week == 4.0

    assert budgets.remove(empty_database_url, LATENCY.name, "back to the YAML", "bob")
    clock.now += 31
    assert overrides.apply(LATENCY) is LATENCY
    assert fetch_all(
        empty_database_url,
        "SELECT revision, changed_by, old_budget, new_budget, reason "
        "FROM detector_budget_revisions ORDER BY revision",
    ) == [(1, "alice", None, 4.0, "too many misses"), (2, "bob", 4.0, None, "back to the YAML")]


def test_a_database_outage_keeps_the_last_known_override(
    private_postgres: ManagedPostgres, private_database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock()
    overrides = BudgetOverrides(private_database_url, ttl_seconds=30, clock=clock)
    budgets.apply(private_database_url, LATENCY.name, 3.0, "fewer pages", "alice")
    assert overrides.budget(LATENCY) == 3.0

    private_postgres.stop()
    with caplog.at_level(logging.WARNING, logger="slo_pipeline.adapters.budgets"):
        for _ in range(3):
            clock.now += 31
            assert overrides.budget(LATENCY) == 3.0
    assert len([r for r in caplog.records if "budget overrides unavailable" in r.message]) == 1


@pytest.fixture(scope="module")
def trained_model() -> DetectorModel:
    history = 1.0 + 0.05 * np.random.default_rng(0).standard_normal((400, 4))
    model, _ = fit_detector_model(history, LATENCY)
    return model


def _scores(service: ExporterService) -> dict[str, float]:
    page = {}
    for line in service.page.body().decode().splitlines():
        if line.startswith("anomaly_score{"):
            series, _, value = line.rpartition(" ")
            page[series] = float(value)
    return page


def test_the_exporter_scores_with_the_applied_budget_without_a_restart(
    database_url: str, trained_model: DetectorModel
) -> None:
    models = InMemoryModels()
    models.add("latency", "1", trained_model)
    labels = [{"__name__": "lat", "route": r} for r in ("/a", "/b")]
    series = InMemorySeries({"latency_q": (labels, normal_history(2))})
    clock = Clock()
    settings = load_settings(pipeline=PipelineConfig(detectors=[LATENCY]), database_url=database_url)
    service = ExporterService(
        settings,
        model_source=models,
        series_source=series,
        wall_clock=lambda: NOW,
        budgets=BudgetOverrides(database_url, ttl_seconds=30, clock=clock),
    )
    service.run_cycle()
    before = _scores(service)

    budgets.apply(database_url, "latency", 50.0, "alarm on less", "alice")
    clock.now += 31
    service.run_cycle()
    after = _scores(service)

    # score = log p / log p*: the same p under a budget 50x larger scores log p*_1 / log p*_50 higher.
    old = trained_model.alarm_threshold(LATENCY.false_alarms_per_week, LATENCY.step_seconds)
    new = trained_model.alarm_threshold(50.0, LATENCY.step_seconds)
    assert set(after) == set(before) and before
    for key, value in before.items():
        assert after[key] == pytest.approx(value * np.log(old) / np.log(new), rel=1e-3, abs=1e-6)
