"""Issue 9 finding 9 against the real MLflow client: a tracking URI with credentials never appears
in an error message, and a detector name from the command line never reaches an MLflow filter
string unchecked."""

from __future__ import annotations

from pathlib import Path

import pytest

from slo_pipeline.adapters.registry import RegistryError, alias_ref, ensure_experiment, list_versions
from slo_pipeline.devstack.launch import free_port
from slo_pipeline.settings import PipelineConfig, load_settings

pytestmark = pytest.mark.integration


def test_registry_errors_do_not_print_the_tracking_uri_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    settings = load_settings(
        mlflow_tracking_uri=f"http://alice:s3cret-pw@127.0.0.1:{free_port()}", pipeline=PipelineConfig()
    )
    for call in (
        lambda: alias_ref(settings, "checkout", "champion"),
        lambda: ensure_experiment(settings, "c"),
    ):
        with pytest.raises(RegistryError) as caught:
            call()
        message = str(caught.value)
        assert "s3cret-pw" not in message and "alice" not in message
        assert "http://***@127.0.0.1:" in message  # still says where it tried


def test_list_versions_refuses_a_name_that_is_not_a_detector_name(tmp_path: Path) -> None:
    from mlflow import MlflowClient

    settings = load_settings(
        mlflow_tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}", pipeline=PipelineConfig()
    )
    client = MlflowClient(
        tracking_uri=settings.mlflow_tracking_uri, registry_uri=settings.mlflow_tracking_uri
    )
    for name in ("alpha", "beta"):
        client.create_registered_model(name)
        client.create_model_version(name, source=str(tmp_path / name))

    assert [v["version"] for v in list_versions(settings, "alpha")] == ["1"]
    for hostile in ("alpha' OR name='beta", "alpha'", "%", "Alpha"):
        with pytest.raises(RegistryError, match="is not a detector name"):
            list_versions(settings, hostile)
