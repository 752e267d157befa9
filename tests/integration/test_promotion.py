"""Validation decides what serves: a bad candidate is rejected with a recorded reason, a good
one is promoted, and a rollback brings the previous version back to the exporter.

Real Prometheus (backfilled from the simulator), real MLflow registry (sqlite), real PostgreSQL.
The bad candidate is a real model trained on a flat-lined window — what a stale exporter that
repeats its last value produces — so its calibration believes the series never moves, and on
real held-out data it alarms constantly.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from exporter.service import ExporterService
from slo_pipeline.adapters import registry
from slo_pipeline.core.training import fit_detector_model
from slo_pipeline.orchestration.retrain import (
    MlflowRegistry,
    PrometheusSloEvidence,
    judge_and_register,
    prepare_training_data,
    retrain_detector,
)
from slo_pipeline.settings import Settings
from tests.fixtures.simulated import SimulatedService, simulated_service

pytestmark = pytest.mark.integration

DETECTOR = "promotion_request_rate"
PIPELINE = {
    "detectors": [
        {
            "name": DETECTOR,
            "query": "sum by (route) (rate(demo_http_requests_total[5m]))",
            "step_seconds": 60,
            "training_window_seconds": 2 * 86400,
            "false_alarms_per_week": 1,
        }
    ]
}


@pytest.fixture
def service(tmp_path: Path, database_url: str, prometheus_factory) -> SimulatedService:
    return simulated_service(
        tmp_path, database_url=database_url, prometheus_factory=prometheus_factory, pipeline=PIPELINE, seed=7
    )


def served_version(settings: Settings) -> str:
    service = ExporterService(settings)
    service.run_cycle()
    page = service.page.body().decode()
    lines = [line for line in page.splitlines() if line.startswith("anomaly_model_info{")]
    assert len(lines) == 1, page
    return lines[0].split('model_version="')[1].split('"')[0]


def test_bad_candidate_rejected_good_promoted_rollback_serves_previous(service: SimulatedService) -> None:
    settings, anchor = service.settings, service.anchor
    detector = settings.pipeline.detector(DETECTOR)

    first = retrain_detector(settings, DETECTOR, now=anchor)
    assert first.promoted, first.reasons
    assert served_version(settings) == first.model_version

    # A candidate trained on a flat-lined window: same shape of data, no variation at all.
    data = prepare_training_data(settings, detector, end=anchor)
    history = data.block.values[: data.split]
    levels = np.nanmedian(history, axis=0)
    flat = np.broadcast_to(levels, history.shape) * (
        1 + 1e-6 * np.random.default_rng(0).standard_normal(history.shape)
    )
    bad_model, bad_report = fit_detector_model(flat, detector)
    bad = judge_and_register(
        settings,
        detector,
        data,
        bad_model,
        bad_report,
        registry=MlflowRegistry(settings),
        evidence=PrometheusSloEvidence(settings),
    )
    assert not bad.promoted
    assert any("allows" in reason or "fires on" in reason for reason in bad.reasons), bad.reasons
    # Rejected, yet registered and tagged with why, and never serving.
    versions = {v["version"]: v for v in registry.list_versions(settings, DETECTOR)}
    assert versions[bad.model_version]["tags"]["slo_pipeline.decision"] == "rejected"
    recorded = versions[bad.model_version]["tags"]["slo_pipeline.reasons"]
    assert "allows" in recorded or "fires on" in recorded
    assert registry.champion_ref(settings, DETECTOR).version == first.model_version
    assert served_version(settings) == first.model_version

    # A good candidate (clean training on the same history) is promoted; the old one is kept.
    good = retrain_detector(settings, DETECTOR, now=anchor)
    assert good.promoted, good.reasons
    assert versions[first.model_version]["tags"]["slo_pipeline.decision"] == "promoted"
    assert registry.champion_ref(settings, DETECTOR).version == good.model_version
    assert registry.alias_ref(settings, DETECTOR, registry.PREVIOUS).version == first.model_version
    assert served_version(settings) == good.model_version

    # One-click rollback: @previous serves again.
    restored = registry.rollback(
        settings, DETECTOR, to_version=first.model_version, expected_champion=good.model_version
    )
    assert restored.version == first.model_version
    assert served_version(settings) == first.model_version
