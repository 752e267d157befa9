"""The demo's MLflow UI (`launch.start_mlflow_ui`): the real `mlflow ui` over a sqlite store on
loopback shows the registered versions with their aliases, and stops with its process group."""

from __future__ import annotations

import json
import os
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from slo_pipeline.adapters import registry
from slo_pipeline.core.frame_scoring import ServingParams
from slo_pipeline.core.training import fit_detector_model
from slo_pipeline.devstack import launch
from slo_pipeline.settings import DetectorConfig, load_settings
from tests.fixtures.waiting import wait_until

pytestmark = pytest.mark.integration

DETECTOR = DetectorConfig(name="ui_shown", query="up", windows={"short": 3, "medium": 6, "long": 12})


def test_mlflow_ui_serves_the_stores_versions_and_aliases(tmp_path: Path, empty_database_url: str) -> None:
    settings = load_settings(
        mlflow_tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
        mlflow_artifact_root=str(tmp_path / "artifacts"),
        config_path=tmp_path / "absent.yml",
        database_url=empty_database_url,
    )
    model, _ = fit_detector_model(np.random.default_rng(0).normal(10, 1, size=(400, 2)), DETECTOR, seed=0)
    registered = registry.log_and_register(
        settings, DETECTOR.name, model, params={}, metrics={}, serving=ServingParams(60, 1.0)
    )
    registry.set_champion(settings, DETECTOR.name, registered.ref.version)

    ui = launch.start_mlflow_ui(settings.mlflow_tracking_uri, log_path=tmp_path / "mlflow-ui.log")
    try:
        assert ui.url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(f"{ui.url}/", timeout=30) as page:
            assert page.status == 200 and b"<html" in page.read().lower()
        query = f"{ui.url}/api/2.0/mlflow/registered-models/get?name={DETECTOR.name}"
        with urllib.request.urlopen(query, timeout=30) as answer:
            shown = json.loads(answer.read())["registered_model"]
        assert {"alias": "champion", "version": registered.ref.version} in shown["aliases"]
    finally:
        ui.stop()
    # The whole group goes, workers included (killed ones may take a moment to be reaped).
    wait_until(
        lambda: not group_alive(ui.popen.pid), timeout=60, describe=f"process group {ui.popen.pid} to end"
    )


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True
