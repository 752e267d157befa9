"""The one settings object: built once from the environment and the pipeline YAML, then passed down.

Endpoints and secrets come from environment variables (twelve-factor, so the same image runs in
compose, Kubernetes and the demo); what a detector *is* comes from one YAML file kept in git
(`SLO_PIPELINE_CONFIG`). Nothing here opens a connection: it only validates values.
"""

from __future__ import annotations

import ipaddress
import json
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]*$")
# The same shape SLO specs allow (slo/spec.py); the name is used as a PromQL label value.
SLO_REFERENCE_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def state_dir() -> Path:
    """Local state (embedded MLflow store, data lake, metrics folder): `.data` in the working directory."""
    return Path.cwd() / ".data"


class ConfigError(ValueError):
    """The configuration cannot be used; the message names the file and the field."""


class FeatureWindows(BaseModel):
    """Trailing windows, in samples of the detector's step, that the features look back over."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    short: Annotated[int, Field(ge=2)] = 5
    medium: Annotated[int, Field(ge=3)] = 30
    long: Annotated[int, Field(ge=4)] = 180
    # A sustained moderate anomaly accumulates evidence, a single noisy sample is diluted.
    evidence: Annotated[int, Field(ge=1, le=1000)] = Field(
        default=3,
        description="samples over which per-sample evidence (-log p) is averaged and re-calibrated; 1 = off",
    )
    # Off by default: on NAB AWS it did not help (docs/detection.md), and it needs a season of
    # history in every scoring query.
    seasonal: Annotated[int, Field(ge=0)] = Field(
        default=0,
        description="samples per season (1440 = a day at 60 s) for the 'outside the same time one "
        "season earlier' feature; 0 = off",
    )

    # Set by training when `seasonality: auto` finds a daily or weekly cycle (training.py); may
    # also be given. Every feature then measures the value against the same time one season
    # earlier instead of against the recent level.
    seasonal_baseline: Annotated[int, Field(ge=0)] = Field(
        default=0,
        description="samples per season whose same-time value (median of +-short samples around it) "
        "is subtracted before every feature; 0 = off (training sets it under `seasonality: auto`)",
    )

    # Level shifts and distribution changes (issue 14): the medium window's spread against the
    # long one's (both directions, so a signal that stops varying counts) and its spike density.
    # Off by default for live detectors: on the simulated service's mostly-zero 5xx ratio they
    # cut the lead over the page from +9 to +2 min (docs/detection.md); on for CSV backtests.
    shift: bool = Field(
        default=False,
        description="add the distribution-shift features (medium-vs-long spread ratio, spike density: "
        "a flat line, a noisier or quieter signal, denser spikes); on by default for CSV backtests",
    )

    @model_validator(mode="after")
    def _ordered(self) -> FeatureWindows:
        if not self.short < self.medium < self.long:
            raise ValueError("feature windows must satisfy short < medium < long")
        if self.seasonal and self.seasonal <= self.short:
            raise ValueError("the seasonal lag must be longer than the short window (or 0 = off)")
        if self.seasonal_baseline and self.seasonal_baseline <= 2 * self.short:
            raise ValueError("the seasonal baseline must be longer than twice the short window (or 0 = off)")
        return self

    @property
    def baseline_rows(self) -> int:
        """Extra trailing samples the seasonal baseline reaches back (0 when off)."""
        return self.seasonal_baseline + 2 * self.short + 1 if self.seasonal_baseline else 0


class SignalConfig(BaseModel):
    """One SLI of a multivariate detector: a name (used in feature names) and its PromQL."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="snake_case; names this SLI in features and explanations")
    query: str = Field(description="PromQL; its series are joined to the other signals' by label set")

    @field_validator("name")
    @classmethod
    def _snake_case(cls, value: str) -> str:
        if not NAME_PATTERN.match(value):
            raise ValueError(f"signal name {value!r} must be snake_case ([a-z][a-z0-9_]*)")
        return value


class DetectorConfig(BaseModel):
    """One detector: the PromQL it watches, how it is sampled and how often it may cry wolf."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="snake_case; also the MLflow registered-model name")
    query: str | None = Field(
        default=None,
        description="PromQL; every series it returns is scored on its own (or use `signals`)",
    )
    # Several SLIs of one service scored as one vector: a latency rise with a flat error ratio and
    # the same rise with errors climbing are different points for the forest, and the
    # explanation names the SLI that moved.
    signals: list[SignalConfig] = Field(
        default_factory=list,
        description="instead of `query`: 2+ named PromQL queries whose series are joined by label "
        "set (minus __name__) and scored together; one anomaly_score per joined series",
    )
    description: str = ""
    step_seconds: Annotated[int, Field(ge=1, le=3600)] = 60
    training_window_seconds: Annotated[int, Field(ge=600)] = 7 * 24 * 3600
    false_alarms_per_week: Annotated[float, Field(gt=0, le=10_000)] = 1.0
    windows: FeatureWindows = FeatureWindows()
    slo: str | None = Field(default=None, description="name of the SLO this detector protects")
    n_estimators: Annotated[int, Field(ge=10, le=2000)] = 200
    min_training_samples: Annotated[int, Field(ge=50)] = 500
    # Off by default for live detectors: a seasonal baseline makes the exporter fetch a season of
    # history per series. CSV backtests default to auto (docs/detection.md, "Seasonality").
    seasonality: Literal["off", "auto"] = Field(
        default="off",
        description="auto: at each training, use a daily or weekly seasonal baseline when it at least "
        "halves the spread of the series' deviations (and the training window holds 3 seasons)",
    )
    # On by default: the forest's score saturates outside its training range (an outage 100x
    # larger than anything seen scores like the largest training point); the z-score does not.
    combine_robust_z: bool = Field(
        default=True,
        description="join a robust z-score to the forest's probability (Bonferroni); see docs/detection.md",
    )

    @field_validator("name")
    @classmethod
    def _snake_case(cls, value: str) -> str:
        if not NAME_PATTERN.match(value):
            raise ValueError(f"detector name {value!r} must be snake_case ([a-z][a-z0-9_]*)")
        return value

    @field_validator("slo")
    @classmethod
    def _slo_name(cls, value: str | None) -> str | None:
        if value is not None and not SLO_REFERENCE_PATTERN.match(value):
            raise ValueError(f"slo {value!r} is not an SLO name ([A-Za-z0-9][A-Za-z0-9_.-]*)")
        return value

    @model_validator(mode="after")
    def _one_input(self) -> DetectorConfig:
        if (self.query is None) == (not self.signals):
            raise ValueError(f"detector {self.name!r}: give exactly one of `query` or `signals`")
        if self.signals:
            names = [s.name for s in self.signals]
            if len(names) < 2:
                raise ValueError(f"detector {self.name!r}: `signals` needs at least two; use `query` for one")
            if len(set(names)) != len(names):
                raise ValueError(f"detector {self.name!r}: signal names must be unique, got {names}")
        return self

    @property
    def signal_names(self) -> tuple[str, ...]:
        """SLI names of a multivariate detector; () for a single-query one."""
        return tuple(s.name for s in self.signals)

    @property
    def queries(self) -> tuple[tuple[str, str], ...]:
        """`(signal name, PromQL)` pairs to fetch; one unnamed pair for a single-query detector."""
        if self.signals:
            return tuple((s.name, s.query) for s in self.signals)
        assert self.query is not None  # _one_input guarantees it
        return (("", self.query),)

    @property
    def query_text(self) -> str:
        """The PromQL for messages and run tags: the query, or `name: query` per signal."""
        return "; ".join(f"{name}: {query}" if name else query for name, query in self.queries)

    @property
    def scoring_window_seconds(self) -> int:
        """How much history one scoring cycle needs so the longest feature window is full for
        every sample the evidence window averages over (= features.history_rows_needed)."""
        w = self.windows
        rows = max(w.long, w.seasonal + w.short) + w.evidence + w.short + w.baseline_rows
        return rows * self.step_seconds

    @property
    def training_rows_needed(self) -> int:
        """Samples one training needs whatever the step: the features' warm-up (every window full,
        as features.history_rows_needed counts it) plus `min_training_samples` usable rows."""
        w = self.windows
        return max(w.long, w.seasonal + w.short) + w.short + 1 + w.baseline_rows + self.min_training_samples

    @property
    def effective_training_window_seconds(self) -> int:
        """The training window actually fetched: `training_window_seconds`, stretched at coarse steps
        to hold `training_rows_needed` samples. Windows are counted in samples, training windows in
        time; at a 1-hour step 7 days hold 168 samples, fewer than the long window's warm-up, so a
        detector would never train. At 60 s (or 5 min) steps nothing changes."""
        return max(self.training_window_seconds, self.training_rows_needed * self.step_seconds)

    @property
    def tail_probability_threshold(self) -> float:
        """Per-sample tail probability that yields `false_alarms_per_week` on normal data."""
        samples_per_week = 7 * 24 * 3600 / self.step_seconds
        return min(0.5, self.false_alarms_per_week / samples_per_week)


class PipelineConfig(BaseModel):
    """The contents of the YAML file named by `SLO_PIPELINE_CONFIG`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    detectors: list[DetectorConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_names(self) -> PipelineConfig:
        names = [d.name for d in self.detectors]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"detector names must be unique, repeated: {duplicates}")
        return self

    def detector(self, name: str) -> DetectorConfig:
        for detector in self.detectors:
            if detector.name == name:
                return detector
        known = ", ".join(d.name for d in self.detectors) or "none"
        raise ConfigError(f"no detector named {name!r} (configured: {known})")


def load_pipeline_config(path: Path) -> PipelineConfig:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as err:
        raise ConfigError(f"could not read pipeline config {str(path)!r}: {err}") from err
    except yaml.YAMLError as err:
        raise ConfigError(f"pipeline config {str(path)!r} is not valid YAML: {err}") from err
    try:
        return PipelineConfig.model_validate(raw)
    except ValueError as err:
        raise ConfigError(f"pipeline config {str(path)!r} is invalid: {err}") from err


# Headers the connection settings own: a PROMETHEUS_HEADERS entry may not override them silently.
_RESERVED_HEADERS = frozenset({"authorization", "accept-encoding", "host", "content-length"})


class PrometheusConnection(BaseModel):
    """How every reader (exporter, training, backtest, incident drivers, SLO evidence, UI, rules
    sync) reaches the Prometheus-API backend: one group, built by `Settings.prometheus`, turned
    into a `requests.Session` by `prometheus_session` (slo_pipeline/adapters/prometheus.py).

    Secrets are `SecretStr` (repr and str print `**********`); `*_file` values are read when a
    session is built, so a rotated mounted token is picked up without a restart.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str
    timeout_seconds: float = 30.0
    username: str = ""
    password: SecretStr | None = None
    password_file: Path | None = None
    bearer_token: SecretStr | None = None
    bearer_token_file: Path | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    tls_insecure_skip_verify: bool = False
    max_response_bytes: int = 1 << 30

    @model_validator(mode="after")
    def _consistent(self) -> PrometheusConnection:
        if self.password is not None and self.password_file is not None:
            raise ValueError("set PROMETHEUS_PASSWORD or PROMETHEUS_PASSWORD_FILE, not both")
        if self.bearer_token is not None and self.bearer_token_file is not None:
            raise ValueError("set PROMETHEUS_BEARER_TOKEN or PROMETHEUS_BEARER_TOKEN_FILE, not both")
        has_password = self.password is not None or self.password_file is not None
        if has_password and not self.username:
            raise ValueError("PROMETHEUS_PASSWORD(_FILE) needs PROMETHEUS_USERNAME")
        has_token = self.bearer_token is not None or self.bearer_token_file is not None
        if self.username and has_token:
            raise ValueError("use basic auth (PROMETHEUS_USERNAME) or a bearer token, not both")
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("PROMETHEUS_CERT_FILE and PROMETHEUS_KEY_FILE go together")
        if self.ca_file is not None and self.tls_insecure_skip_verify:
            raise ValueError(
                "PROMETHEUS_CA_FILE and PROMETHEUS_TLS_INSECURE_SKIP_VERIFY contradict each other"
            )
        reserved = sorted(name for name in self.headers if name.lower() in _RESERVED_HEADERS)
        if reserved:
            raise ValueError(
                f"PROMETHEUS_HEADERS may not set {reserved}: use PROMETHEUS_BEARER_TOKEN or "
                "PROMETHEUS_USERNAME/PASSWORD for credentials"
            )
        return self

    def with_url(self, url: str) -> PrometheusConnection:
        """The same credentials against another URL (e.g. `backtest --prometheus-url`)."""
        return self.model_copy(update={"url": url})


class Settings(BaseSettings):
    """Every knob of every service. Field docs double as the configuration reference."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    prometheus_url: str = Field(
        default="http://127.0.0.1:9090",
        validation_alias=AliasChoices("PROMETHEUS_URL", "prometheus_url"),
        description="Prometheus-API endpoint queried by the exporter, trainer and worker",
    )
    prometheus_username: str = Field(
        default="",
        validation_alias=AliasChoices("PROMETHEUS_USERNAME", "prometheus_username"),
        description="basic-auth user for the Prometheus-API backend (with PROMETHEUS_PASSWORD[_FILE])",
    )
    prometheus_password: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("PROMETHEUS_PASSWORD", "prometheus_password"),
        description="basic-auth password; never logged",
    )
    prometheus_password_file: Path | None = Field(
        default=None,
        validation_alias=AliasChoices("PROMETHEUS_PASSWORD_FILE", "prometheus_password_file"),
        description="file holding the basic-auth password (a mounted secret), read at each connection",
    )
    prometheus_bearer_token: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("PROMETHEUS_BEARER_TOKEN", "prometheus_bearer_token"),
        description="sent as `Authorization: Bearer ...`; never logged",
    )
    prometheus_bearer_token_file: Path | None = Field(
        default=None,
        validation_alias=AliasChoices("PROMETHEUS_BEARER_TOKEN_FILE", "prometheus_bearer_token_file"),
        description="file holding the bearer token, read at each connection (rotated tokens work)",
    )
    prometheus_headers: Annotated[dict[str, str], NoDecode] = Field(
        default_factory=dict,
        validation_alias=AliasChoices("PROMETHEUS_HEADERS", "prometheus_headers"),
        description='JSON object of extra request headers, e.g. `{"X-Scope-OrgID": "team-a"}` for a '
        "Mimir/Cortex tenant",
    )
    prometheus_ca_file: Path | None = Field(
        default=None,
        validation_alias=AliasChoices("PROMETHEUS_CA_FILE", "prometheus_ca_file"),
        description="PEM bundle of the CAs that may sign the backend's certificate",
    )
    prometheus_cert_file: Path | None = Field(
        default=None,
        validation_alias=AliasChoices("PROMETHEUS_CERT_FILE", "prometheus_cert_file"),
        description="client certificate (PEM) for mutual TLS, with PROMETHEUS_KEY_FILE",
    )
    prometheus_key_file: Path | None = Field(
        default=None,
        validation_alias=AliasChoices("PROMETHEUS_KEY_FILE", "prometheus_key_file"),
        description="private key (PEM) of the client certificate",
    )
    prometheus_tls_insecure_skip_verify: bool = Field(
        default=False,
        validation_alias=AliasChoices(
            "PROMETHEUS_TLS_INSECURE_SKIP_VERIFY", "prometheus_tls_insecure_skip_verify"
        ),
        description="do not verify the backend's certificate (testing only)",
    )
    database_url: str = Field(
        default="postgresql://127.0.0.1:5432/slo_pipeline",
        validation_alias=AliasChoices("DATABASE_URL", "database_url"),
        description="libpq URL of the PostgreSQL database holding incidents and jobs",
    )
    mlflow_tracking_uri: str = Field(
        default_factory=lambda: f"sqlite:///{state_dir() / 'mlflow' / 'mlflow.db'}",
        validation_alias=AliasChoices("MLFLOW_TRACKING_URI", "mlflow_tracking_uri"),
        description="MLflow tracking/registry URI (MLflow's own variable)",
    )
    mlflow_artifact_root: str = Field(
        default_factory=lambda: str(state_dir() / "mlflow" / "artifacts"),
        validation_alias=AliasChoices("SLO_PIPELINE_MLFLOW_ARTIFACT_ROOT", "mlflow_artifact_root"),
        description="artifact location for experiments this project creates",
    )
    webhook_token: str = Field(
        default="",
        validation_alias=AliasChoices("WEBHOOK_TOKEN", "webhook_token"),
        description="Bearer token Alertmanager must send; empty refuses every request",
    )
    config_path: Path = Field(
        default=Path("slo-pipeline.yml"),
        validation_alias=AliasChoices("SLO_PIPELINE_CONFIG", "config_path"),
        description="YAML file that defines the detectors (relative paths: from the working directory)",
    )
    data_lake: str = Field(
        default_factory=lambda: str(state_dir() / "lake"),
        validation_alias=AliasChoices("SLO_PIPELINE_DATA_LAKE", "data_lake"),
        description="root of the data lake (a folder, or s3://bucket/prefix with credentials and endpoint "
        "from the AWS_* environment variables): a Delta Lake table `samples` partitioned by detector and "
        "day (docs/lake.md)",
    )
    lake_retention_days: float = Field(
        default=400.0,
        gt=0,
        validation_alias=AliasChoices("SLO_PIPELINE_LAKE_RETENTION_DAYS", "lake_retention_days"),
        description="days of history the lake keeps; older day partitions are dropped by the sync loop's "
        "daily maintenance and `slo-pipeline lake maintain` (400: a year-on-year comparison fits)",
    )
    lake_vacuum_retention_hours: int = Field(
        default=168,
        ge=0,
        validation_alias=AliasChoices(
            "SLO_PIPELINE_LAKE_VACUUM_RETENTION_HOURS", "lake_vacuum_retention_hours"
        ),
        description="files dropped or compacted away stay this long before maintenance deletes them, so "
        "readers (and time travel) that still use them can finish",
    )
    lake_sync_interval_seconds: float = Field(
        default=300.0,
        gt=0,
        validation_alias=AliasChoices("SLO_PIPELINE_LAKE_SYNC_INTERVAL", "lake_sync_interval_seconds"),
        description="seconds between two passes of `slo-pipeline lake sync`",
    )
    lake_sync_overlap_seconds: float = Field(
        default=3600.0,
        ge=0,
        validation_alias=AliasChoices("SLO_PIPELINE_LAKE_SYNC_OVERLAP", "lake_sync_overlap_seconds"),
        description="each sync pass re-reads this much before the newest row in the lake, so late "
        "samples and short gaps are filled",
    )
    lake_initial_sync_seconds: float = Field(
        default=15 * 86400.0,
        gt=0,
        validation_alias=AliasChoices("SLO_PIPELINE_LAKE_INITIAL_SYNC", "lake_initial_sync_seconds"),
        description="how far back the sync loop reaches for a detector the lake has no rows of yet, and "
        "at most on any pass (15 days: Prometheus' default retention); older ranges are backfilled with "
        "`slo-pipeline lake sync --detector NAME --start T --end T`",
    )
    exporter_interval_seconds: float = Field(
        default=60.0,
        gt=0,
        validation_alias=AliasChoices("SLO_PIPELINE_EXPORTER_INTERVAL", "exporter_interval_seconds"),
        description="seconds between two scoring cycles",
    )
    query_timeout_seconds: float = Field(
        default=30.0,
        gt=0,
        validation_alias=AliasChoices("SLO_PIPELINE_QUERY_TIMEOUT", "query_timeout_seconds"),
        description="deadline of one Prometheus API request: its whole answer must have arrived by then "
        "(a backend that drips its answer is cut off too, not only one that sends nothing)",
    )
    prometheus_max_response_bytes: int = Field(
        default=1 << 30,
        gt=0,
        validation_alias=AliasChoices("PROMETHEUS_MAX_RESPONSE_BYTES", "prometheus_max_response_bytes"),
        description="largest answer body read from the Prometheus API; a longer one fails that query "
        "(the exporter counts it under reason `oversized`) instead of taking the reader's memory. "
        "10k series x 182 steps is ~41 MB",
    )
    retrain_cooldown_seconds: float = Field(
        default=3600.0,
        ge=0,
        validation_alias=AliasChoices("SLO_PIPELINE_RETRAIN_COOLDOWN", "retrain_cooldown_seconds"),
        description="minimum time between two retrain jobs of the same detector",
    )
    worker_lease_seconds: float = Field(
        default=900.0,
        gt=0,
        validation_alias=AliasChoices("SLO_PIPELINE_WORKER_LEASE", "worker_lease_seconds"),
        description="a running job whose lease expired is taken over by another worker",
    )
    worker_poll_seconds: float = Field(
        default=5.0,
        gt=0,
        validation_alias=AliasChoices("SLO_PIPELINE_WORKER_POLL", "worker_poll_seconds"),
        description="how often an idle worker looks for queued jobs",
    )
    worker_retry_backoff_seconds: float = Field(
        default=30.0,
        gt=0,
        validation_alias=AliasChoices("SLO_PIPELINE_WORKER_RETRY_BACKOFF", "worker_retry_backoff_seconds"),
        description="a retrain job that failed because MLflow, Prometheus or PostgreSQL could not be reached "
        "goes back to the queue and is retried after this long, doubled after each such failure",
    )
    worker_retry_backoff_max_seconds: float = Field(
        default=900.0,
        gt=0,
        validation_alias=AliasChoices(
            "SLO_PIPELINE_WORKER_RETRY_BACKOFF_MAX", "worker_retry_backoff_max_seconds"
        ),
        description="the longest wait between two retries of a job that failed on an outage",
    )
    worker_outage_retries: int = Field(
        default=100,
        ge=0,
        validation_alias=AliasChoices("SLO_PIPELINE_WORKER_OUTAGE_RETRIES", "worker_outage_retries"),
        description="a retrain job that keeps failing on an unreachable service is failed for good after "
        "this many retries (about a day at the default back-off): a wrong URL or credentials look like an "
        "outage, and a job that never ends blocks its detector's next retrain",
    )
    max_body_bytes: int = Field(
        default=1024 * 1024,
        gt=0,
        validation_alias=AliasChoices("SLO_PIPELINE_MAX_BODY_BYTES", "max_body_bytes"),
        description="largest webhook request body accepted (413 above)",
    )
    webhook_workers: int = Field(
        default=2,
        ge=1,
        validation_alias=AliasChoices("SLO_PIPELINE_WEBHOOK_WORKERS", "webhook_workers"),
        description="gunicorn worker processes of the webhook",
    )
    webhook_threads: int = Field(
        default=8,
        ge=1,
        validation_alias=AliasChoices("SLO_PIPELINE_WEBHOOK_THREADS", "webhook_threads"),
        description="request threads per webhook worker (gunicorn gthread): a slow client holds "
        "at most one of them",
    )
    webhook_client_timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        validation_alias=AliasChoices(
            "SLO_PIPELINE_WEBHOOK_CLIENT_TIMEOUT", "webhook_client_timeout_seconds"
        ),
        description="a webhook client that sends or reads nothing for this long is disconnected",
    )
    webhook_statement_timeout_seconds: float = Field(
        default=5.0,
        gt=0,
        validation_alias=AliasChoices(
            "SLO_PIPELINE_WEBHOOK_STATEMENT_TIMEOUT", "webhook_statement_timeout_seconds"
        ),
        description="PostgreSQL statement_timeout and lock_timeout of the webhook's connections: a "
        "stuck or locked database gives a prompt 503 (Alertmanager retries) instead of a hang",
    )
    webhook_max_alerts: int = Field(
        default=1000,
        ge=1,
        validation_alias=AliasChoices("SLO_PIPELINE_WEBHOOK_MAX_ALERTS", "webhook_max_alerts"),
        description="most alerts one notification may carry; above it the webhook answers 413 and "
        "keeps the raw delivery (set Alertmanager's `max_alerts` to the same value)",
    )
    alert_delivery_retention_days: float = Field(
        default=30.0,
        gt=0,
        validation_alias=AliasChoices(
            "SLO_PIPELINE_ALERT_DELIVERY_RETENTION_DAYS", "alert_delivery_retention_days"
        ),
        description="raw Alertmanager deliveries older than this are deleted by the worker, except "
        "the first and last delivery of every incident (its evidence)",
    )
    webhook_metrics_dir: str = Field(
        default_factory=lambda: str(state_dir() / "webhook-metrics"),
        validation_alias=AliasChoices("SLO_PIPELINE_WEBHOOK_METRICS_DIR", "webhook_metrics_dir"),
        description="the webhook's prometheus_client multiprocess folder; its *.db files are removed "
        "at start and the webhook sets PROMETHEUS_MULTIPROC_DIR to it for its gunicorn workers only",
    )
    slo_sync_interval_seconds: float = Field(
        default=10.0,
        gt=0,
        validation_alias=AliasChoices("SLO_PIPELINE_SLO_SYNC_INTERVAL", "slo_sync_interval_seconds"),
        description="how often `slo-pipeline rules sync` looks for changed SLOs in the database "
        "(one small query when nothing changed); an SLO edit reaches Prometheus within about this "
        "long, and Prometheus is reloaded at most once per interval",
    )
    slo_history_interval_seconds: float = Field(
        default=3600.0,
        ge=60,
        # The shipped SLOHistoryStale alert fires when the newest snapshot is over 3 h old.
        le=7200,
        validation_alias=AliasChoices("SLO_PIPELINE_SLO_HISTORY_INTERVAL", "slo_history_interval_seconds"),
        description="the worker snapshots every SLO's compliance (SLI, budget, burn per window pair, pages, "
        "tickets, breach periods) from Prometheus into PostgreSQL at each multiple of this many seconds, "
        "so `slo report` and validation outlive Prometheus' retention; a divisor of a day keeps months "
        "exact; at most 7200 (SLOHistoryStale fires at 3 h)",
    )
    ui_auth: Literal["password", "proxy", "oidc"] = Field(
        default="password",
        validation_alias=AliasChoices("SLO_PIPELINE_UI_AUTH", "ui_auth"),
        description="how operators sign in to the UI: `password` (local users, `slo-pipeline ui user "
        "add`), `proxy` (a user-name header from an authenticating proxy at "
        "SLO_PIPELINE_UI_TRUSTED_PROXIES) or `oidc` (Streamlit's st.login, `[auth]` in secrets.toml)",
    )
    ui_proxy_user_header: str = Field(
        default="X-Forwarded-User",
        min_length=1,
        validation_alias=AliasChoices("SLO_PIPELINE_UI_PROXY_USER_HEADER", "ui_proxy_user_header"),
        description="header holding the signed-in user's name when SLO_PIPELINE_UI_AUTH=proxy "
        "(oauth2-proxy: X-Forwarded-User or X-Forwarded-Email)",
    )
    ui_trusted_proxies: str = Field(
        default="",
        validation_alias=AliasChoices("SLO_PIPELINE_UI_TRUSTED_PROXIES", "ui_trusted_proxies"),
        description="comma-separated addresses or networks of the authenticating proxy; the user "
        "header is believed only from these TCP peers (required for SLO_PIPELINE_UI_AUTH=proxy)",
    )
    ui_oidc_provider: str = Field(
        default="",
        validation_alias=AliasChoices("SLO_PIPELINE_UI_OIDC_PROVIDER", "ui_oidc_provider"),
        description="with SLO_PIPELINE_UI_AUTH=oidc: the provider name of an `[auth.NAME]` section "
        "in secrets.toml; empty uses `[auth]` itself",
    )
    ui_default_role: Literal["viewer", "none"] = Field(
        default="viewer",
        validation_alias=AliasChoices("SLO_PIPELINE_UI_DEFAULT_ROLE", "ui_default_role"),
        description="role of a proxy or OIDC user who has no `ui_users` row; `none` refuses them "
        "(editors are always listed: `slo-pipeline ui user add NAME --role editor --no-password`)",
    )
    anomaly_alert_for_seconds: float = Field(
        default=120.0,
        ge=0,
        validation_alias=AliasChoices("SLO_PIPELINE_ANOMALY_ALERT_FOR", "anomaly_alert_for_seconds"),
        description="`for:` of the deployed AnomalyDetected rule, in seconds; training and validation "
        "simulate it (the default equals the shipped rules/anomaly.rules.yml)",
    )
    anomaly_alert_keep_firing_for_seconds: float = Field(
        default=900.0,
        ge=0,
        validation_alias=AliasChoices(
            "SLO_PIPELINE_ANOMALY_ALERT_KEEP_FIRING_FOR", "anomaly_alert_keep_firing_for_seconds"
        ),
        description="`keep_firing_for:` of the deployed AnomalyDetected rule, in seconds",
    )
    rule_evaluation_interval_seconds: float = Field(
        default=15.0,
        gt=0,
        validation_alias=AliasChoices(
            "SLO_PIPELINE_RULE_EVALUATION_INTERVAL", "rule_evaluation_interval_seconds"
        ),
        description="Prometheus' rule `evaluation_interval`, in seconds (the shipped config's: 15)",
    )
    worker_metrics_listen: str = Field(
        default="127.0.0.1:9111",
        validation_alias=AliasChoices("SLO_PIPELINE_WORKER_METRICS_LISTEN", "worker_metrics_listen"),
        description="HOST:PORT where `slo-pipeline worker` serves / and /metrics (the retrain queue "
        "read from PostgreSQL at each scrape); empty to serve nothing",
    )
    slo_sync_metrics_listen: str = Field(
        default="127.0.0.1:9112",
        validation_alias=AliasChoices("SLO_PIPELINE_SLO_SYNC_METRICS_LISTEN", "slo_sync_metrics_listen"),
        description="HOST:PORT where `slo-pipeline rules sync` serves / and /metrics; empty to serve nothing",
    )
    lake_sync_metrics_listen: str = Field(
        default="127.0.0.1:9113",
        validation_alias=AliasChoices("SLO_PIPELINE_LAKE_SYNC_METRICS_LISTEN", "lake_sync_metrics_listen"),
        description="HOST:PORT where the `slo-pipeline lake sync` loop serves / and /metrics; empty to serve "
        "nothing",
    )
    exporter_shards: int = Field(
        default=1,
        ge=1,
        le=1000,
        validation_alias=AliasChoices("SLO_PIPELINE_SHARDS", "exporter_shards"),
        description="number of exporter replicas that split the detectors between them "
        "(docs/scaling.md); 1 = one exporter scores everything",
    )
    exporter_shard_index: int | None = Field(
        default=None,
        ge=0,
        validation_alias=AliasChoices("SLO_PIPELINE_SHARD_INDEX", "exporter_shard_index"),
        description="this replica's shard, 0..SLO_PIPELINE_SHARDS-1; unset: the ordinal at the end "
        "of the host name (a Kubernetes StatefulSet pod `slo-exporter-2` is shard 2)",
    )
    exporter_scoring_urls: dict[str, str] = Field(
        default_factory=dict,
        validation_alias=AliasChoices("SLO_PIPELINE_EXPORTER_SCORING_URLS", "exporter_scoring_urls"),
        description="JSON detector -> base URL of an `mlflow models serve` of that detector's model; "
        "the exporter then scores it through POST /invocations instead of in-process",
    )
    pipeline: PipelineConfig = Field(default_factory=PipelineConfig, exclude=True)

    @field_validator("prometheus_headers", mode="before")
    @classmethod
    def _headers_json(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                value = json.loads(value) if value.strip() else {}
            except ValueError as err:
                raise ValueError(f"PROMETHEUS_HEADERS is not JSON: {err}") from None
            if not isinstance(value, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in value.items()
            ):
                raise ValueError(
                    'PROMETHEUS_HEADERS must be a JSON object of strings, e.g. {"X-Scope-OrgID": "a"}'
                )
        return value

    @model_validator(mode="after")
    def _prometheus_connection_valid(self) -> Settings:
        self.prometheus  # noqa: B018 - builds the group once so a contradiction fails at start
        if self.exporter_shard_index is not None and self.exporter_shard_index >= self.exporter_shards:
            raise ValueError(
                f"SLO_PIPELINE_SHARD_INDEX={self.exporter_shard_index} is not below "
                f"SLO_PIPELINE_SHARDS={self.exporter_shards}"
            )
        return self

    @property
    def prometheus(self) -> PrometheusConnection:
        """The connection settings every Prometheus-API reader uses."""
        return PrometheusConnection(
            url=self.prometheus_url,
            timeout_seconds=self.query_timeout_seconds,
            username=self.prometheus_username,
            password=self.prometheus_password,
            password_file=self.prometheus_password_file,
            bearer_token=self.prometheus_bearer_token,
            bearer_token_file=self.prometheus_bearer_token_file,
            headers=self.prometheus_headers,
            ca_file=self.prometheus_ca_file,
            cert_file=self.prometheus_cert_file,
            key_file=self.prometheus_key_file,
            tls_insecure_skip_verify=self.prometheus_tls_insecure_skip_verify,
            max_response_bytes=self.prometheus_max_response_bytes,
        )


def _check_ui_auth(settings: Settings) -> None:
    for entry in filter(None, (part.strip() for part in settings.ui_trusted_proxies.split(","))):
        try:
            ipaddress.ip_network(entry, strict=False)
        except ValueError as err:
            raise ConfigError(f"SLO_PIPELINE_UI_TRUSTED_PROXIES: {entry!r} is not an address: {err}") from err
    if settings.ui_auth == "proxy" and not settings.ui_trusted_proxies.strip():
        raise ConfigError(
            "SLO_PIPELINE_UI_AUTH=proxy needs SLO_PIPELINE_UI_TRUSTED_PROXIES: without it anyone "
            "could send the user header"
        )


def load_settings(**overrides: object) -> Settings:
    """Build the settings from the environment, then read the pipeline YAML it points at.

    A missing YAML file is an empty pipeline (no detectors), so `db migrate` or the webhook can
    run before anyone has written detectors; a present but invalid file is an error.
    """
    try:
        settings = Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as err:
        # Only the field and the reason: pydantic's own text repeats the inputs, secrets included.
        reasons = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or 'settings'}: {error['msg']}"
            for error in err.errors()
        )
        raise ConfigError(f"invalid settings: {reasons}") from None
    _check_ui_auth(settings)
    if "pipeline" in overrides or not settings.config_path.exists():
        return settings
    return settings.model_copy(update={"pipeline": load_pipeline_config(settings.config_path)})
