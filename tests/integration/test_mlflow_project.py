"""`mlflow run . -e train -P detector=NAME -P input=FILE.csv --env-manager local` against a real
MLflow (sqlite registry in a temp folder) and the machine's PostgreSQL (a database of the test's).

The detector is not in the configuration, so it gets the default settings with the file's step;
a first model with no champion is judged by the basic gate and becomes `@champion`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from slo_pipeline.adapters import registry
from slo_pipeline.settings import DetectorConfig, load_settings
from tests.fixtures.paths import REPO_ROOT

pytestmark = pytest.mark.integration

NAME = "csv_latency"
STEP = 120


def write_csv(path: Path) -> None:
    """Two and a half days of a calm series with a daily-ish wave, at a 2-minute step."""
    rng = np.random.default_rng(3)
    rows = 1800
    times = pd.date_range("2026-11-01", periods=rows, freq=f"{STEP}s")
    values = 100 + 10 * np.sin(np.arange(rows) / 100) + rng.normal(0, 2, rows)
    frame = pd.DataFrame({"timestamp": times.strftime("%Y-%m-%d %H:%M:%S"), "value": values.round(3)})
    frame.to_csv(path, index=False)


def test_mlflow_run_train_registers_and_promotes_a_first_model(tmp_path: Path, database_url: str) -> None:
    csv = tmp_path / "latency.csv"
    write_csv(csv)
    bin_dir = Path(sys.executable).parent
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",  # an activated venv
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
        "SLO_PIPELINE_MLFLOW_ARTIFACT_ROOT": str(tmp_path / "artifacts"),
        "SLO_PIPELINE_CONFIG": str(tmp_path / "absent.yml"),
        "SLO_PIPELINE_DATA_LAKE": str(tmp_path / "lake"),
        "DATABASE_URL": database_url,
    }
    command = [str(bin_dir / "mlflow"), "run", str(REPO_ROOT), "-e", "train", "-P", f"detector={NAME}"]
    command += ["-P", f"input={csv}", "--env-manager", "local"]
    done = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=1200)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    assert f'"detector": "{NAME}"' in output and '"promoted": true' in output, output[-4000:]

    settings = load_settings(
        mlflow_tracking_uri=env["MLFLOW_TRACKING_URI"],
        mlflow_artifact_root=env["SLO_PIPELINE_MLFLOW_ARTIFACT_ROOT"],
        config_path=tmp_path / "absent.yml",
        database_url=database_url,
    )
    champion = registry.champion_ref(settings, NAME)
    assert champion is not None and champion.version == "1"
    tags = registry.list_versions(settings, NAME)[0]["tags"]
    assert tags["slo_pipeline.decision"] == "promoted" and tags["slo_pipeline.compared_with"] == "none"

    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=settings.mlflow_tracking_uri)
    run = client.get_run(champion.run_id)
    assert run.data.params["step_seconds"] == str(STEP)  # the file's step, default settings otherwise
    defaults = DetectorConfig(name="defaults", query="x").windows.model_dump()
    assert json.loads(run.data.params["windows"]) == defaults
    assert run.inputs.dataset_inputs, "the training snapshot is logged as the run's dataset"
    # The project run `mlflow run` created points at what the training registered.
    projects = client.search_runs(
        [e.experiment_id for e in client.search_experiments()],
        filter_string=f"tags.`slo_pipeline.{NAME}.version` = '1'",
    )
    assert len(projects) == 1 and projects[0].data.tags["mlflow.project.entryPoint"] == "train"
    assert projects[0].data.metrics[f"{NAME}.promoted"] == 1.0
    # The registered version is one the exporter loads (and the safe loader accepts).
    model = registry.load_model(settings, champion)
    assert model.windows.model_dump() == defaults
