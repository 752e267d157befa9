"""Scoring-cycle behaviour of ExporterService, with the registry and Prometheus injected in memory.

`InMemoryModels` and `InMemorySeries` implement the two small interfaces the service is built
against (dependency injection); the same behaviours are exercised against real Prometheus and a
real MLflow registry in tests/integration/test_exporter_service.py.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from dataclasses import dataclass, field

import numpy as np
import pytest

from exporter.champion import ChampionTracker, RefreshOutcome
from exporter.series_cache import CachingSeriesSource
from exporter.service import ExporterService
from slo_pipeline.adapters.prometheus import PrometheusQueryError, SeriesBlock
from slo_pipeline.adapters.registry import ModelLoadError, ModelRef, RegistryError
from slo_pipeline.core.model import DetectorModel
from slo_pipeline.core.training import fit_detector_model
from slo_pipeline.settings import DetectorConfig, FeatureWindows, PipelineConfig, SignalConfig, load_settings
from tests.fixtures.waiting import wait_until
from tests.unit.fake_prometheus import STALE, FakePrometheus

WINDOWS = FeatureWindows(short=3, medium=6, long=12)
LATENCY = DetectorConfig(
    name="latency", query="latency_q", step_seconds=60, windows=WINDOWS, n_estimators=20, slo="checkout"
)
ERRORS = DetectorConfig(name="errors", query="errors_q", step_seconds=60, windows=WINDOWS, n_estimators=20)
NOW = 1_700_000_000.0


@pytest.fixture(scope="module")
def trained_model() -> DetectorModel:
    history = 1.0 + 0.05 * np.random.default_rng(0).standard_normal((400, 4))
    model, _ = fit_detector_model(history, LATENCY)
    return model


@dataclass
class InMemoryModels:
    """A registry of versions per detector; `broken` versions raise on load like a bad artifact."""

    versions: dict[str, dict[str, DetectorModel]] = field(default_factory=dict)
    champions: dict[str, str] = field(default_factory=dict)
    broken: set[tuple[str, str]] = field(default_factory=set)
    unreachable: bool = False
    loads: list[ModelRef] = field(default_factory=list)
    lookups: list[str] = field(default_factory=list)
    failing_lookups: set[str] = field(default_factory=set)  # lookups that fail for one model only

    def add(self, detector: str, version: str, model: DetectorModel, *, champion: bool = True) -> None:
        self.versions.setdefault(detector, {})[version] = model
        if champion:
            self.champions[detector] = version

    def champion_ref(self, detector_name: str) -> ModelRef | None:
        self.lookups.append(detector_name)
        if detector_name in self.failing_lookups:
            raise RegistryError(f"could not look up {detector_name}@champion: permission denied")
        if self.unreachable:
            raise RegistryError("could not look up champion: connection refused")
        version = self.champions.get(detector_name)
        return None if version is None else ModelRef(detector_name, version, f"run-{detector_name}-{version}")

    def load_model(self, ref: ModelRef) -> DetectorModel:
        self.loads.append(ref)
        if (ref.model_name, ref.version) in self.broken:
            raise ModelLoadError(f"model 'models:/{ref.model_name}/{ref.version}' is not servable")
        return self.versions[ref.model_name][ref.version]


@dataclass
class InMemorySeries:
    """Per query: label sets and a value matrix; a query listed in `failing` raises like Prometheus down."""

    data: dict[str, tuple[list[dict[str, str]], np.ndarray]] = field(default_factory=dict)
    failing: set[str] = field(default_factory=set)
    requests: list[tuple[str, float, float]] = field(default_factory=list)

    def fetch(self, detector: DetectorConfig, *, start: float, end: float) -> SeriesBlock:
        self.requests.append((detector.query_text, start, end))
        if detector.query_text in self.failing:
            raise PrometheusQueryError(
                f"could not run query {detector.query!r}: connection refused", "unreachable"
            )
        labels, values = self.data[detector.query_text]
        timestamps = end - detector.step_seconds * np.arange(len(values))[::-1]
        return SeriesBlock(labels=labels, timestamps=timestamps, values=values, signals=detector.signal_names)


def normal_history(n_series: int, seed: int = 1, steps: int = 20) -> np.ndarray:
    return 1.0 + 0.05 * np.random.default_rng(seed).standard_normal((steps, n_series))


def make_service(
    models: InMemoryModels, series: InMemorySeries, *detectors: DetectorConfig, interval: float = 3600.0
) -> ExporterService:
    settings = load_settings(
        pipeline=PipelineConfig(detectors=list(detectors)), exporter_interval_seconds=interval
    )
    return ExporterService(settings, model_source=models, series_source=series, wall_clock=lambda: NOW)


def samples(service: ExporterService) -> dict[str, float]:
    result = {}
    for line in service.page.body().decode().splitlines():
        if line and not line.startswith("#"):
            series, _, value = line.rpartition(" ")
            result[series] = float(value)
    return result


def matching(page: dict[str, float], prefix: str) -> dict[str, float]:
    return {series: value for series, value in page.items() if series.startswith(prefix)}


def test_a_cycle_publishes_score_and_probability_per_series(trained_model: DetectorModel) -> None:
    models = InMemoryModels()
    models.add("latency", "1", trained_model)
    history = normal_history(3)
    history[-1, 2] = 50.0  # an outage on the third series at the latest step
    labels = [{"__name__": "lat", "route": r} for r in ("/a", "/b", "/broken")]
    series = InMemorySeries({"latency_q": (labels, history)})
    service = make_service(models, series, LATENCY)

    report = service.run_cycle()

    assert report.up == {"latency": True} and report.published == {"latency": 3}
    page = samples(service)
    scores = matching(page, "anomaly_score{")
    assert set(scores) == {
        f'anomaly_score{{detector="latency",slo="checkout",route="{r}"}}' for r in ("/a", "/b", "/broken")
    }
    broken = scores.pop('anomaly_score{detector="latency",slo="checkout",route="/broken"}')
    assert all(broken > 2 * normal for normal in scores.values()), (broken, scores)
    assert all(normal < 1 for normal in scores.values())
    probabilities = matching(page, "anomaly_tail_probability{")
    assert len(probabilities) == 3 and all(0 <= p <= 1 for p in probabilities.values())
    assert (
        page[
            'anomaly_model_info{detector="latency",model_name="latency",model_version="1",run_id="run-latency-1"}'
        ]
        == 1
    )
    assert page['anomaly_exporter_up{detector="latency"}'] == 1
    assert page['anomaly_exporter_series{detector="latency"}'] == 3
    assert page['anomaly_exporter_last_success_timestamp_seconds{detector="latency"}'] == NOW
    assert page["anomaly_exporter_cycle_duration_seconds_count"] == 1


def test_the_query_window_covers_the_models_longest_feature_window(trained_model: DetectorModel) -> None:
    models = InMemoryModels()
    models.add("latency", "1", trained_model)
    series = InMemorySeries({"latency_q": ([{"i": "a"}], normal_history(1))})
    make_service(models, series, LATENCY).run_cycle()
    ((query, start, end),) = series.requests
    assert query == "latency_q" and end == NOW
    # Exactly the rows the model's features and evidence window need (what training saw).
    assert end - start == max(
        LATENCY.scoring_window_seconds, trained_model.scoring_rows * LATENCY.step_seconds
    )
    assert end - start >= (WINDOWS.long + WINDOWS.evidence) * LATENCY.step_seconds


def test_unscorable_series_are_left_out_and_counted(trained_model: DetectorModel) -> None:
    models = InMemoryModels()
    models.add("latency", "1", trained_model)
    history = normal_history(4)
    history[:, 1] = np.nan  # a series with no samples in the window
    history[:-5, 2] = np.nan  # a new series: five samples so far
    history[-4:, 3] = np.nan  # stopped reporting: longer ago than the short window bridges
    labels = [{"i": "ok"}, {"i": "empty"}, {"i": "new"}, {"i": "late"}]
    series = InMemorySeries({"latency_q": (labels, history)})
    service = make_service(models, series, LATENCY)
    service.run_cycle()
    page = samples(service)
    assert len(matching(page, "anomaly_score{")) == 1
    assert not any('i="empty"' in key or 'i="new"' in key or 'i="late"' in key for key in page)
    unscored = 'anomaly_exporter_unscorable_series{detector="latency",reason="%s"}'
    assert page[unscored % "too_little_history"] == 2
    assert page[unscored % "no_latest_sample"] == 1
    assert page[unscored % "gap_in_window"] == 0
    # Once the series are whole again, every reason drops back to 0.
    series.data["latency_q"] = (labels, normal_history(4))
    service.run_cycle()
    page = samples(service)
    assert len(matching(page, "anomaly_score{")) == 4
    assert [page[unscored % reason] for reason in ("too_little_history", "no_latest_sample")] == [0, 0]


def test_a_vanished_series_disappears_on_the_next_cycle(trained_model: DetectorModel) -> None:
    models = InMemoryModels()
    models.add("latency", "1", trained_model)
    series = InMemorySeries({"latency_q": ([{"i": "stays"}, {"i": "goes"}], normal_history(2))})
    service = make_service(models, series, LATENCY)
    service.run_cycle()
    assert any('i="goes"' in key for key in samples(service))
    series.data["latency_q"] = ([{"i": "stays"}], normal_history(1))
    service.run_cycle()
    page = samples(service)
    assert not any('i="goes"' in key for key in page)
    assert any('i="stays"' in key for key in page)


def test_a_failing_query_marks_only_its_detector_down(
    trained_model: DetectorModel, caplog: pytest.LogCaptureFixture
) -> None:
    models = InMemoryModels()
    models.add("latency", "1", trained_model)
    models.add("errors", "4", trained_model)
    series = InMemorySeries(
        {"latency_q": ([{"i": "a"}], normal_history(1)), "errors_q": ([{"i": "b"}], normal_history(1))}
    )
    service = make_service(models, series, LATENCY, ERRORS)
    service.run_cycle()
    series.failing.add("latency_q")

    with caplog.at_level("WARNING", logger="exporter.service"):
        report = service.run_cycle()
        service.run_cycle()

    assert report.up == {"latency": False, "errors": True}
    assert "query failed" in report.errors["latency"]
    page = samples(service)
    assert page['anomaly_exporter_up{detector="latency"}'] == 0
    assert page['anomaly_exporter_query_errors_total{detector="latency",reason="unreachable"}'] == 2
    warnings = [r for r in caplog.records if "query failed" in r.getMessage()]
    assert len(warnings) == 1 and "latency_q" in warnings[0].getMessage(), "one warning per outage"
    assert page['anomaly_exporter_query_errors_total{detector="errors",reason="unreachable"}'] == 0
    # No stale scores for the failed detector; the healthy one still publishes.
    assert not matching(page, 'anomaly_score{detector="latency"')
    assert len(matching(page, 'anomaly_score{detector="errors"')) == 1

    series.failing.clear()
    assert service.run_cycle().up == {"latency": True, "errors": True}
    assert samples(service)['anomaly_exporter_up{detector="latency"}'] == 1


def test_a_detector_without_champion_is_down_without_scores(
    trained_model: DetectorModel, caplog: pytest.LogCaptureFixture
) -> None:
    models = InMemoryModels()
    models.add("errors", "1", trained_model)
    series = InMemorySeries(
        {"latency_q": ([{"i": "a"}], normal_history(1)), "errors_q": ([{"i": "b"}], normal_history(1))}
    )
    service = make_service(models, series, LATENCY, ERRORS)
    with caplog.at_level("WARNING", logger="exporter.service"):
        report = service.run_cycle()
        service.run_cycle()
    assert report.up == {"latency": False, "errors": True}
    assert "no @champion" in report.errors["latency"]
    assert [r for r in caplog.records if "latency@champion" in r.getMessage()], "expected a clear log line"
    assert len([r for r in caplog.records if "latency@champion" in r.getMessage()]) == 1, "logged once"
    page = samples(service)
    assert page['anomaly_exporter_up{detector="latency"}'] == 0
    assert not matching(page, 'anomaly_score{detector="latency"')
    assert not matching(page, 'anomaly_model_info{detector="latency"')
    assert [q for q, _, _ in series.requests] == ["errors_q", "errors_q"], "no query without a model"


def test_a_new_champion_is_swapped_in_without_restart(trained_model: DetectorModel) -> None:
    models = InMemoryModels()
    models.add("latency", "1", trained_model)
    series = InMemorySeries({"latency_q": ([{"i": "a"}], normal_history(1))})
    service = make_service(models, series, LATENCY)
    service.run_cycle()
    models.add("latency", "2", trained_model)
    service.run_cycle()
    service.run_cycle()
    page = samples(service)
    info = (
        'anomaly_model_info{detector="latency",model_name="latency",model_version="2",run_id="run-latency-2"}'
    )
    assert matching(page, "anomaly_model_info{") == {info: 1}
    assert page['anomaly_exporter_model_swaps_total{detector="latency"}'] == 2  # first load + swap
    assert [ref.version for ref in models.loads] == ["1", "2"], "an unchanged champion is not reloaded"


def test_a_broken_champion_is_not_swapped_in_and_is_counted(trained_model: DetectorModel) -> None:
    models = InMemoryModels()
    models.add("latency", "1", trained_model)
    series = InMemorySeries({"latency_q": ([{"i": "a"}], normal_history(1))})
    service = make_service(models, series, LATENCY)
    service.run_cycle()
    models.add("latency", "2", trained_model)
    models.broken.add(("latency", "2"))

    report = service.run_cycle()
    service.run_cycle()

    assert report.up == {"latency": True}, "the old model keeps scoring"
    page = samples(service)
    assert (
        'anomaly_model_info{detector="latency",model_name="latency",model_version="1",run_id="run-latency-1"}'
        in page
    )
    assert len(matching(page, "anomaly_score{")) == 1
    assert page['anomaly_exporter_model_load_errors_total{detector="latency"}'] == 1
    assert [ref.version for ref in models.loads] == ["1", "2"], "a failed version is not retried every cycle"


def test_an_unreachable_registry_keeps_the_loaded_model_serving(trained_model: DetectorModel) -> None:
    models = InMemoryModels()
    models.add("latency", "1", trained_model)
    series = InMemorySeries({"latency_q": ([{"i": "a"}], normal_history(1))})
    service = make_service(models, series, LATENCY)
    service.run_cycle()
    assert (
        samples(service)['anomaly_exporter_registry_last_success_timestamp_seconds{detector="latency"}']
        == NOW
    )
    models.unreachable = True
    service._wall_clock = lambda: NOW + 60  # the next cycle, a minute later
    report = service.run_cycle()
    assert report.up == {"latency": True}
    page = samples(service)
    assert page['anomaly_exporter_registry_errors_total{detector="latency"}'] == 1
    assert len(matching(page, "anomaly_score{")) == 1
    # Scores are fresh, the champion lookup is not: both say so.
    assert page['anomaly_exporter_last_success_timestamp_seconds{detector="latency"}'] == NOW + 60
    assert page['anomaly_exporter_registry_last_success_timestamp_seconds{detector="latency"}'] == NOW


def _three_detectors(model: DetectorModel) -> tuple[InMemoryModels, ExporterService]:
    names = ("first", "second", "third")
    detectors = [DetectorConfig(name=name, query=f"{name}_q", step_seconds=60) for name in names]
    models = InMemoryModels()
    series = InMemorySeries()
    for name in names:
        models.add(name, "1", model)
        series.data[f"{name}_q"] = ([{"i": "a"}], normal_history(1))
    return models, make_service(models, series, *detectors)


def test_after_one_failed_lookup_the_rest_of_the_cycle_does_not_ask_the_registry(
    trained_model: DetectorModel,
) -> None:
    """A hanging registry costs one timeout per cycle, not one per detector."""
    models, service = _three_detectors(trained_model)
    service.run_cycle()  # cycle 0 asks first, second, third
    models.unreachable, models.lookups = True, []
    report = service.run_cycle()  # cycle 1 starts one detector further on
    assert models.lookups == ["second"]
    assert report.up == dict.fromkeys(("first", "second", "third"), True)  # loaded models serve on
    page = samples(service)
    # Only the lookup that was made counts as an error.
    assert page['anomaly_exporter_registry_errors_total{detector="second"}'] == 1
    assert page['anomaly_exporter_registry_errors_total{detector="third"}'] == 0
    # The next cycle asks again, and once the registry answers every detector is asked.
    models.unreachable, models.lookups = False, []
    service.run_cycle()
    assert models.lookups == ["third", "first", "second"]


def test_a_lookup_that_fails_for_one_model_does_not_freeze_the_others(trained_model: DetectorModel) -> None:
    """The rotating start gives every detector its lookup within as many cycles as there are
    detectors, so a new champion of `second` is served although `first` always fails."""
    models, service = _three_detectors(trained_model)
    service.run_cycle()
    models.failing_lookups = {"first"}
    models.add("second", "2", trained_model)
    served = set()
    for _ in range(3):
        service.run_cycle()
        served |= {line for line in service.page.body().decode().splitlines() if 'model_version="2"' in line}
    assert any('detector="second"' in line for line in served)


def test_a_detector_with_no_model_yet_is_always_asked(trained_model: DetectorModel) -> None:
    models = InMemoryModels(unreachable=True)
    series = InMemorySeries(
        {"a_q": ([{"i": "a"}], normal_history(1)), "b_q": ([{"i": "a"}], normal_history(1))}
    )
    a, b = (DetectorConfig(name=name, query=f"{name}_q", step_seconds=60) for name in ("a", "b"))
    service = make_service(models, series, a, b)
    report = service.run_cycle()
    assert report.up == {"a": False, "b": False}
    assert models.lookups == ["a", "b"]  # nothing is served, so nothing is saved by skipping
    assert "registry unreachable" in report.errors["b"]
    models.unreachable = False
    models.add("a", "1", trained_model)
    models.add("b", "1", trained_model)
    assert service.run_cycle().up == {"a": True, "b": True}


def test_an_empty_answer_is_a_healthy_detector_with_no_series(trained_model: DetectorModel) -> None:
    models = InMemoryModels()
    models.add("latency", "1", trained_model)
    series = InMemorySeries({"latency_q": ([{"i": "a"}], normal_history(1))})
    service = make_service(models, series, LATENCY)
    service.run_cycle()
    series.data["latency_q"] = ([], np.empty((20, 0)))
    assert service.run_cycle().up == {"latency": True}
    page = samples(service)
    assert page['anomaly_exporter_series{detector="latency"}'] == 0
    assert not matching(page, "anomaly_score{")


def test_a_model_that_fails_while_scoring_marks_its_detector_down(trained_model: DetectorModel) -> None:
    from sklearn.ensemble import IsolationForest

    unfitted = DetectorModel(forest=IsolationForest(), windows=WINDOWS, calibration=trained_model.calibration)
    models = InMemoryModels()
    models.add("latency", "1", unfitted)
    models.add("errors", "1", trained_model)
    series = InMemorySeries(
        {"latency_q": ([{"i": "a"}], normal_history(1)), "errors_q": ([{"i": "b"}], normal_history(1))}
    )
    service = make_service(models, series, LATENCY, ERRORS)
    report = service.run_cycle()
    assert report.up == {"latency": False, "errors": True}
    assert "scoring failed" in report.errors["latency"]
    page = samples(service)
    assert page['anomaly_exporter_scoring_errors_total{detector="latency"}'] == 1
    assert page['anomaly_exporter_up{detector="latency"}'] == 0
    assert len(matching(page, 'anomaly_score{detector="errors"')) == 1


def test_failed_loads_are_retried_after_the_back_off(trained_model: DetectorModel) -> None:
    models = InMemoryModels()
    models.add("latency", "1", trained_model)
    models.broken.add(("latency", "1"))
    now = [0.0]
    tracker = ChampionTracker("latency", models, retry_seconds=60, clock=lambda: now[0])
    assert tracker.refresh().outcome is RefreshOutcome.LOAD_ERROR
    assert tracker.refresh().outcome is RefreshOutcome.LOAD_DEFERRED
    models.broken.clear()
    now[0] = 61.0
    assert tracker.refresh().outcome is RefreshOutcome.SWAPPED
    assert tracker.serving is not None and tracker.serving.ref.version == "1"


def test_http_endpoints_serve_the_cached_page_and_health(trained_model: DetectorModel) -> None:
    models = InMemoryModels()
    models.add("latency", "1", trained_model)
    series = InMemorySeries({"latency_q": ([{"i": "a"}], normal_history(1))})
    service = make_service(models, series, LATENCY)
    server = service.start("127.0.0.1:0")
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        wait_until(
            lambda: _status(f"{base}/-/ready"),
            timeout=10,
            interval=0.05,
            describe="/-/ready",
            until=lambda s: s == 200,
        )
        assert _status(f"{base}/healthz") == 200
        with urllib.request.urlopen(f"{base}/metrics", timeout=5) as response:
            assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            body = response.read().decode()
        assert 'anomaly_score{detector="latency",slo="checkout",i="a"}' in body
        for _ in range(5):
            urllib.request.urlopen(f"{base}/metrics", timeout=5).read()
        assert len(series.requests) == 1, "only the first cycle queried; scrapes never do"
        assert _status(f"{base}/nope") == 404
    finally:
        service.stop()


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as err:
        return err.code


class ExplainSpy:
    """The trained model, recording what the exporter asks it to explain (and optionally failing)."""

    def __init__(self, model: DetectorModel, *, fail: bool = False) -> None:
        self._model = model
        self._fail = fail
        self.explained_shapes: list[tuple[int, ...]] = []

    def __getattr__(self, name: str) -> object:
        return getattr(self._model, name)

    def explain_latest(self, values: np.ndarray) -> list[str | None]:
        self.explained_shapes.append(values.shape)
        if self._fail:
            raise ValueError("this model has no robust-z signal to explain anomalies with")
        return self._model.explain_latest(values)


def outage_service(model: object, n_series: int = 3) -> tuple[ExporterService, list[dict[str, str]]]:
    models = InMemoryModels()
    models.add("latency", "1", model)  # type: ignore[arg-type]
    history = normal_history(n_series)
    history[-1, n_series - 1] = 50.0  # an outage on the last series at the latest step
    labels = [{"__name__": "lat", "route": f"/r{i}"} for i in range(n_series)]
    return make_service(models, InMemorySeries({"latency_q": (labels, history)}), LATENCY), labels


def test_only_anomalous_series_are_explained_and_get_a_driver_line(trained_model: DetectorModel) -> None:
    spy = ExplainSpy(trained_model)
    service, _ = outage_service(spy)

    report = service.run_cycle()

    page = samples(service)
    scores = matching(page, "anomaly_score{")
    assert scores['anomaly_score{detector="latency",slo="checkout",route="/r2"}'] >= 1
    assert all(v < 1 for k, v in scores.items() if 'route="/r2"' not in k)
    # Only the anomalous column went to the model: [T, 1], not [T, N].
    assert spy.explained_shapes == [(20, 1)]
    drivers = matching(page, "anomaly_driver_info{")
    assert len(drivers) == 1 and report.explained == {"latency": 1}
    ((series, value),) = drivers.items()
    assert value == 1
    assert series.startswith('anomaly_driver_info{detector="latency",slo="checkout",route="/r2",driver="')
    driver = series.rsplit('driver="', 1)[1].rstrip('"}')
    assert driver in trained_model.feature_names
    assert page['anomaly_exporter_explanation_errors_total{detector="latency"}'] == 0


def test_a_calm_cycle_asks_for_no_explanation(trained_model: DetectorModel) -> None:
    spy = ExplainSpy(trained_model)
    models = InMemoryModels()
    models.add("latency", "1", spy)  # type: ignore[arg-type]
    service = make_service(models, InMemorySeries({"latency_q": ([{"i": "a"}], normal_history(1))}), LATENCY)
    report = service.run_cycle()
    assert spy.explained_shapes == []
    assert report.explained == {"latency": 0}
    assert not matching(samples(service), "anomaly_driver_info{")
    assert "# TYPE anomaly_driver_info gauge" in service.page.body().decode()


def test_a_failing_explanation_still_publishes_scores_and_is_counted(
    trained_model: DetectorModel, caplog: pytest.LogCaptureFixture
) -> None:
    spy = ExplainSpy(trained_model, fail=True)
    service, _ = outage_service(spy)
    with caplog.at_level("WARNING", logger="exporter.service"):
        first = service.run_cycle()
        service.run_cycle()

    assert first.up == {"latency": True} and first.published == {"latency": 3}
    page = samples(service)
    assert len(matching(page, "anomaly_score{")) == 3
    assert not matching(page, "anomaly_driver_info{")
    assert page['anomaly_exporter_up{detector="latency"}'] == 1
    assert page['anomaly_exporter_explanation_errors_total{detector="latency"}'] == 2
    assert page['anomaly_exporter_scoring_errors_total{detector="latency"}'] == 0
    warnings = [r for r in caplog.records if "could not explain" in r.getMessage()]
    assert len(warnings) == 1, "one warning per kind of failure, not one per cycle"
    assert "robust-z" in warnings[0].getMessage() and "latency" in warnings[0].getMessage()


def test_a_driver_goes_away_when_its_series_calms_down(trained_model: DetectorModel) -> None:
    service, labels = outage_service(trained_model)
    series: InMemorySeries = service._series_source  # type: ignore[assignment]
    service.run_cycle()
    assert len(matching(samples(service), "anomaly_driver_info{")) == 1
    series.data["latency_q"] = (labels, normal_history(3))
    service.run_cycle()
    assert not matching(samples(service), "anomaly_driver_info{")


def test_a_multivariate_detector_names_the_signal_that_drove_the_anomaly() -> None:
    detector = DetectorConfig(
        name="checkout",
        signals=[SignalConfig(name="latency", query="lat"), SignalConfig(name="errors", query="err")],
        windows=WINDOWS,
        n_estimators=20,
    )
    rng = np.random.default_rng(5)
    model, _ = fit_detector_model(1.0 + 0.05 * rng.standard_normal((400, 4, 2)), detector)
    history = 1.0 + 0.05 * rng.standard_normal((20, 3, 2))
    history[-1, 1, 1] = 40.0  # the errors signal of the second route explodes; its latency does not
    models = InMemoryModels()
    models.add("checkout", "1", model)
    labels = [{"route": r} for r in ("/a", "/b", "/c")]
    service = make_service(models, InMemorySeries({detector.query_text: (labels, history)}), detector)

    assert service.run_cycle().explained == {"checkout": 1}
    ((series, value),) = matching(samples(service), "anomaly_driver_info{").items()
    assert value == 1 and series.startswith(
        'anomaly_driver_info{detector="checkout",route="/b",driver="errors:'
    )


# --- incremental fetching (exporter/series_cache.py) through the service ----------------------


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def steady_world(routes: list[str], *, start: float, end: float, seed: int = 2) -> FakePrometheus:
    """`latency_q` series of `routes`, one normal sample per minute over [start, end]."""
    prometheus = FakePrometheus()
    rng = np.random.default_rng(seed)
    for time in np.arange(start, end + 1, 60.0):
        for route in routes:
            value = 1 + 0.05 * rng.standard_normal()
            prometheus.add({"__name__": "latency_q", "route": route}, float(time), value)
    return prometheus


def caching_service(
    models: InMemoryModels, source: CachingSeriesSource, clock: Clock, *detectors: DetectorConfig
) -> ExporterService:
    settings = load_settings(pipeline=PipelineConfig(detectors=list(detectors)), exporter_interval_seconds=60)
    return ExporterService(settings, model_source=models, series_source=source, wall_clock=clock)


def run_at(service: ExporterService, clock: Clock, prometheus: FakePrometheus, now: float) -> None:
    clock.now = prometheus.now = now
    service.run_cycle()


def anomaly_lines(service: ExporterService) -> dict[str, float]:
    """The page without what differs between fetch modes by design (fetch counts, timings)."""
    differ = ("anomaly_exporter_full_fetches", "anomaly_exporter_fetched_steps", "anomaly_exporter_cycle_")
    return {k: v for k, v in samples(service).items() if not k.startswith(differ) and "_created{" not in k}


def test_plain_series_sources_still_work_and_count_no_fetches(trained_model: DetectorModel) -> None:
    models = InMemoryModels()
    models.add("latency", "1", trained_model)
    service = make_service(models, InMemorySeries({"latency_q": ([{"i": "a"}], normal_history(1))}), LATENCY)
    service.run_cycle()
    page = samples(service)
    assert page['anomaly_exporter_full_fetches_total{detector="latency"}'] == 0
    assert page['anomaly_exporter_fetched_steps{detector="latency"}'] == 0


def test_after_the_first_cycle_only_the_newest_steps_are_fetched(trained_model: DetectorModel) -> None:
    models = InMemoryModels()
    models.add("latency", "1", trained_model)
    prometheus = steady_world(["/a", "/b"], start=NOW - 3600, end=NOW + 3600)
    clock = Clock(NOW)
    service = caching_service(models, CachingSeriesSource(prometheus.answer), clock, LATENCY)
    window_steps = trained_model.scoring_rows
    run_at(service, clock, prometheus, NOW)
    page = samples(service)
    assert page['anomaly_exporter_full_fetches_total{detector="latency"}'] == 1
    assert page['anomaly_exporter_fetched_steps{detector="latency"}'] in (window_steps, window_steps + 1)
    for k in range(1, 4):
        run_at(service, clock, prometheus, NOW + 60 * k)
    page = samples(service)
    assert page['anomaly_exporter_full_fetches_total{detector="latency"}'] == 1
    assert page['anomaly_exporter_fetched_steps{detector="latency"}'] == 3  # 2 re-read + the new one
    assert len(matching(page, "anomaly_score{")) == 2


def test_incremental_and_full_fetching_publish_the_same_scores(trained_model: DetectorModel) -> None:
    """Over cycles in which a series vanishes (staleness marker), one appears and one has a gap."""
    models = InMemoryModels()
    models.add("latency", "1", trained_model)
    rng = np.random.default_rng(4)
    prometheus = FakePrometheus()
    for step in range(-60, 40):
        time = NOW + 60 * step
        for route in ("/a", "/vanishing", "/new", "/gap"):
            labels = {"__name__": "latency_q", "route": route}
            if route == "/vanishing" and step >= 5:
                if step == 5:
                    prometheus.add(labels, time, STALE)
                continue
            if (route == "/new" and step < 8) or (route == "/gap" and 2 <= step < 10):
                continue
            value = 1 + 0.05 * rng.standard_normal() + (3.0 if route == "/a" and step == 12 else 0.0)
            prometheus.add(labels, time + 3, value, visible_at=time + 40)  # a late scrape
    clocks = Clock(NOW), Clock(NOW)
    incremental = caching_service(models, CachingSeriesSource(prometheus.answer), clocks[0], LATENCY)
    whole = CachingSeriesSource(prometheus.answer, incremental=False)
    full = caching_service(models, whole, clocks[1], LATENCY)
    published_vanishing = []
    for k in range(30):
        now = NOW + 60 * k + 17
        run_at(incremental, clocks[0], prometheus, now)
        run_at(full, clocks[1], prometheus, now)
        page = anomaly_lines(incremental)
        assert page == anomaly_lines(full), f"cycle {k}"
        published_vanishing.append(any('route="/vanishing"' in key for key in page))
    assert samples(incremental)['anomaly_exporter_full_fetches_total{detector="latency"}'] == 1
    assert samples(full)['anomaly_exporter_full_fetches_total{detector="latency"}'] == 30
    # Cycle 5 is the last whose newest instant has a point (the staleness marker follows); then the
    # features bridge windows.short missing steps with the last value, and the score goes. Its
    # points leave the window later, which ends it as an unscorable series too.
    last_point_cycle = 5
    assert published_vanishing.index(False) == last_point_cycle + 1 + WINDOWS.short
    assert not any(published_vanishing[last_point_cycle + 1 + WINDOWS.short :])


class FailingOnce:
    """The trained model, whose `score_latest` raises once when `fail_next` is set."""

    def __init__(self, model: DetectorModel) -> None:
        self._model = model
        self.fail_next = False

    def __getattr__(self, name: str) -> object:
        return getattr(self._model, name)

    def score_latest(self, values: np.ndarray) -> np.ndarray:
        if self.fail_next:
            self.fail_next = False
            raise ValueError("scoring broke")
        return self._model.score_latest(values)


def test_a_failed_scoring_or_query_drops_the_cached_matrix(trained_model: DetectorModel) -> None:
    model = FailingOnce(trained_model)
    models = InMemoryModels()
    models.add("latency", "1", model)  # type: ignore[arg-type]
    prometheus = steady_world(["/a"], start=NOW - 3600, end=NOW + 3600)
    source = CachingSeriesSource(prometheus.answer)
    clock = Clock(NOW)
    service = caching_service(models, source, clock, LATENCY)
    run_at(service, clock, prometheus, NOW)
    model.fail_next = True
    run_at(service, clock, prometheus, NOW + 60)  # fetched incrementally, then scoring failed
    run_at(service, clock, prometheus, NOW + 120)
    stats = source.last_fetch("latency")
    assert stats is not None and stats.full and stats.reason == "scoring the previous block failed"
    prometheus.failing = True
    run_at(service, clock, prometheus, NOW + 180)
    prometheus.failing = False
    run_at(service, clock, prometheus, NOW + 240)
    stats = source.last_fetch("latency")
    assert stats is not None and stats.full and "previous fetch failed" in stats.reason
    page = samples(service)
    assert page['anomaly_exporter_full_fetches_total{detector="latency"}'] == 3
    assert page['anomaly_exporter_up{detector="latency"}'] == 1


def test_a_champion_with_longer_windows_gets_the_whole_window(trained_model: DetectorModel) -> None:
    longer = LATENCY.model_copy(update={"windows": FeatureWindows(short=3, medium=6, long=30)})
    history = 1.0 + 0.05 * np.random.default_rng(0).standard_normal((400, 4))
    longer_model, _ = fit_detector_model(history, longer)
    models = InMemoryModels()
    models.add("latency", "1", trained_model)
    prometheus = steady_world(["/a"], start=NOW - 7200, end=NOW + 3600)
    source = CachingSeriesSource(prometheus.answer)
    clock = Clock(NOW)
    service = caching_service(models, source, clock, LATENCY)
    run_at(service, clock, prometheus, NOW)
    run_at(service, clock, prometheus, NOW + 60)
    models.add("latency", "2", longer_model)
    run_at(service, clock, prometheus, NOW + 120)
    stats = source.last_fetch("latency")
    assert stats is not None and stats.full and stats.steps >= longer_model.scoring_rows
    assert stats.reason == "the window starts before the cached rows"
    run_at(service, clock, prometheus, NOW + 180)
    stats = source.last_fetch("latency")
    assert stats is not None and not stats.full


def test_per_series_feedback_thresholds_still_apply(trained_model: DetectorModel) -> None:
    """Series keys are computed only for models with feedback factors; those must still use them."""
    import dataclasses

    from slo_pipeline.adapters.prometheus import series_keys

    labels = [{"route": "/a"}, {"route": "/b"}]
    tightened = dataclasses.replace(trained_model, series_threshold_factors={series_keys(labels)[1]: 100.0})
    pages = []
    for model in (trained_model, tightened):
        models = InMemoryModels()
        models.add("latency", "1", model)
        service = make_service(models, InMemorySeries({"latency_q": (labels, normal_history(2))}), LATENCY)
        service.run_cycle()
        pages.append(matching(samples(service), "anomaly_score{"))
    a = 'anomaly_score{detector="latency",slo="checkout",route="/a"}'
    b = 'anomaly_score{detector="latency",slo="checkout",route="/b"}'
    assert pages[1][a] == pages[0][a]
    assert pages[1][b] < pages[0][b]  # a tighter threshold (p* / 100) after false positives
