"""MLflow model registry adapter: log, register, promote, look up and load detector models.

Thin on purpose: the model logic lives in `slo_pipeline.core.model`; this module only moves it in and
out of MLflow. The registered-model name is the detector name. Aliases:
`champion` serves, `previous` is the champion it replaced (one-step rollback).
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from slo_pipeline.adapters.model_package import (
    CODE_SOURCE,
    ModelLoadError,
    ModelRefused,
    load_package,
    write_artifacts,
)
from slo_pipeline.adapters.promotion_lock import PromotionLockError, promotion_lock
from slo_pipeline.adapters.registry_errors import ChampionMoved as ChampionMoved
from slo_pipeline.adapters.registry_errors import RegistryError as RegistryError
from slo_pipeline.core.frame_scoring import ServingParams
from slo_pipeline.core.model import DetectorModel
from slo_pipeline.settings import NAME_PATTERN, Settings

if TYPE_CHECKING:
    from slo_pipeline.adapters.lake import LakeSlice

log = logging.getLogger(__name__)

CHAMPION = "champion"
PREVIOUS = "previous"


@dataclass(frozen=True)
class ModelRef:
    model_name: str
    version: str
    run_id: str


@dataclass(frozen=True)
class RegisteredModel:
    ref: ModelRef
    model_uri: str


def _pip_requirements() -> list[str]:
    # Explicit requirements skip MLflow's dependency inference, which costs 4-5 s per log.
    from importlib.metadata import version

    return [f"{name}=={version(name)}" for name in ("mlflow", "scikit-learn", "numpy", "pandas", "skops")]


def _configure_mlflow_environment() -> None:
    # A plain folder store is refused by MLflow 3 unless explicitly allowed; users who point
    # MLFLOW_TRACKING_URI at a folder get it working instead of a confusing error.
    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    # MLflow's HTTP client retries 7 times with exponential backoff by default: minutes during
    # which an exporter cycle would hang on a dead tracking server. Fail within seconds instead;
    # the next cycle asks again. Users can still override both.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")


@contextmanager
def _mlflow(settings: Settings) -> Iterator[Any]:
    """Yield the mlflow module bound to the configured tracking URI."""
    import mlflow

    _configure_mlflow_environment()
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    mlflow.set_registry_uri(settings.mlflow_tracking_uri)
    yield mlflow


def _client(settings: Settings) -> Any:
    from mlflow import MlflowClient

    _configure_mlflow_environment()
    return MlflowClient(tracking_uri=settings.mlflow_tracking_uri, registry_uri=settings.mlflow_tracking_uri)


def _artifact_location(settings: Settings, detector_name: str) -> str | None:
    """Where a new experiment keeps its artifacts; None lets the tracking server decide.

    With an embedded store (sqlite, a folder) MLflow would otherwise write into the current
    directory; with a tracking server the server's own artifact store must be used, or clients
    on other machines could not load the models, unless the root was configured explicitly.
    """
    server = settings.mlflow_tracking_uri.startswith(("http://", "https://", "databricks"))
    if server and "mlflow_artifact_root" not in settings.model_fields_set:
        return None
    return settings.mlflow_artifact_root.rstrip("/") + f"/{detector_name}"


def ensure_experiment(settings: Settings, detector_name: str) -> str:
    """Experiment per detector, with artifacts under the configured root (not the CWD)."""
    name = f"slo-pipeline/{detector_name}"
    with _mlflow(settings) as mlflow:
        try:
            existing = mlflow.get_experiment_by_name(name)
            if existing is not None:
                return str(existing.experiment_id)
            location = _artifact_location(settings, detector_name)
            return str(mlflow.create_experiment(name, artifact_location=location))
        except Exception as err:
            raise RegistryError(
                f"could not create MLflow experiment {name!r} at {settings.mlflow_tracking_uri!r}: {err}"
            ) from err


def log_and_register(
    settings: Settings,
    detector_name: str,
    model: DetectorModel,
    *,
    params: Mapping[str, object],
    metrics: Mapping[str, float],
    tags: Mapping[str, str] | None = None,
    lake_slice: LakeSlice | None = None,
    serving: ServingParams,
) -> RegisteredModel:
    """One MLflow run: params, metrics, dataset, model; then a new registered version.

    `serving`: the detector's step and budget, which `mlflow models serve` needs to compute
    anomaly_score as the exporter does."""
    experiment_id = ensure_experiment(settings, detector_name)
    with _mlflow(settings) as mlflow:
        try:
            with mlflow.start_run(experiment_id=experiment_id) as run:
                mlflow.log_params({k: str(v) for k, v in params.items()})
                mlflow.log_metrics({k: float(v) for k, v in metrics.items()})
                mlflow.set_tags(dict(tags or {}))
                if lake_slice is not None:
                    log_lake_slice(mlflow, lake_slice)
                info = _log_pyfunc(mlflow, model, serving)
                run_id = run.info.run_id
            version = mlflow.register_model(info.model_uri, detector_name)
        except Exception as err:
            raise RegistryError(
                f"could not log/register a model for detector {detector_name!r} "
                f"at {settings.mlflow_tracking_uri!r}: {err}"
            ) from err
    ref = ModelRef(model_name=detector_name, version=str(version.version), run_id=run_id)
    log.info("registered %s version %s (run %s)", detector_name, ref.version, run_id)
    return RegisteredModel(ref=ref, model_uri=info.model_uri)


def log_lake_slice(mlflow: Any, lake_slice: LakeSlice) -> None:
    """The run's training data as an MLflow dataset: the lake table at one version (the source),
    the slice's content hash (the digest) and the slice itself (detector and range) as tags."""
    from mlflow.data.delta_dataset_source import DeltaDatasetSource
    from mlflow.data.meta_dataset import MetaDataset

    source = DeltaDatasetSource(path=lake_slice.table_uri, delta_table_version=lake_slice.version)
    # A reference without the data: MLflow types `profile` abstract but MetaDataset works without
    # one (MLflow constructs it the same way).
    dataset = MetaDataset(  # type: ignore[abstract]
        source=source, name=f"{lake_slice.detector}-training", digest=lake_slice.digest
    )
    mlflow.log_input(
        dataset,
        context="training",
        tags={
            "lake_slice": lake_slice.predicate,
            "lake_rows": str(lake_slice.rows.num_rows),
        },
    )


def _log_pyfunc(mlflow: Any, model: DetectorModel, serving: ServingParams) -> Any:
    """The model as a pyfunc "model from code" (model_package.py): no pickle, no code_paths."""
    from slo_pipeline.adapters.mlflow_pyfunc import signature_and_example

    signature, example = signature_and_example()
    with tempfile.TemporaryDirectory(prefix="slo-model-") as folder:
        return mlflow.pyfunc.log_model(
            name="model",
            python_model=str(CODE_SOURCE),
            artifacts=write_artifacts(model, serving, Path(folder)),
            signature=signature,
            input_example=example,
            pip_requirements=_pip_requirements(),
            metadata=model.metadata(),
        )


def champion_ref(settings: Settings, detector_name: str) -> ModelRef | None:
    """The version behind `@champion`, or None when the detector has none yet. Cheap: one lookup."""
    return alias_ref(settings, detector_name, CHAMPION)


def alias_ref(settings: Settings, detector_name: str, alias: str) -> ModelRef | None:
    from mlflow.exceptions import MlflowException

    try:
        version = _client(settings).get_model_version_by_alias(detector_name, alias)
    except MlflowException as err:
        if _is_not_found(err):
            return None
        raise RegistryError(
            f"could not look up {detector_name}@{alias} at {settings.mlflow_tracking_uri!r}: {err}"
        ) from err
    except Exception as err:
        raise RegistryError(
            f"could not look up {detector_name}@{alias} at {settings.mlflow_tracking_uri!r}: {err}"
        ) from err
    return ModelRef(model_name=detector_name, version=str(version.version), run_id=str(version.run_id))


def _is_not_found(err: Exception) -> bool:
    code = getattr(err, "error_code", "")
    return code in {"RESOURCE_DOES_NOT_EXIST", "NOT_FOUND", "INVALID_PARAMETER_VALUE"}


def load_model(settings: Settings, ref: ModelRef) -> DetectorModel:
    """Load a registered version this project wrote; anything else is refused (ModelRefused),
    without running any of its code (model_package.py says how)."""
    uri = f"models:/{ref.model_name}/{ref.version}"
    with _mlflow(settings) as mlflow, tempfile.TemporaryDirectory(prefix="slo-load-") as folder:
        try:
            local = mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=folder)
        except Exception as err:
            raise ModelLoadError(f"could not download model {uri!r}: {err}") from err
        try:
            return load_package(Path(local)).model
        except ModelRefused as err:
            raise ModelRefused(err.reason, f"{uri}: {err.detail}") from err
        except ModelLoadError as err:
            raise ModelLoadError(f"model {uri!r}: {err}") from err


def promote(
    settings: Settings,
    detector_name: str,
    version: str,
    *,
    expected_champion: str | None,
    tags: Mapping[str, str] | None = None,
    may_promote: Callable[[], bool] | None = None,
) -> ModelRef | None:
    """Compare-and-set `@champion` to `version` under the detector's promotion lock.

    Raises ChampionMoved when the champion is no longer `expected_champion` (None: no champion)
    or `may_promote` (the worker's lease check) says no. The old champion becomes `@previous`;
    `tags` go on the new champion only after the alias moved. Returns the old champion.
    """
    version = str(version)
    try:
        with promotion_lock(settings.database_url, settings.mlflow_tracking_uri, detector_name):
            old = champion_ref(settings, detector_name)
            found = old.version if old is not None else None
            if found != (str(expected_champion) if expected_champion is not None else None):
                raise ChampionMoved(
                    f"{detector_name}@champion is version {found or 'none'}, not "
                    f"{expected_champion or 'none'} as judged: version {version} was not promoted"
                )
            if may_promote is not None and not may_promote():
                raise ChampionMoved(
                    f"the job was taken over by another worker: version {version} was not promoted"
                )
            client = _client(settings)
            try:
                if old is not None and old.version != version:
                    client.set_registered_model_alias(detector_name, PREVIOUS, old.version)
                client.set_registered_model_alias(detector_name, CHAMPION, version)
            except Exception as err:
                raise RegistryError(f"could not promote {detector_name} version {version}: {err}") from err
    except PromotionLockError as err:
        raise RegistryError(str(err)) from err
    if tags:
        tag_version(settings, detector_name, version, tags)
    return old


def set_champion(settings: Settings, detector_name: str, version: str) -> ModelRef | None:
    """Move `@champion` to `version` whatever it is now (first models, tests); still locked."""
    current = champion_ref(settings, detector_name)
    return promote(
        settings, detector_name, version, expected_champion=current.version if current is not None else None
    )


_FILTER_SAFE = re.compile(r"^[A-Za-z0-9_.:-]{1,200}$")


def end_orphaned_runs(settings: Settings, detector_name: str, tag: str, value: str) -> list[str]:
    """Mark the detector's RUNNING runs tagged `tag=value` KILLED; their ids.

    For a worker that takes over a dead worker's job: the dead one's run can never end itself.
    `tag` and `value` go into an MLflow filter string, so only plain names are accepted.
    """
    if not (_FILTER_SAFE.match(tag) and _FILTER_SAFE.match(value)):
        raise RegistryError(f"refusing to search runs by tag {tag!r}={value!r}: not a plain name")
    name = f"slo-pipeline/{detector_name}"
    client = _client(settings)
    try:
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            return []
        runs = client.search_runs(
            [experiment.experiment_id],
            filter_string=f"tags.`{tag}` = '{value}' AND attributes.status = 'RUNNING'",
        )
        for run in runs:
            client.set_terminated(run.info.run_id, status="KILLED")
    except Exception as err:
        raise RegistryError(f"could not end the orphaned runs of {name!r}: {err}") from err
    return [run.info.run_id for run in runs]


def champion_from_run_tag(settings: Settings, detector_name: str, tag: str, value: str) -> ModelRef | None:
    """The current `@champion` when the run that made it carries `tag=value`, else None.

    For a worker taking over a dead worker's job: if the dead one already moved `@champion` (and
    died before recording it), training again would promote a second time.
    """
    ref = champion_ref(settings, detector_name)
    if ref is None or not ref.run_id:
        return None
    try:
        tags = _client(settings).get_run(ref.run_id).data.tags
    except Exception as err:
        raise RegistryError(f"could not read run {ref.run_id} of {detector_name}@champion: {err}") from err
    return ref if tags.get(tag) == value else None


def tag_version(settings: Settings, detector_name: str, version: str, tags: Mapping[str, str]) -> None:
    client = _client(settings)
    try:
        for key, value in tags.items():
            client.set_model_version_tag(detector_name, str(version), key, str(value))
    except Exception as err:
        raise RegistryError(f"could not tag {detector_name} version {version}: {err}") from err


def rollback(
    settings: Settings,
    detector_name: str,
    *,
    to_version: str,
    expected_champion: str | None,
    tags: Mapping[str, str] | None = None,
) -> ModelRef:
    """Make `to_version` (the version the operator confirmed) the champion, if the champion is
    still `expected_champion` (what the operator saw); ChampionMoved otherwise."""
    client = _client(settings)
    try:
        version = client.get_model_version(detector_name, str(to_version))
    except Exception as err:
        raise RegistryError(f"detector {detector_name!r} has no version {to_version!r}: {err}") from err
    promote(settings, detector_name, str(to_version), expected_champion=expected_champion, tags=tags)
    return ModelRef(model_name=detector_name, version=str(version.version), run_id=str(version.run_id))


def list_versions(settings: Settings, detector_name: str) -> list[dict[str, Any]]:
    """Versions newest first with their aliases and tags (for the CLI and the UI)."""
    # The name goes into an MLflow filter string: only a detector name (snake_case, no quotes)
    # may, so a CLI argument like "x' OR name LIKE '%" cannot widen the search.
    if not NAME_PATTERN.fullmatch(detector_name):
        raise RegistryError(f"{detector_name!r} is not a detector name ([a-z][a-z0-9_]*)")
    client = _client(settings)
    try:
        versions = client.search_model_versions(f"name='{detector_name}'")
        # search results carry no aliases; the registered model has the alias -> version map.
        aliases = client.get_registered_model(detector_name).aliases if versions else {}
    except Exception as err:
        raise RegistryError(f"could not list versions of {detector_name!r}: {err}") from err
    rows = [
        {
            "version": str(v.version),
            "run_id": v.run_id,
            "aliases": sorted(a for a, ver in aliases.items() if str(ver) == str(v.version)),
            "tags": dict(v.tags or {}),
            "created_at_ms": v.creation_timestamp,
        }
        for v in versions
    ]
    return sorted(rows, key=lambda row: int(row["version"]), reverse=True)


def annotate_project_run(
    settings: Settings, run_id: str, results: list[dict[str, Any]], *, failures: int
) -> None:
    """Record on an `mlflow run` project run what each detector's training registered."""
    client = _client(settings)
    try:
        for result in results:
            name = result["detector"]
            client.set_tag(run_id, f"slo_pipeline.{name}.version", str(result["version"]))
            client.set_tag(run_id, f"slo_pipeline.{name}.run_id", str(result["run_id"]))
            client.log_metric(run_id, f"{name}.promoted", 1.0 if result["promoted"] else 0.0)
        client.log_metric(run_id, "detectors_failed", float(failures))
    except Exception as err:
        raise RegistryError(f"could not annotate the project run {run_id}: {err}") from err
