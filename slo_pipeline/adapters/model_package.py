"""The on-disk form of a registered detector model, and the only way this project loads one.

A registered version is an MLflow pyfunc "model from code": MLmodel, the fixed code file
`detector_pyfunc.py` (which only imports this package's `DetectorPyfunc`), and two artifacts:
the IsolationForest in skops format and `detector.json` (metadata + the serving parameters).
Versions registered before the pyfunc format (sklearn flavour, skops) are still loaded.

Loading never goes through `mlflow.*.load_model`: MLflow reads the serialization format and the
skops trusted types from the model's own MLmodel, puts its `code/` folder on `sys.path` and
unpickles by default, so whoever can register a version and move `@champion` could run code in
the exporter and the worker. Here the MLmodel is only *read* (YAML, safe loader) and checked
against the layout this project writes; the forest is loaded with skops and OUR trusted list;
the code file is compared byte for byte and never executed. Anything else is refused with a
reason from `REFUSAL_REASONS` (a bounded set: it labels a metric).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from slo_pipeline.core.frame_scoring import ServingParams
from slo_pipeline.core.model import DetectorModel

# An IsolationForest holds sklearn's compiled Tree objects, which are safe and the only type it
# needs beyond skops' defaults (numpy arrays, sklearn estimators); checked by a test.
SKOPS_TRUSTED_TYPES = ["sklearn.tree._tree.Tree"]

FOREST_ARTIFACT, FOREST_FILE = "forest", "forest.skops"
DETECTOR_ARTIFACT, DETECTOR_FILE = "detector", "detector.json"
CODE_FILE = "detector_pyfunc.py"
# The code file MLflow stores with every version; it must stay byte-identical to this one.
CODE_SOURCE = Path(__file__).with_name(CODE_FILE)
PACKAGE_FORMAT = 1
# A detector.json larger than this is not ours (the real one is a few KB).
MAX_DETECTOR_JSON_BYTES = 4 * 1024 * 1024

REFUSAL_REASONS = (
    "no_mlmodel",  # no readable MLmodel file
    "flavor",  # not a pyfunc-from-code or sklearn model as this project writes them
    "serialization_format",  # pickle / cloudpickle instead of skops
    "code_paths",  # the version ships code to put on sys.path
    "model_code",  # the pyfunc code file differs from this project's
    "artifact_layout",  # artifacts missing or not where this project puts them
    "untrusted_types",  # the skops file holds types outside the trusted list
)


class ModelLoadError(RuntimeError):
    """A registered model version exists but could not be turned into a DetectorModel."""


class ModelRefused(ModelLoadError):
    """The version is not a model this project wrote; it was not loaded (no code ran)."""

    def __init__(self, reason: str, detail: str) -> None:
        if reason not in REFUSAL_REASONS:
            raise ValueError(f"unknown refusal reason {reason!r}")
        super().__init__(f"refused to load ({reason}): {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class LoadedPackage:
    model: DetectorModel
    serving: ServingParams | None  # None for versions from before the pyfunc format


def write_artifacts(model: DetectorModel, serving: ServingParams, folder: Path) -> dict[str, str]:
    """The pyfunc's artifacts in `folder`; returns the `artifacts=` mapping for log_model."""
    import skops.io

    forest_path = folder / FOREST_FILE
    skops.io.dump(model.forest, forest_path)
    detector_path = folder / DETECTOR_FILE
    detector_path.write_text(
        json.dumps(
            {
                "slo_pipeline_package_format": PACKAGE_FORMAT,
                "model": model.metadata(),
                "serving": {
                    "step_seconds": serving.step_seconds,
                    "false_alarms_per_week": serving.false_alarms_per_week,
                },
            },
            sort_keys=True,
        )
    )
    return {FOREST_ARTIFACT: str(forest_path), DETECTOR_ARTIFACT: str(detector_path)}


def load_package(model_dir: Path) -> LoadedPackage:
    """Check `model_dir` (a downloaded version) and load it; ModelRefused / ModelLoadError."""
    mlmodel = read_mlmodel(model_dir)
    flavors = mlmodel.get("flavors")
    if not isinstance(flavors, dict) or not all(isinstance(f, dict) for f in flavors.values()):
        raise ModelRefused("flavor", "MLmodel names no flavors")
    _refuse_pickle_and_code(flavors)
    if set(flavors) == {"python_function"}:
        return load_from_artifacts(*check_pyfunc_layout(flavors["python_function"], model_dir))
    if set(flavors) == {"python_function", "sklearn"}:
        forest_path = _check_legacy_sklearn_layout(flavors, model_dir)
        return LoadedPackage(
            model=_detector_model(load_forest(forest_path), mlmodel.get("metadata")), serving=None
        )
    raise ModelRefused("flavor", f"flavors {sorted(flavors)} are not what this project registers")


def load_from_artifacts(forest_path: Path, detector_path: Path) -> LoadedPackage:
    """The pyfunc's two artifacts (also what `DetectorPyfunc.load_context` is given)."""
    forest = load_forest(forest_path)
    document = _read_detector_json(detector_path)
    return LoadedPackage(
        model=_detector_model(forest, document.get("model")), serving=_serving(document.get("serving"))
    )


def _refuse_pickle_and_code(flavors: dict[str, dict[str, Any]]) -> None:
    """The two dangerous things first, whatever else the MLmodel says: pickles and code."""
    for name, flavor in flavors.items():
        fmt = flavor.get("serialization_format")
        if fmt is not None and fmt != "skops":
            raise ModelRefused("serialization_format", f"{name} flavour saved as {fmt!r}, not skops")
        if "python_model" in flavor:
            raise ModelRefused("serialization_format", f"{name} flavour holds a cloudpickled python model")
        if flavor.get("code"):
            raise ModelRefused("code_paths", f"{name} flavour ships code for sys.path: {flavor['code']!r}")


def read_mlmodel(model_dir: Path) -> dict[str, Any]:
    path = model_dir / "MLmodel"
    try:
        document = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise ModelRefused("no_mlmodel", f"cannot read {path.name}: {err}") from err
    if not isinstance(document, dict):
        raise ModelRefused("no_mlmodel", f"{path.name} is not a mapping")
    return document


def check_pyfunc_layout(flavor: Any, model_dir: Path) -> tuple[Path, Path]:
    """Paths of the forest and detector.json of a pyfunc version laid out as `write_artifacts`
    and registry.log_and_register make it; refuses cloudpickled models and foreign code."""
    if not isinstance(flavor, dict):
        raise ModelRefused("flavor", "python_function flavour is not a mapping")
    if "python_model" in flavor:
        raise ModelRefused(
            "serialization_format", "the python model is a cloudpickle, not code from this project"
        )
    if flavor.get("code"):
        raise ModelRefused("code_paths", f"the version ships code for sys.path: {flavor['code']!r}")
    if flavor.get("loader_module") != "mlflow.pyfunc.loaders.code_model":
        raise ModelRefused(
            "flavor", f"pyfunc loader {flavor.get('loader_module')!r} is not mlflow.pyfunc.loaders.code_model"
        )
    code_path = flavor.get("model_code_path")
    if not isinstance(code_path, str) or Path(code_path).name != CODE_FILE:
        raise ModelRefused("model_code", f"model code file {code_path!r} is not {CODE_FILE}")
    try:
        shipped = (model_dir / CODE_FILE).read_bytes()
    except OSError as err:
        raise ModelRefused("model_code", f"{CODE_FILE} missing: {err}") from err
    if shipped != CODE_SOURCE.read_bytes():
        raise ModelRefused("model_code", f"{CODE_FILE} differs from this project's")
    artifacts = flavor.get("artifacts")
    expected = {FOREST_ARTIFACT: FOREST_FILE, DETECTOR_ARTIFACT: DETECTOR_FILE}
    if not isinstance(artifacts, dict) or set(artifacts) != set(expected):
        found = sorted(artifacts) if isinstance(artifacts, dict) else artifacts
        raise ModelRefused("artifact_layout", f"artifacts {found} are not {sorted(expected)}")
    paths = []
    for name, filename in expected.items():
        entry = artifacts[name]
        relative = entry.get("path") if isinstance(entry, dict) else None
        if relative != f"artifacts/{filename}":
            raise ModelRefused(
                "artifact_layout", f"artifact {name!r} at {relative!r}, not artifacts/{filename}"
            )
        paths.append(model_dir / relative)
    return paths[0], paths[1]


def _check_legacy_sklearn_layout(flavors: dict[str, Any], model_dir: Path) -> Path:
    sklearn, pyfunc = flavors["sklearn"], flavors["python_function"]
    if not isinstance(sklearn, dict) or not isinstance(pyfunc, dict):
        raise ModelRefused("flavor", "sklearn / python_function flavour is not a mapping")
    if sklearn.get("serialization_format") != "skops":
        raise ModelRefused(
            "serialization_format",
            f"sklearn model saved as {sklearn.get('serialization_format')!r}, not skops",
        )
    if sklearn.get("code") or pyfunc.get("code"):
        raise ModelRefused("code_paths", "the version ships code for sys.path")
    if pyfunc.get("loader_module") != "mlflow.sklearn":
        raise ModelRefused("flavor", f"pyfunc loader {pyfunc.get('loader_module')!r} is not mlflow.sklearn")
    if sklearn.get("pickled_model") != "model.skops":
        raise ModelRefused(
            "artifact_layout", f"model file {sklearn.get('pickled_model')!r} is not model.skops"
        )
    return model_dir / "model.skops"


def load_forest(path: Path) -> Any:
    """The skops file at `path`, refusing any type outside SKOPS_TRUSTED_TYPES (no code runs)."""
    import skops.io

    try:
        untrusted = skops.io.get_untrusted_types(file=path)
    except Exception as err:  # not a skops archive at all
        raise ModelRefused("artifact_layout", f"{path.name} is not a skops file: {err}") from err
    extra = sorted(set(untrusted) - set(SKOPS_TRUSTED_TYPES))
    if extra:
        raise ModelRefused(
            "untrusted_types", f"{path.name} holds types outside the trusted list: {extra[:5]}"
        )
    try:
        return skops.io.load(path, trusted=SKOPS_TRUSTED_TYPES)
    except Exception as err:
        raise ModelLoadError(f"{path.name} could not be loaded: {err}") from err


def _read_detector_json(path: Path) -> dict[str, Any]:
    try:
        if path.stat().st_size > MAX_DETECTOR_JSON_BYTES:
            raise ModelRefused(
                "artifact_layout", f"{path.name} is larger than {MAX_DETECTOR_JSON_BYTES} bytes"
            )
        document = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise ModelRefused("artifact_layout", f"cannot read {path.name}: {err}") from err
    if not isinstance(document, dict) or document.get("slo_pipeline_package_format") != PACKAGE_FORMAT:
        raise ModelLoadError(f"{path.name} is not package format {PACKAGE_FORMAT}")
    return document


def _detector_model(forest: Any, metadata: Any) -> DetectorModel:
    try:
        return DetectorModel.from_parts(forest, metadata if isinstance(metadata, dict) else None)
    except (ValueError, KeyError, TypeError) as err:
        raise ModelLoadError(f"not servable: {err}") from err


def _serving(document: Any) -> ServingParams:
    try:
        step = int(document["step_seconds"])
        budget = float(document["false_alarms_per_week"])
        if not math.isfinite(budget):
            raise ValueError(f"false_alarms_per_week {budget}")
        return ServingParams(step_seconds=step, false_alarms_per_week=budget)
    except (TypeError, KeyError, ValueError) as err:
        raise ModelLoadError(f"{DETECTOR_FILE} has no valid serving parameters: {err}") from err
