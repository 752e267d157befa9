"""`mlflow models serve -m models:/NAME@champion --env-manager local` serves the detector.

The real MLflow scoring server runs as its own process group on loopback over a sqlite registry
in a temp folder; its answers are compared with the in-process scores of the same registered
version (`registry.load_model`, the exporter's loader) row by row.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from slo_pipeline.adapters import registry
from slo_pipeline.adapters.scoring_endpoint import score_latest_via_endpoint
from slo_pipeline.core.frame_scoring import ServingParams, score_rows
from slo_pipeline.core.training import fit_detector_model
from slo_pipeline.devstack.launch import free_port
from slo_pipeline.settings import DetectorConfig, FeatureWindows, Settings, load_settings
from tests.fixtures.waiting import wait_until

pytestmark = pytest.mark.integration

NAME = "served_latency"
STEP = 30
DETECTOR = DetectorConfig(
    name=NAME,
    query="x",
    step_seconds=STEP,
    false_alarms_per_week=2.0,
    windows=FeatureWindows(short=3, medium=6, long=16, evidence=3),
    n_estimators=40,
    min_training_samples=200,
)
SERVING = ServingParams(step_seconds=STEP, false_alarms_per_week=2.0)
START = 1_700_000_000


@pytest.fixture
def settings(tmp_path: Path, empty_database_url: str) -> Settings:
    return load_settings(
        mlflow_tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
        mlflow_artifact_root=str(tmp_path / "artifacts"),
        config_path=tmp_path / "absent.yml",
        database_url=empty_database_url,
    )


def request_rows() -> list[list[object]]:
    """Two series of recent history, one with an incident and one with a gap, rows shuffled."""
    rng = np.random.default_rng(11)
    rows: list[list[object]] = []
    for key, level in (('{"route":"/a"}', 100.0), ('{"route":"/b"}', 20.0)):
        values = level + rng.normal(0, level * 0.03, size=120)
        if key.endswith('/a"}'):
            values[80:84] = level * 3
        for row, value in enumerate(values):
            if key.endswith('/b"}') and 50 <= row < 60:
                continue
            rows.append([key, float(START + STEP * row), float(value)])
    order = rng.permutation(len(rows))
    return [rows[i] for i in order]


def post(url: str, body: dict[str, object]) -> tuple[int, dict[str, object]]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def wait_ready(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    def ping() -> bool:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200

    wait_until(
        ping,
        timeout=240,
        describe=f"{url} to answer",
        ignoring=(urllib.error.URLError, OSError),
        still_alive=lambda: process.poll() is None,
        detail=lambda: log.read_text()[-3000:],
    )


def stop_group(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)


def test_mlflow_models_serve_answers_as_the_exporter_scores(settings: Settings, tmp_path: Path) -> None:
    history = 100 + np.random.default_rng(0).normal(0, 3, size=(1000, 3))
    model, _ = fit_detector_model(history, DETECTOR, seed=0)
    registered = registry.log_and_register(settings, NAME, model, params={}, metrics={}, serving=SERVING)
    registry.set_champion(settings, NAME, registered.ref.version)

    bin_dir = Path(sys.executable).parent
    port = free_port()
    log = tmp_path / "serve.log"
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": settings.mlflow_tracking_uri,
        # The scoring server is started as `uvicorn` from PATH: the venv's, as in an activated venv.
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    command = [str(bin_dir / "mlflow"), "models", "serve", "-m", f"models:/{NAME}@champion"]
    command += ["--env-manager", "local", "--host", "127.0.0.1", "--port", str(port)]
    with log.open("wb") as out:
        server = subprocess.Popen(
            command,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_ready(f"{url}/ping", server, log)
        rows = request_rows()
        columns = ["series", "timestamp", "value"]
        status, answer = post(f"{url}/invocations", {"dataframe_split": {"columns": columns, "data": rows}})
        assert status == 200, answer
        predictions = answer["predictions"]
        assert isinstance(predictions, list) and len(predictions) == len(rows)

        served = registry.load_model(settings, registered.ref)
        local = score_rows(
            served,
            SERVING,
            np.array([r[0] for r in rows]),
            np.array([r[1] for r in rows], dtype=float),
            np.array([r[2] for r in rows], dtype=float),
        )
        remote_score = np.array(
            [np.nan if p["anomaly_score"] is None else p["anomaly_score"] for p in predictions]
        )
        remote_p = np.array(
            [
                np.nan if p["anomaly_tail_probability"] is None else p["anomaly_tail_probability"]
                for p in predictions
            ]
        )
        np.testing.assert_allclose(remote_score, local.anomaly_score, rtol=1e-9, equal_nan=True)
        np.testing.assert_allclose(remote_p, local.anomaly_tail_probability, rtol=1e-9, equal_nan=True)
        assert np.isnan(remote_score).sum() > 0, "rows without enough history answer null"
        assert np.isfinite(remote_score).sum() > 150
        incident = [i for i, r in enumerate(rows) if r[0].endswith('/a"}') and r[1] >= START + STEP * 81]
        assert np.nanmax(remote_score[incident]) >= 1

        # The last row of a series is what the exporter publishes for it now.
        a_rows = sorted((r[1], r[2]) for r in rows if r[0].endswith('/a"}'))
        window = np.array([v for _, v in a_rows][-served.scoring_rows :])[:, None]
        last = max(range(len(rows)), key=lambda i: (rows[i][0].endswith('/a"}'), rows[i][1]))
        np.testing.assert_allclose(remote_p[last], served.score_latest(window)[0], rtol=1e-9)

        # The exporter's optional remote scoring (SLO_PIPELINE_EXPORTER_SCORING_URLS) gets, for
        # a Prometheus-shaped block, exactly what it computes in-process.
        block_rows = served.scoring_rows + 10
        block = 100 + np.random.default_rng(4).normal(0, 3, size=(block_rows, 4))
        block[-4:, 0] = 250.0  # anomalous now, for a few samples (evidence accumulates over 3)
        block[-1, 2] = np.nan  # no sample now: bridged like any short gap
        block[:, 3] = np.nan  # a series with no sample at all: unscorable
        block[-2, 3] = 1.0  # ... but one lone sample
        block[5:8, 1] = np.nan  # an older gap
        keys = ['{"route":"/x"}', '{"route":"/y"}', '{"route":"/z"}', '{"route":"/w"}']
        stamps = START + STEP * np.arange(block_rows, dtype=float)
        remote_p, remote_score = score_latest_via_endpoint(url, keys, stamps, block, timeout=60)
        local_p = served.score_latest(block)
        threshold = served.alarm_threshold(SERVING.false_alarms_per_week, SERVING.step_seconds)
        local_score = served.anomaly_scores(local_p, threshold, keys)
        np.testing.assert_allclose(remote_p, local_p, rtol=1e-9, equal_nan=True)
        np.testing.assert_allclose(remote_score, local_score, rtol=1e-9, equal_nan=True)
        assert np.isfinite(remote_score[:3]).all() and np.isnan(remote_score[3])
        assert remote_score[0] >= 1

        status, answer = post(
            f"{url}/invocations", {"dataframe_split": {"columns": ["series", "value"], "data": [["a", 1.0]]}}
        )
        assert status == 400 and "timestamp" in str(answer["message"])
        status, answer = post(
            f"{url}/invocations",
            {"dataframe_split": {"columns": columns, "data": [["a", 0.0, 1.0], ["a", 1e12, 1.0]]}},
        )
        assert status == 400 and "send recent history only" in str(answer["message"])
    finally:
        stop_group(server)
