"""The MLflow adapter against a real MLflow registry (sqlite backend in a temp folder)."""

from __future__ import annotations

import json
import multiprocessing
import os
import socket
import threading
from pathlib import Path

import numpy as np
import pytest

from slo_pipeline.adapters import registry
from slo_pipeline.adapters.model_package import ModelRefused
from slo_pipeline.adapters.postgres import connect
from slo_pipeline.adapters.promotion_lock import PROMOTION_LOCK_CLASS
from slo_pipeline.core.frame_scoring import ServingParams
from slo_pipeline.core.model import DetectorModel
from slo_pipeline.core.training import fit_detector_model
from slo_pipeline.settings import DetectorConfig, Settings, load_settings
from tests.fixtures.hostile_models import move_champion_directly, register_pickle_version
from tests.fixtures.waiting import wait_until

pytestmark = pytest.mark.integration

DETECTOR = DetectorConfig(name="registry_test", query="up", windows={"short": 3, "medium": 6, "long": 12})


SERVING = ServingParams(step_seconds=60, false_alarms_per_week=1.0)


@pytest.fixture
def settings(tmp_path: Path, empty_database_url: str) -> Settings:
    # The database only holds the promotion lock (an advisory lock needs no tables).
    return settings_for(tmp_path, empty_database_url)


def settings_for(folder: Path, database_url: str) -> Settings:
    return load_settings(
        mlflow_tracking_uri=f"sqlite:///{folder / 'mlflow.db'}",
        mlflow_artifact_root=str(folder / "artifacts"),
        config_path=folder / "absent.yml",
        database_url=database_url,
    )


def register(settings: Settings, seed: int) -> str:
    model, _ = trained(seed)
    registered = registry.log_and_register(
        settings, DETECTOR.name, model, params={"seed": seed}, metrics={}, serving=SERVING
    )
    return registered.ref.version


def trained(seed: int):
    rng = np.random.default_rng(seed)
    return fit_detector_model(rng.normal(100, 5, size=(400, 4)), DETECTOR, seed=seed)


def test_register_promote_rollback_and_load(settings: Settings) -> None:
    assert registry.champion_ref(settings, DETECTOR.name) is None

    model_1, report_1 = trained(1)
    first = registry.log_and_register(
        settings, DETECTOR.name, model_1, params={"seed": 1}, metrics=report_1.as_metrics(), serving=SERVING
    )
    assert first.ref.version == "1"
    assert registry.champion_ref(settings, DETECTOR.name) is None  # registered is not serving
    assert registry.set_champion(settings, DETECTOR.name, "1") is None

    model_2, report_2 = trained(2)
    second = registry.log_and_register(
        settings, DETECTOR.name, model_2, params={"seed": 2}, metrics=report_2.as_metrics(), serving=SERVING
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

    restored = registry.rollback(settings, DETECTOR.name, to_version="1", expected_champion="2")
    assert restored.version == "1"
    assert registry.champion_ref(settings, DETECTOR.name).version == "1"


def test_rollback_names_its_version_and_fails_when_the_champion_moved(settings: Settings) -> None:
    first, second, third = register(settings, 1), register(settings, 2), register(settings, 3)
    registry.set_champion(settings, DETECTOR.name, first)
    registry.set_champion(settings, DETECTOR.name, second)
    # The operator confirmed "roll back from 2 to 1"; meanwhile a training promoted 3.
    registry.promote(settings, DETECTOR.name, third, expected_champion=second, tags={"by": "training"})
    with pytest.raises(registry.ChampionMoved, match="is version 3, not 2"):
        registry.rollback(settings, DETECTOR.name, to_version=first, expected_champion=second)
    assert registry.champion_ref(settings, DETECTOR.name).version == third
    assert registry.alias_ref(settings, DETECTOR.name, registry.PREVIOUS).version == second
    # The confirmed plan against the champion it names goes through, and tags after the move.
    registry.rollback(settings, DETECTOR.name, to_version=first, expected_champion=third, tags={"who": "ops"})
    rows = {row["version"]: row for row in registry.list_versions(settings, DETECTOR.name)}
    assert rows[first]["aliases"] == ["champion"] and rows[first]["tags"]["who"] == "ops"
    assert rows[third]["aliases"] == ["previous"] and rows[third]["tags"]["by"] == "training"
    with pytest.raises(registry.RegistryError, match="no version '99'"):
        registry.rollback(settings, DETECTOR.name, to_version="99", expected_champion=first)


def test_promotion_waits_for_the_lock_and_rechecks_the_champion_under_it(settings: Settings) -> None:
    first, second, third = register(settings, 1), register(settings, 2), register(settings, 3)
    registry.set_champion(settings, DETECTOR.name, first)
    holder = connect(settings.database_url)
    holder.autocommit = True
    outcome: list[object] = []
    with holder.cursor() as cur:
        cur.execute("SELECT pg_advisory_lock(%s, hashtext(%s))", (PROMOTION_LOCK_CLASS, DETECTOR.name))

        def promote_third() -> None:
            try:
                outcome.append(registry.promote(settings, DETECTOR.name, third, expected_champion=first))
            except registry.RegistryError as err:
                outcome.append(err)

        rival = threading.Thread(target=promote_third)
        rival.start()
        # Until the rival is seen waiting on the lock in pg_locks.
        wait_until(
            lambda: lock_waiters(cur),
            timeout=120,
            describe="the rival promotion to wait on the lock",
            still_alive=rival.is_alive,
            detail=lambda: repr(outcome),
        )
        # While we hold the lock, "another promoter" moves the champion to 2.
        move_champion_directly(settings, DETECTOR.name, second)
        cur.execute("SELECT pg_advisory_unlock(%s, hashtext(%s))", (PROMOTION_LOCK_CLASS, DETECTOR.name))
    holder.close()
    rival.join(timeout=120)
    assert len(outcome) == 1 and isinstance(outcome[0], registry.ChampionMoved), outcome
    assert registry.champion_ref(settings, DETECTOR.name).version == second


def lock_waiters(cur: object) -> int:
    cur.execute(  # type: ignore[attr-defined]
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND classid = %s",
        (PROMOTION_LOCK_CLASS,),
    )
    return int(cur.fetchone()[0])  # type: ignore[attr-defined]


def promote_in_another_process(folder: str, database_url: str, version: str, expected: str) -> str:
    settings = settings_for(Path(folder), database_url)
    try:
        registry.promote(settings, DETECTOR.name, version, expected_champion=expected)
    except registry.ChampionMoved:
        return "moved"
    return "promoted"


def test_concurrent_promotions_from_separate_processes_promote_exactly_one(
    settings: Settings, tmp_path: Path
) -> None:
    first = register(settings, 1)
    rivals = [register(settings, seed) for seed in (2, 3, 4)]
    registry.set_champion(settings, DETECTOR.name, first)
    context = multiprocessing.get_context("spawn")
    with context.Pool(len(rivals)) as pool:
        results = pool.starmap(
            promote_in_another_process,
            [(str(tmp_path), settings.database_url, version, first) for version in rivals],
        )
    assert sorted(results) == ["moved", "moved", "promoted"], results
    winner = rivals[results.index("promoted")]
    assert registry.champion_ref(settings, DETECTOR.name).version == winner
    assert registry.alias_ref(settings, DETECTOR.name, registry.PREVIOUS).version == first


def test_a_pickled_version_is_refused_without_running_it(settings: Settings, tmp_path: Path) -> None:
    good = register(settings, 1)
    registry.set_champion(settings, DETECTOR.name, good)
    marker = tmp_path / "code-ran"
    hostile = register_pickle_version(settings, DETECTOR.name, marker)
    move_champion_directly(settings, DETECTOR.name, hostile)
    ref = registry.champion_ref(settings, DETECTOR.name)
    assert ref is not None and ref.version == hostile
    with pytest.raises(ModelRefused) as refused:
        registry.load_model(settings, ref)
    assert refused.value.reason == "serialization_format"
    assert f"models:/{DETECTOR.name}/{hostile}" in str(refused.value)
    assert not marker.exists(), "loading the refused version ran its code"
    # MLflow's own loader would have run it: the payload is real.
    import mlflow

    os.environ["MLFLOW_ALLOW_PICKLE_DESERIALIZATION"] = "true"
    try:
        mlflow.sklearn.load_model(f"models:/{DETECTOR.name}/{hostile}")
    finally:
        os.environ.pop("MLFLOW_ALLOW_PICKLE_DESERIALIZATION")
    assert marker.exists()


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
