"""The registry's errors, apart from the registry adapter: code that only reports them (the UI's
error boxes) need not import MLflow and scikit-learn to name them (seconds at start-up)."""

from __future__ import annotations

from slo_pipeline.core.redact import redact_credentials


class RegistryError(RuntimeError):
    """The MLflow tracking server / registry could not be reached or refused the request.

    The message never carries credentials: a `user:password@` in the tracking URI (which MLflow
    repeats in its own errors) is redacted however the message was built."""

    def __init__(self, message: str) -> None:
        super().__init__(redact_credentials(message))


class ChampionMoved(RegistryError):
    """Compare-and-set failed: `@champion` is not the version the caller judged against."""
