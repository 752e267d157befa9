"""The exporter against a Prometheus that fails one detector's query in every way it can fail:
an error status, no answer, an answer that never ends, one over the size cap, one cut short,
and one with gaps. The other detector, answered correctly by the same server, is scored every
time, and `anomaly_exporter_up` / `anomaly_exporter_query_errors_total{reason}` say what
happened. The server is a loopback fake that parses the queries it gets
(tests/fixtures/faulty_prometheus.py); the model registry is in memory (not under test here).
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import numpy as np
import pytest

from exporter.service import ExporterService
from slo_pipeline.adapters.prometheus import PrometheusQueryError, fetch_range_answer
from slo_pipeline.adapters.prometheus_connection import QUERY_ERROR_REASONS, PrometheusConnection
from slo_pipeline.core.model import DetectorModel
from slo_pipeline.core.training import fit_detector_model
from slo_pipeline.settings import DetectorConfig, FeatureWindows, PipelineConfig, load_settings
from tests.fixtures.faulty_prometheus import FaultyPrometheus, start_faulty_prometheus, stop_faulty_prometheus
from tests.unit.test_exporter_cycle import InMemoryModels, samples

pytestmark = pytest.mark.integration

WINDOWS = FeatureWindows(short=3, medium=6, long=12)
GOOD = DetectorConfig(name="good", query="good_metric", step_seconds=60, windows=WINDOWS, n_estimators=20)
BAD = DetectorConfig(name="bad", query="bad_metric", step_seconds=60, windows=WINDOWS, n_estimators=20)
TIMEOUT = 1.0
CAP = 300_000  # bytes: the 3-series answers are ~5 KB, the oversized one ~1.7 MB


@pytest.fixture(scope="module")
def model() -> DetectorModel:
    history = 1.0 + 0.05 * np.random.default_rng(0).standard_normal((400, 4))
    trained, _ = fit_detector_model(history, GOOD)
    return trained


@pytest.fixture
def prometheus() -> Iterator[FaultyPrometheus]:
    fake = start_faulty_prometheus(FaultyPrometheus({"good_metric": "ok", "bad_metric": "ok"}))
    yield fake
    stop_faulty_prometheus(fake)


def _service(prometheus: FaultyPrometheus, model: DetectorModel) -> ExporterService:
    settings = load_settings(
        pipeline=PipelineConfig(detectors=[GOOD, BAD]),
        prometheus_url=prometheus.url,
        query_timeout_seconds=TIMEOUT,
        prometheus_max_response_bytes=CAP,
        exporter_interval_seconds=3600.0,
    )
    models = InMemoryModels()
    models.add("good", "1", model)
    models.add("bad", "1", model)
    return ExporterService(settings, model_source=models)


@pytest.mark.parametrize(
    ("behaviour", "reason"),
    [
        ("status_500", "http_status"),
        ("hang", "timeout"),
        ("drip", "timeout"),
        ("oversized", "oversized"),
        ("cut", "bad_answer"),
    ],
)
def test_a_failing_query_takes_down_only_its_detector_and_says_why(
    prometheus: FaultyPrometheus, model: DetectorModel, behaviour: str, reason: str
) -> None:
    service = _service(prometheus, model)
    assert service.run_cycle().up == {"good": True, "bad": True}
    prometheus.behaviours["bad_metric"] = behaviour

    began = time.monotonic()
    report = service.run_cycle()
    elapsed = time.monotonic() - began

    assert report.up == {"good": True, "bad": False}, report.errors
    assert report.published["good"] == prometheus.series
    # One deadline, not one per socket read, and a timeout is never retried: a hang lasts 30 s
    # and a drip minutes, so 4x the timeout leaves a loaded machine room and still tells them apart.
    assert elapsed < 4 * TIMEOUT, f"{behaviour} held the cycle for {elapsed:.1f}s"
    page = samples(service)
    assert page['anomaly_exporter_up{detector="good"}'] == 1
    assert page['anomaly_exporter_up{detector="bad"}'] == 0
    errors = {
        r: page[f'anomaly_exporter_query_errors_total{{detector="bad",reason="{r}"}}']
        for r in QUERY_ERROR_REASONS
    }
    assert errors == {r: (1.0 if r == reason else 0.0) for r in QUERY_ERROR_REASONS}
    assert (
        sum(
            page[f'anomaly_exporter_query_errors_total{{detector="good",reason="{r}"}}']
            for r in QUERY_ERROR_REASONS
        )
        == 0
    )
    assert len([k for k in page if k.startswith('anomaly_score{detector="good"')]) == prometheus.series
    assert not [k for k in page if k.startswith('anomaly_score{detector="bad"')]
    # Every request the exporter sent was a well-formed range query for one of the two metrics.
    assert not prometheus.refused
    assert {query for query, *_ in prometheus.received} == {"good_metric", "bad_metric"}

    prometheus.behaviours["bad_metric"] = "ok"
    assert service.run_cycle().up == {"good": True, "bad": True}


def test_a_partial_matrix_is_scored_where_whole_and_the_gaps_are_counted(
    prometheus: FaultyPrometheus, model: DetectorModel
) -> None:
    service = _service(prometheus, model)
    prometheus.behaviours["bad_metric"] = "gappy"

    report = service.run_cycle()

    assert report.up == {"good": True, "bad": True}
    page = samples(service)
    # Series 0 and 2 are whole; series 1 stopped half-way through the window.
    assert report.published == {"good": 3, "bad": 2}
    assert page['anomaly_exporter_unscorable_series{detector="bad",reason="no_latest_sample"}'] == 1
    assert 'anomaly_score{detector="bad",instance="host-00001"}' not in page
    assert (
        sum(
            page[f'anomaly_exporter_query_errors_total{{detector="bad",reason="{r}"}}']
            for r in QUERY_ERROR_REASONS
        )
        == 0
    )


@pytest.mark.parametrize(
    ("behaviour", "reason", "message"),
    [
        ("oversized", "oversized", "PROMETHEUS_MAX_RESPONSE_BYTES"),
        ("drip", "timeout", "not complete within"),
        ("cut", "bad_answer", "cut short"),
        ("hang", "timeout", "timed out"),
        ("status_500", "http_status", "HTTP 500"),
    ],
)
def test_the_direct_transport_bounds_the_answer_too(
    prometheus: FaultyPrometheus, behaviour: str, reason: str, message: str
) -> None:
    prometheus.behaviours["bad_metric"] = behaviour
    connection = PrometheusConnection(url=prometheus.url, timeout_seconds=TIMEOUT, max_response_bytes=CAP)
    began = time.monotonic()
    with pytest.raises(PrometheusQueryError) as caught:
        fetch_range_answer(
            connection, "bad_metric", start=6000.0, end=36000.0, step_seconds=60, transport="direct"
        )
    assert time.monotonic() - began < 4 * TIMEOUT  # a hang lasts 30 s, a drip minutes
    assert caught.value.reason == reason
    assert message in str(caught.value) and "bad_metric" in str(caught.value)
    # The same connection reads a good answer whole: the cap and deadline are per request.
    answer = fetch_range_answer(
        connection, "good_metric", start=6000.0, end=36000.0, step_seconds=60, transport="direct"
    )
    assert answer.block.values.shape == (501, 3)
