"""The MLflow adapter against a real MLflow registry (sqlite backend in a temp folder)."""

from __future__ import annotations

import json
import socket
import threading
from pathlib import Path

import numpy as np
import pytest
from sklearn.preprocessing import StandardScaler

from slo_pipeline.adapters import registry
from slo_pipeline.core.model import DetectorModel
from slo_pipeline.core.training import fit_detector_model
from slo_pipeline.settings import DetectorConfig, Settings, load_settings

pytestmark = pytest.mark.integration

DETECTOR = DetectorConfig(name="registry_test", query="up", windows={"short": 3, "medium": 6, "long": 12})


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(
        mlflow_tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
        mlflow_artifact_root=str(tmp_path / "artifacts"),
        config_path=tmp_path / "absent.yml",
    )


def trained(seed: int):
    rng = np.random.default_rng(seed)
    return fit_detector_model(rng.normal(100, 5, size=(400, 4)), DETECTOR, seed=seed)


def test_register_promote_rollback_and_load(settings: Settings) -> None:
    assert registry.champion_ref(settings, DETECTOR.name) is None

    model_1, report_1 = trained(1)
    first = registry.log_and_register(
        settings, DETECTOR.name, model_1, params={"seed": 1}, metrics=report_1.as_metrics()
    )
    assert first.ref.version == "1"
    assert registry.champion_ref(settings, DETECTOR.name) is None  # registered is not serving
    assert registry.set_champion(settings, DETECTOR.name, "1") is None

    model_2, report_2 = trained(2)
    second = registry.log_and_register(
        settings, DETECTOR.name, model_2, params={"seed": 2}, metrics=report_2.as_metrics()
    )
    old = registry.set_champion(settings, DETECTOR.name, second.ref.version)
    assert old is not None and old.version == "1"
    assert registry.champion_ref(settings, DETECTOR.name) == second.ref
    assert registry.alias_ref(settings, DETECTOR.name, registry.PREVIOUS).version == "1"

    versions = registry.list_versions(settings, DETECTOR.name)
    assert [v["version"] for v in versions] == ["2", "1"]
    assert versions[0]["aliases"] == ["champion"] and versions[1]["aliases"] == ["previous"]

    # The loaded model is exactly what was logged: the forest plus its metadata, which rounds
    # calibration values to keep MLmodel small, so the original agrees to that precision only.
    loaded = registry.load_model(settings, second.ref)
    window = np.random.default_rng(3).normal(100, 5, size=(model_2.scoring_rows, 4))
    logged = DetectorModel.from_parts(model_2.forest, json.loads(json.dumps(model_2.metadata())))
    np.testing.assert_allclose(loaded.score_latest(window), logged.score_latest(window), rtol=1e-12)
    np.testing.assert_allclose(loaded.score_latest(window), model_2.score_latest(window), rtol=1e-4)

    restored = registry.rollback(settings, DETECTOR.name)
    assert restored.version == "1"
    assert registry.champion_ref(settings, DETECTOR.name).version == "1"


def test_rollback_without_previous_is_a_clear_error(settings: Settings) -> None:
    model, _ = trained(1)
    registered = registry.log_and_register(settings, DETECTOR.name, model, params={}, metrics={})
    registry.set_champion(settings, DETECTOR.name, registered.ref.version)
    with pytest.raises(registry.RegistryError, match="no @previous"):
        registry.rollback(settings, DETECTOR.name)


def test_a_version_that_is_not_a_detector_model_fails_to_load(settings: Settings) -> None:
    import mlflow

    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    experiment = registry.ensure_experiment(settings, DETECTOR.name)
    with mlflow.start_run(experiment_id=experiment):
        info = mlflow.sklearn.log_model(
            StandardScaler().fit(np.ones((3, 2))),
            name="model",
            pip_requirements=["scikit-learn"],
            serialization_format="cloudpickle",
        )
    version = mlflow.register_model(info.model_uri, DETECTOR.name).version
    ref = registry.ModelRef(model_name=DETECTOR.name, version=str(version), run_id="")
    with pytest.raises(registry.ModelLoadError, match="not servable"):
        registry.load_model(settings, ref)


def test_a_dead_tracking_server_raises_registry_error_after_two_retries(tmp_path: Path) -> None:
    # MLflow's own default (7 retries, exponential backoff) would take minutes; the adapter
    # lowers it so an exporter cycle is not held up by a dead tracking server. Counted, not timed:
    # a listener that drops every connection at once sees each attempt.
    attempts = [0]
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)

        def drop_every_connection() -> None:
            while True:
                try:
                    connection, _ = listener.accept()
                except OSError:  # closed by the test
                    return
                attempts[0] += 1
                connection.close()

        threading.Thread(target=drop_every_connection, daemon=True).start()
        settings = load_settings(
            mlflow_tracking_uri=f"http://127.0.0.1:{listener.getsockname()[1]}",
            config_path=tmp_path / "absent.yml",
        )
        with pytest.raises(registry.RegistryError, match="could not look up"):
            registry.champion_ref(settings, DETECTOR.name)
    assert attempts[0] == 3, attempts  # the first try and two retries
