"""The model format check: what this project writes loads; every other shape is refused by reason.

The folders are laid out by hand as MLflow lays out a pyfunc-from-code version (the integration
tests in tests/integration/test_registry.py use real MLflow); here each rule is broken alone.
"""

from __future__ import annotations

import copy
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import skops.io
import yaml
from sklearn.preprocessing import FunctionTransformer

from slo_pipeline.adapters import model_package
from slo_pipeline.adapters.model_package import CODE_FILE, ModelRefused, load_package
from slo_pipeline.core.frame_scoring import ServingParams
from slo_pipeline.core.training import fit_detector_model
from slo_pipeline.settings import DetectorConfig, FeatureWindows

DETECTOR = DetectorConfig(
    name="pkg", query="x", windows=FeatureWindows(short=3, medium=6, long=12), n_estimators=20
)
MLMODEL = {
    "flavors": {
        "python_function": {
            "loader_module": "mlflow.pyfunc.loaders.code_model",
            "model_code_path": f"/somewhere/{CODE_FILE}",
            "artifacts": {
                "forest": {"path": "artifacts/forest.skops", "uri": "/tmp/forest.skops"},
                "detector": {"path": "artifacts/detector.json", "uri": "/tmp/detector.json"},
            },
            "env": {"virtualenv": "python_env.yaml"},
            "python_version": "3.11.7",
        }
    },
}


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("package")
    model, _ = fit_detector_model(np.random.default_rng(0).normal(10, 1, size=(400, 2)), DETECTOR, seed=0)
    (folder / "artifacts").mkdir()
    model_package.write_artifacts(model, ServingParams(60, 2.0), folder / "artifacts")
    shutil.copy(model_package.CODE_SOURCE, folder / CODE_FILE)
    (folder / "MLmodel").write_text(yaml.safe_dump(MLMODEL))
    return folder


def variant(written: Path, tmp_path: Path, mlmodel: dict | None = None) -> Path:
    folder = tmp_path / "variant"
    shutil.copytree(written, folder)
    if mlmodel is not None:
        (folder / "MLmodel").write_text(yaml.safe_dump(mlmodel))
    return folder


def pyfunc(mlmodel: dict) -> dict:
    return mlmodel["flavors"]["python_function"]


def test_the_written_layout_loads_with_its_serving_parameters(written: Path) -> None:
    loaded = load_package(written)
    assert loaded.serving == ServingParams(60, 2.0)
    assert loaded.model.windows == DETECTOR.windows


def test_the_forest_needs_exactly_the_trusted_list(written: Path) -> None:
    found = skops.io.get_untrusted_types(file=written / "artifacts" / "forest.skops")
    assert sorted(found) == model_package.SKOPS_TRUSTED_TYPES


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda m: pyfunc(m).update(python_model="python_model.pkl"), "serialization_format"),
        (lambda m: pyfunc(m).update(code="code"), "code_paths"),
        (lambda m: pyfunc(m).update(loader_module="mlflow.sklearn"), "flavor"),
        (lambda m: pyfunc(m).update(model_code_path="/x/other.py"), "model_code"),
        (lambda m: pyfunc(m)["artifacts"]["forest"].update(path="../../etc/passwd"), "artifact_layout"),
        (lambda m: pyfunc(m)["artifacts"].pop("detector"), "artifact_layout"),
        (
            lambda m: m["flavors"].update(sklearn={"serialization_format": "cloudpickle"}),
            "serialization_format",
        ),
        (lambda m: m["flavors"].update(onnx={"data": "model.onnx"}), "flavor"),
        (lambda m: m.update(flavors="python_function"), "flavor"),
    ],
)
def test_each_foreign_shape_is_refused_with_its_reason(
    written: Path, tmp_path: Path, change, reason: str
) -> None:
    mlmodel = copy.deepcopy(MLMODEL)
    change(mlmodel)
    with pytest.raises(ModelRefused) as refused:
        load_package(variant(written, tmp_path, mlmodel))
    assert refused.value.reason == reason


def test_a_changed_code_file_is_refused_unexecuted(written: Path, tmp_path: Path) -> None:
    folder = variant(written, tmp_path)
    marker = tmp_path / "ran"
    (folder / CODE_FILE).write_text(f"open({str(marker)!r}, 'w')\n")
    with pytest.raises(ModelRefused) as refused:
        load_package(folder)
    assert refused.value.reason == "model_code" and not marker.exists()


def test_a_skops_file_with_untrusted_types_is_refused(written: Path, tmp_path: Path) -> None:
    folder = variant(written, tmp_path)
    skops.io.dump(FunctionTransformer(os.system), folder / "artifacts" / "forest.skops")
    with pytest.raises(ModelRefused) as refused:
        load_package(folder)
    assert refused.value.reason == "untrusted_types" and "system" in str(refused.value)


def test_a_missing_or_garbled_mlmodel_is_refused(written: Path, tmp_path: Path) -> None:
    folder = variant(written, tmp_path)
    (folder / "MLmodel").write_text("flavors: [unclosed")
    with pytest.raises(ModelRefused) as refused:
        load_package(folder)
    assert refused.value.reason == "no_mlmodel"
    (folder / "MLmodel").unlink()
    with pytest.raises(ModelRefused, match="no_mlmodel"):
        load_package(folder)
