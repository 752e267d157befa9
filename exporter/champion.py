"""Which model each detector scores with: poll the `@champion` alias, hot-swap on a new version.

The exporter asks a `ModelSource` two things: which version is champion now (cheap, every
cycle) and, only when that changes, to load it. The default source is the MLflow registry
(`slo_pipeline.adapters.registry`); unit tests pass an in-memory source instead, which is dependency
injection of the registry's two calls, not a stand-in for Prometheus or MLflow behaviour.

A version that fails to load is never swapped in: the old model keeps serving, and the broken
version is only retried after `retry_seconds` so a bad artifact does not cost a download per cycle.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from slo_pipeline.adapters.model_package import ModelRefused
from slo_pipeline.adapters.registry import ModelRef
from slo_pipeline.core.model import DetectorModel
from slo_pipeline.settings import Settings

DEFAULT_LOAD_RETRY_SECONDS = 300.0


class ModelSource(Protocol):
    def champion_ref(self, detector_name: str) -> ModelRef | None:
        """The champion version, None when there is none; raises when the registry is unreachable."""
        ...

    def load_model(self, ref: ModelRef) -> DetectorModel:
        """The model behind `ref`; raises when it cannot be loaded or served."""
        ...


class RegistryModelSource:
    """The MLflow registry named by the settings (`models:/<detector>@champion`)."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    def champion_ref(self, detector_name: str) -> ModelRef | None:
        from slo_pipeline.adapters import registry

        return registry.champion_ref(self._settings, detector_name)

    def load_model(self, ref: ModelRef) -> DetectorModel:
        from slo_pipeline.adapters import registry

        return registry.load_model(self._settings, ref)


@dataclass(frozen=True)
class ServingModel:
    ref: ModelRef
    model: DetectorModel


class RefreshOutcome(enum.Enum):
    UNCHANGED = "unchanged"  # champion is the version already serving
    SWAPPED = "swapped"  # a new champion was loaded and now serves
    NO_CHAMPION = "no_champion"  # the registry has no champion for this detector
    REGISTRY_ERROR = "registry_error"  # the alias lookup failed; whatever served keeps serving
    REGISTRY_SKIPPED = "registry_skipped"  # not asked: the registry failed earlier this cycle
    LOAD_ERROR = "load_error"  # the new champion failed to load; whatever served keeps serving
    LOAD_DEFERRED = "load_deferred"  # the new champion failed recently; not retried yet


@dataclass(frozen=True)
class RefreshResult:
    outcome: RefreshOutcome
    ref: ModelRef | None = None  # the champion the registry named, when it answered
    error: str | None = None
    refusal: str | None = None  # LOAD_ERROR because the version is not ours (ModelRefused.reason)


class ChampionTracker:
    """Holds one detector's serving model; `refresh()` once per cycle, read `serving` to score."""

    def __init__(
        self,
        detector_name: str,
        source: ModelSource,
        *,
        retry_seconds: float = DEFAULT_LOAD_RETRY_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.detector_name = detector_name
        self._source = source
        self._retry_seconds = retry_seconds
        self._clock = clock
        # One attribute holds ref and model together, so a reader never sees a new ref with an
        # old model: replacing it is the atomic swap.
        self.serving: ServingModel | None = None
        self._failed_ref: ModelRef | None = None
        self._retry_at = 0.0

    def refresh(self, registry_down: str | None = None) -> RefreshResult:
        """`registry_down`: why the registry is known to be failing right now (an earlier lookup
        of this cycle failed); the lookup is then skipped and whatever serves keeps serving."""
        if registry_down is not None:
            return RefreshResult(RefreshOutcome.REGISTRY_SKIPPED, error=registry_down)
        try:
            ref = self._source.champion_ref(self.detector_name)
        except Exception as err:  # any registry failure: keep serving what we have
            return RefreshResult(RefreshOutcome.REGISTRY_ERROR, error=f"{type(err).__name__}: {err}")
        if ref is None:
            self.serving = None
            return RefreshResult(RefreshOutcome.NO_CHAMPION)
        if self.serving is not None and self.serving.ref == ref:
            return RefreshResult(RefreshOutcome.UNCHANGED, ref)
        if ref == self._failed_ref and self._clock() < self._retry_at:
            return RefreshResult(RefreshOutcome.LOAD_DEFERRED, ref)
        try:
            model = self._source.load_model(ref)
        except Exception as err:  # a broken artifact must never take down the serving model
            self._failed_ref = ref
            self._retry_at = self._clock() + self._retry_seconds
            refusal = err.reason if isinstance(err, ModelRefused) else None
            return RefreshResult(
                RefreshOutcome.LOAD_ERROR, ref, error=f"{type(err).__name__}: {err}", refusal=refusal
            )
        self.serving = ServingModel(ref=ref, model=model)
        self._failed_ref = None
        return RefreshResult(RefreshOutcome.SWAPPED, ref)
