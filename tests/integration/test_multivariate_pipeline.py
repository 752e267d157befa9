"""A multivariate detector through the real pipeline: Prometheus -> training -> MLflow -> exporter.

Three SLIs of each route of the simulated service (request rate, 5xx ratio, p95 latency) are
fetched as three queries from a real Prometheus backfilled by the simulator, joined per route,
trained on as one vector, registered and promoted in a real MLflow registry (sqlite), then
loaded by the exporter, which publishes one score per route.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from exporter.service import ExporterService
from slo_pipeline.adapters import lake, registry
from slo_pipeline.devstack.simulator.model import DEFAULT_ROUTES
from slo_pipeline.orchestration.retrain import retrain_detector
from tests.fixtures.simulated import SimulatedService, simulated_service

pytestmark = pytest.mark.integration

DETECTOR = "route_health"
SIGNALS = [
    {"name": "request_rate", "query": "sum by (route) (rate(demo_http_requests_total[5m]))"},
    {
        "name": "error_ratio",
        "query": 'sum by (route) (rate(demo_http_requests_total{code=~"5.."}[5m]))'
        " / sum by (route) (rate(demo_http_requests_total[5m]))",
    },
    {
        "name": "latency_p95",
        "query": "histogram_quantile(0.95,"
        " sum by (route, le) (rate(demo_http_request_duration_seconds_bucket[5m])))",
    },
]


@pytest.fixture
def service(tmp_path: Path, database_url: str, prometheus_factory) -> SimulatedService:
    pipeline = {
        "detectors": [
            {
                "name": DETECTOR,
                "signals": SIGNALS,
                "step_seconds": 60,
                "training_window_seconds": 2 * 86400,
                "false_alarms_per_week": 1,
            }
        ]
    }
    return simulated_service(
        tmp_path, database_url=database_url, prometheus_factory=prometheus_factory, pipeline=pipeline, seed=11
    )


def test_multivariate_detector_trains_registers_and_serves_one_score_per_route(
    service: SimulatedService,
) -> None:
    settings = service.settings
    outcome = retrain_detector(settings, DETECTOR, now=service.anchor)
    assert outcome.promoted, outcome.reasons

    model = registry.load_model(settings, registry.champion_ref(settings, DETECTOR))
    assert model.signals == ("request_rate", "error_ratio", "latency_p95")
    assert "latency_p95:level_vs_long" in model.feature_names
    assert "error_ratio:level_vs_other_signals" in model.feature_names

    # The lake keeps every signal of every route.
    trained = lake.read_slice(settings.data_lake, DETECTOR, start=service.anchor - 86400, end=service.anchor)
    assert set(trained.rows.column("signal").to_pylist()) == {"request_rate", "error_ratio", "latency_p95"}

    service = ExporterService(settings)
    report = service.run_cycle()
    assert report.up == {DETECTOR: True}, report.errors
    page = service.page.body().decode()
    scores = [line for line in page.splitlines() if line.startswith("anomaly_score{")]
    probabilities = [line for line in page.splitlines() if line.startswith("anomaly_tail_probability{")]
    routes = sorted(line.split('route="')[1].split('"')[0] for line in scores)
    assert routes == sorted(profile.route for profile in DEFAULT_ROUTES)
    # One series per route, labelled by the joined label set only (no __name__ from any signal).
    assert all(line.startswith(f'anomaly_score{{detector="{DETECTOR}",route="') for line in scores)
    assert all(0.0 <= float(line.rsplit(" ", 1)[1]) <= 1.0 for line in probabilities)
    assert f'anomaly_model_info{{detector="{DETECTOR}",model_name="{DETECTOR}",model_version="1"' in page
