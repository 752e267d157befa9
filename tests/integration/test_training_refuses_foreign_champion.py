"""Training (the worker's judge-and-promote path, here fed from a file) against a real MLflow
registry whose `@champion` an attacker moved to a pickled version: the champion is refused
unloaded, the decision says so, and a validated candidate replaces it by compare-and-set."""

from __future__ import annotations

from pathlib import Path

import pytest

from slo_pipeline.adapters import registry
from slo_pipeline.orchestration.file_training import train_from_file
from slo_pipeline.settings import Settings, load_settings
from tests.fixtures.hostile_models import move_champion_directly, register_pickle_version
from tests.integration.test_mlflow_project import write_csv

pytestmark = pytest.mark.integration

NAME = "guarded_latency"


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return load_settings(
        mlflow_tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
        mlflow_artifact_root=str(tmp_path / "artifacts"),
        config_path=tmp_path / "absent.yml",
        data_lake=str(tmp_path / "lake"),
        database_url=database_url,
    )


def test_a_pickled_champion_is_refused_and_replaced_by_a_validated_model(
    settings: Settings, tmp_path: Path
) -> None:
    csv = tmp_path / "latency.csv"
    write_csv(csv)
    first = train_from_file(settings, NAME, csv)
    assert first.promoted, first.reasons
    marker = tmp_path / "pickle-payload-ran"
    hostile = register_pickle_version(settings, NAME, marker)
    move_champion_directly(settings, NAME, hostile)

    second = train_from_file(settings, NAME, csv)
    assert not marker.exists(), "training ran the pickled champion's code"
    assert f"champion version {hostile} was refused (serialization_format)" in "; ".join(second.reasons)
    assert second.promoted, second.reasons
    assert registry.champion_ref(settings, NAME).version == second.model_version
    assert registry.alias_ref(settings, NAME, registry.PREVIOUS).version == hostile
    tags = {row["version"]: row["tags"] for row in registry.list_versions(settings, NAME)}
    assert tags[second.model_version]["slo_pipeline.compared_with"] == hostile
    assert "refused" in tags[second.model_version]["slo_pipeline.reasons"]
