"""VictoriaMetrics behind basic auth as the Prometheus-API backend: training, the exporter cycle
and `backtest` each read through the credentials, and fail cleanly (one line naming the URL and
HTTP 401, exit 2, no secret anywhere) without them.

History (two days of a latency gauge on four routes, one-minute steps) goes in through
VictoriaMetrics' import API; reading it back must give the same matrix.
"""

from __future__ import annotations

import contextlib
import io
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from exporter.service import ExporterService
from exporter.sharding import UNSHARDED
from slo_pipeline.adapters.prometheus import PrometheusAuthError, fetch_detector_range
from slo_pipeline.adapters.registry import ModelRef
from slo_pipeline.cli import main
from slo_pipeline.core.model import DetectorModel
from slo_pipeline.core.training import fit_detector_model
from slo_pipeline.devstack import launch
from slo_pipeline.offline.backtest.prometheus_range import format_time
from slo_pipeline.orchestration.retrain import prepare_training_data, retrain_detector
from slo_pipeline.settings import PrometheusConnection, Settings, load_settings
from tests.fixtures.victoria import import_series, start_victoria_metrics, start_vmauth

pytestmark = pytest.mark.integration

USERNAME = "slo-reader"
PASSWORD = "vm-pass-7f3a9c"  # must never show up in an error, a log line or a page
WRONG_PASSWORD = "wrong-pass-2b8e41"
METRIC = "vm_it_latency_seconds"
DETECTOR = "vm_latency"
STEP = 60
N_STEPS = 2 * 1440 + 1
ROUTES = ("cart", "checkout", "login", "search")
# Recent (inside VictoriaMetrics' retention of new samples) and on the step grid.
END = float((int(time.time()) // 3600 - 1) * 3600)
PIPELINE_YAML = f"""
detectors:
  - name: {DETECTOR}
    query: {METRIC}{{job="shop"}}
    step_seconds: {STEP}
    training_window_seconds: {(N_STEPS - 1) * STEP}
    n_estimators: 50
"""


def sample_times() -> np.ndarray:
    return END - STEP * np.arange(N_STEPS - 1, -1, -1, dtype=np.float64)


def history() -> np.ndarray:
    rng = np.random.default_rng(11)
    t = np.arange(N_STEPS)
    base = np.array([0.12, 0.25, 0.08, 0.18])
    cycle = 1 + 0.2 * np.sin(2 * np.pi * t / 1440)[:, None]
    return np.round(base * cycle + rng.normal(0, 0.004, size=(N_STEPS, len(ROUTES))), 6)


@pytest.fixture(scope="module")
def victoria(tmp_path_factory: pytest.TempPathFactory) -> Iterator[launch.ManagedProcess]:
    process = start_victoria_metrics(
        tmp_path_factory.mktemp("victoria"), username=USERNAME, password=PASSWORD
    )
    try:
        labels = [{"job": "shop", "route": route} for route in ROUTES]
        import_series(process.url, (USERNAME, PASSWORD), METRIC, labels, sample_times(), history())
        yield process
    finally:
        process.stop()


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "pipeline.yml"
    path.write_text(PIPELINE_YAML, encoding="utf-8")
    return path


def settings_for(victoria: launch.ManagedProcess, folder: Path, config: Path, **auth: str) -> Settings:
    return load_settings(
        prometheus_url=victoria.url,
        mlflow_tracking_uri=f"sqlite:///{folder / 'mlflow.db'}",
        mlflow_artifact_root=str(folder / "artifacts"),
        data_lake=str(folder / "lake"),
        config_path=config,
        **auth,
    )


def with_credentials(victoria: launch.ManagedProcess, folder: Path, config: Path, **extra: str) -> Settings:
    return settings_for(
        victoria, folder, config, prometheus_username=USERNAME, prometheus_password=PASSWORD, **extra
    )


def assert_clean_refusal(message: str, victoria: launch.ManagedProcess) -> None:
    line = message.strip()
    assert "\n" not in line, message
    assert victoria.url in line and "HTTP 401" in line, message
    assert PASSWORD not in message and WRONG_PASSWORD not in message


class OneModel:
    """The registry's two calls, answering one champion: the exporter's path under test is the
    query, not MLflow (tests/integration/test_exporter_service.py covers the registry)."""

    def __init__(self, model: DetectorModel) -> None:
        self.model = model

    def champion_ref(self, detector_name: str) -> ModelRef:
        return ModelRef(detector_name, "1", "run-1")

    def load_model(self, ref: ModelRef) -> DetectorModel:
        return self.model


def test_training_reads_the_history_through_basic_auth(
    victoria: launch.ManagedProcess, tmp_path: Path, config: Path, database_url: str
) -> None:
    settings = with_credentials(victoria, tmp_path, config, database_url=database_url)
    data = prepare_training_data(settings, settings.pipeline.detector(DETECTOR), end=END)
    assert [labels["route"] for labels in data.block.labels] == list(ROUTES)
    np.testing.assert_array_equal(data.block.timestamps, sample_times())
    np.testing.assert_allclose(data.block.values, history(), rtol=1e-12)

    outcome = retrain_detector(settings, DETECTOR, now=END)
    assert outcome.model_version and outcome.run_id


def test_training_without_credentials_fails_cleanly(
    victoria: launch.ManagedProcess,
    tmp_path: Path,
    config: Path,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = settings_for(victoria, tmp_path, config, database_url=database_url)
    with pytest.raises(PrometheusAuthError) as caught:
        retrain_detector(settings, DETECTOR, now=END)
    assert_clean_refusal(str(caught.value), victoria)

    # The CLI: exit 2 and one line, with a wrong password this time.
    for name, value in {
        "PROMETHEUS_URL": victoria.url,
        "PROMETHEUS_USERNAME": USERNAME,
        "PROMETHEUS_PASSWORD": WRONG_PASSWORD,
        "DATABASE_URL": database_url,
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
        "SLO_PIPELINE_MLFLOW_ARTIFACT_ROOT": str(tmp_path / "artifacts"),
        "SLO_PIPELINE_DATA_LAKE": str(tmp_path / "lake"),
        "SLO_PIPELINE_CONFIG": str(config),
    }.items():
        monkeypatch.setenv(name, value)
    assert main(["train", DETECTOR]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert_clean_refusal(captured.err, victoria)


def test_the_exporter_cycle_scores_through_basic_auth_and_goes_down_cleanly_without(
    victoria: launch.ManagedProcess, tmp_path: Path, config: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = with_credentials(victoria, tmp_path, config)
    detector = settings.pipeline.detector(DETECTOR)
    model, _ = fit_detector_model(history(), detector)

    service = ExporterService(settings, model_source=OneModel(model), wall_clock=lambda: END, shard=UNSHARDED)
    report = service.run_cycle()
    assert report.all_up and report.published == {DETECTOR: len(ROUTES)}, report.errors
    page = service.page.body().decode()
    for route in ROUTES:
        assert f'anomaly_score{{detector="{DETECTOR}",job="shop",route="{route}"}}' in page

    anonymous = settings_for(victoria, tmp_path, config)
    caplog.set_level(logging.DEBUG)
    refused = ExporterService(
        anonymous, model_source=OneModel(model), wall_clock=lambda: END, shard=UNSHARDED
    )
    report = refused.run_cycle()
    assert report.up == {DETECTOR: False} and report.auth_failed
    assert_clean_refusal(report.errors[DETECTOR].removeprefix("query failed: "), victoria)
    page = refused.page.body().decode()
    assert f'anomaly_exporter_up{{detector="{DETECTOR}"}} 0.0' in page
    assert "anomaly_score{" not in page
    assert PASSWORD not in caplog.text and PASSWORD not in page


def test_backtest_replays_a_range_read_through_basic_auth(
    victoria: launch.ManagedProcess,
    tmp_path: Path,
    config: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    output = tmp_path / "scored.csv"
    args = [
        "backtest",
        "--prometheus-url",
        victoria.url,
        "--config",
        str(config),
        "--detector",
        DETECTOR,
        "--start",
        format_time(sample_times()[0]),
        "--end",
        format_time(END),
        "--training-window-days",
        "1",
        "--output",
        str(output),
        "--quiet",
    ]
    monkeypatch.setenv("SLO_PIPELINE_CONFIG", str(config))
    monkeypatch.setenv("PROMETHEUS_USERNAME", USERNAME)
    monkeypatch.setenv("PROMETHEUS_PASSWORD", PASSWORD)
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(args) == 0, capsys.readouterr().err
    scored = output.read_text().splitlines()
    assert len(scored) == 1 + N_STEPS * len(ROUTES)

    monkeypatch.setenv("PROMETHEUS_PASSWORD", WRONG_PASSWORD)
    capsys.readouterr()
    assert main(args) == 2
    assert_clean_refusal(capsys.readouterr().err.removeprefix("backtest: "), victoria)


def test_a_bearer_token_reaches_vmauth_and_a_missing_one_is_refused(tmp_path: Path, config: Path) -> None:
    """vmauth (VictoriaMetrics' auth proxy) admits a bearer token: the history comes back."""
    token = "vmauth-token-5d1c"
    backend = start_victoria_metrics(tmp_path / "victoria")
    try:
        labels = [{"job": "shop", "route": route} for route in ROUTES]
        import_series(backend.url, None, METRIC, labels, sample_times()[-61:], history()[-61:])
        proxy = start_vmauth(tmp_path / "vmauth", bearer_token=token, backend_url=backend.url)
        try:
            detector = load_settings(config_path=config).pipeline.detector(DETECTOR)
            with_token = PrometheusConnection(url=proxy.url, bearer_token=token)
            block = fetch_detector_range(with_token, detector, start=END - 3600, end=END)
            np.testing.assert_allclose(block.values, history()[-61:], rtol=1e-12)
            with pytest.raises(PrometheusAuthError) as caught:
                fetch_detector_range(PrometheusConnection(url=proxy.url), detector, start=END - 3600, end=END)
            assert proxy.url in str(caught.value) and "HTTP 401" in str(caught.value)
        finally:
            proxy.stop()
    finally:
        backend.stop()
