"""SLO specs: Sloth's `prometheus/v1` format plus three extensions, parsed and validated. Pure.

A spec file holds one or more YAML documents, each one service with its SLOs, exactly as Sloth
reads them (so existing Sloth specs load unchanged, and Sloth ignores our extra keys):

    version: prometheus/v1
    service: demo
    labels: {team: shop}
    slos:
      - name: availability
        objective: 99.5
        sli: {events: {error_query: ..., total_query: ...}}     # or raw: {error_ratio_query: ...}
        alerting: {name: DemoAvailability, page_alert: {...}, ticket_alert: {...}}
        time_period: 30d      # extension: 7d, 28d, 30d...; Sloth sets this per run, we per SLO
        min_events: 100       # extension: fewer events in a window -> that window has no ratio
        detectors: [demo_error_ratio]   # extension: anomaly detectors protecting this SLO

Every problem is reported at once, each naming its field (`slos[0].objective`), because a spec
is usually fixed in one editing pass. PromQL syntax is checked separately by `promcheck`, with
Prometheus' own parser (promtool), since only it knows exactly what Prometheus accepts.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from slo_pipeline.settings import NAME_PATTERN

SPEC_VERSION = "prometheus/v1"
DEFAULT_TIME_PERIOD = "30d"
# The slowest burn-rate pair looks back 3 days; a period not much longer than that makes every
# tier a near-whole-period alert. A year is far beyond any Prometheus retention worth querying.
MIN_PERIOD_DAYS = 7
MAX_PERIOD_DAYS = 365

# Sloth's queries are Go templates; {{.window}} is the only variable it (and we) provide.
WINDOW_PLACEHOLDER = re.compile(r"\{\{-?\s*\.window\s*-?\}\}")
ANY_TEMPLATE_ACTION = re.compile(r"\{\{.*?\}\}", re.DOTALL)
# Names end up in label values, rule group names and file names.
SLO_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
LABEL_NAME_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
PERIOD_PATTERN = re.compile(r"^(?P<days>[0-9]+)d$")

# Labels the generated rules set themselves; a spec that also set them would silently lose
# (or, for `severity`, break Alertmanager routing), so they are refused with a reason.
SERIES_LABELS = frozenset({"sloth_id", "sloth_service", "sloth_slo", "sloth_window", "slo"})
ALERT_LABELS = SERIES_LABELS | {"severity", "sloth_severity", "burn_tier", "long", "short"}


class SpecError(ValueError):
    """A spec cannot be used. `errors` lists every problem, each starting with the field path."""

    def __init__(self, source: str, errors: Sequence[str]) -> None:
        self.source = source
        self.errors = list(errors)
        super().__init__(f"invalid SLO spec {source}:\n" + "\n".join(f"  - {e}" for e in self.errors))


class _Strict(BaseModel):
    # Unknown keys are typos until proven otherwise: Sloth would ignore them, we name them.
    model_config = ConfigDict(extra="forbid", frozen=True)


class SLIEvents(_Strict):
    error_query: str
    total_query: str


class SLIRaw(_Strict):
    error_ratio_query: str


class SLI(_Strict):
    events: SLIEvents | None = None
    raw: SLIRaw | None = None


class AlertOverride(_Strict):
    disable: bool = False
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


class Alerting(_Strict):
    name: str = ""
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    page_alert: AlertOverride = AlertOverride()
    ticket_alert: AlertOverride = AlertOverride()


class SLOBlock(_Strict):
    """One entry of `slos:` as written in the file (Sloth's fields + our extensions)."""

    name: str
    objective: float
    description: str = ""
    labels: dict[str, str] = Field(default_factory=dict)
    sli: SLI
    alerting: Alerting = Alerting()
    time_period: str = DEFAULT_TIME_PERIOD
    min_events: int = Field(default=0, ge=0)
    detectors: list[str] = Field(default_factory=list)


class ServiceDocument(_Strict):
    version: Literal["prometheus/v1"]
    service: str
    labels: dict[str, str] = Field(default_factory=dict)
    slos: list[SLOBlock] = Field(min_length=1)


@dataclass(frozen=True)
class SLO:
    """One validated SLO with the service it belongs to: the unit stored, rendered and exported."""

    service: str
    service_labels: Mapping[str, str]
    block: SLOBlock

    @property
    def name(self) -> str:
        return self.block.name

    @property
    def sloth_id(self) -> str:
        return f"{self.service}-{self.block.name}"

    @property
    def objective_ratio(self) -> Decimal:
        # Decimal so 99.9 gives a budget of exactly 0.001, not 0.0009999999999999432.
        return Decimal(repr(self.block.objective)) / 100

    @property
    def error_budget_ratio(self) -> Decimal:
        return 1 - self.objective_ratio

    @property
    def period_days(self) -> int:
        return period_days(self.block.time_period)

    @property
    def labels(self) -> dict[str, str]:
        """Labels of every generated series: service-level first, the SLO's own win (as in Sloth)."""
        return {**self.service_labels, **self.block.labels}

    def to_document(self) -> dict[str, Any]:
        """A Sloth `prometheus/v1` document holding just this SLO: what the database stores."""
        return {
            "version": SPEC_VERSION,
            "service": self.service,
            "labels": dict(sorted(self.service_labels.items())),
            "slos": [self.block.model_dump(mode="json")],
        }


def period_days(time_period: str) -> int:
    match = PERIOD_PATTERN.match(time_period)
    if not match:
        raise ValueError(f"time period {time_period!r} is not a number of days like '30d'")
    return int(match["days"])


def render_query(query: str, window: str) -> str:
    """Fill Sloth's `{{.window}}` template variable with a PromQL duration."""
    return WINDOW_PLACEHOLDER.sub(window, query)


def parse_specs(text: str, source: str = "<spec>") -> list[SLO]:
    """Parse and validate every document of a spec file; raise SpecError listing all problems."""
    try:
        raw_documents = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as err:
        raise SpecError(source, [f"not valid YAML: {err}"]) from err
    if not raw_documents:
        raise SpecError(source, ["no SLO documents found (expected `version: prometheus/v1` ...)"])
    slos: list[SLO] = []
    errors: list[str] = []
    for index, raw in enumerate(raw_documents):
        prefix = f"document {index + 1}: " if len(raw_documents) > 1 else ""
        document_slos, document_errors = _parse_document(raw)
        slos.extend(document_slos)
        errors.extend(prefix + e for e in document_errors)
    errors.extend(_duplicate_name_errors(slos))
    if errors:
        raise SpecError(source, errors)
    return slos


def slos_from_documents(documents: Iterable[Mapping[str, Any]], source: str) -> list[SLO]:
    """Validate already-parsed documents (e.g. the JSONB stored in PostgreSQL)."""
    return parse_specs(yaml.safe_dump_all([dict(d) for d in documents]), source)


def _parse_document(raw: object) -> tuple[list[SLO], list[str]]:
    if not isinstance(raw, dict):
        return [], [f"a document must be a mapping with version/service/slos, got {type(raw).__name__}"]
    try:
        document = ServiceDocument.model_validate(raw)
    except ValidationError as err:
        return [], [_pydantic_error(raw, error) for error in err.errors()]
    errors = _document_errors(document)
    if errors:
        return [], errors
    return [SLO(document.service, dict(document.labels), block) for block in document.slos], []


def _pydantic_error(raw: Mapping[str, Any], error: Mapping[str, Any]) -> str:
    location = tuple(error["loc"])
    message = str(error["msg"])
    if error["type"] == "literal_error" and location == ("version",):
        message = f"must be {SPEC_VERSION!r} (Sloth's Prometheus spec), got {error.get('input')!r}"
    if error["type"] == "extra_forbidden" and location[-1:] == ("plugin",):
        message = "SLI plugins are not supported; write the query as sli.events or sli.raw"
    return f"{_field_path(location, raw)}: {message}"


def _field_path(location: Sequence[Any], raw: Mapping[str, Any] | None = None) -> str:
    """('slos', 0, 'sli', 'events') -> 'slos[0] (availability).sli.events'."""
    path = ""
    for position, part in enumerate(location):
        if isinstance(part, int):
            path += f"[{part}]"
            if position == 1 and location[0] == "slos" and raw is not None:
                path += _slo_name_hint(raw, part)
        else:
            path += f".{part}" if path else str(part)
    return path or "<document>"


def _slo_name_hint(raw: Mapping[str, Any], index: int) -> str:
    slos = raw.get("slos")
    if isinstance(slos, list) and index < len(slos) and isinstance(slos[index], dict):
        name = slos[index].get("name")
        if isinstance(name, str) and name:
            return f" ({name})"
    return ""


def _document_errors(document: ServiceDocument) -> list[str]:
    errors: list[str] = []
    if not SLO_NAME_PATTERN.match(document.service):
        errors.append(f"service: {document.service!r} must match {SLO_NAME_PATTERN.pattern}")
    errors.extend(_label_errors("labels", document.labels, SERIES_LABELS))
    for index, block in enumerate(document.slos):
        path = f"slos[{index}] ({block.name})" if block.name else f"slos[{index}]"
        errors.extend(_slo_errors(path, block))
    return errors


def _slo_errors(path: str, block: SLOBlock) -> list[str]:
    errors: list[str] = []
    if not SLO_NAME_PATTERN.match(block.name):
        errors.append(f"{path}.name: {block.name!r} must match {SLO_NAME_PATTERN.pattern}")
    if not 0 < block.objective <= 100:
        errors.append(
            f"{path}.objective: must be in (0, 100] (a percentage such as 99.9), got {block.objective}"
        )
    errors.extend(_label_errors(f"{path}.labels", block.labels, SERIES_LABELS))
    errors.extend(_sli_errors(f"{path}.sli", block))
    errors.extend(_alerting_errors(f"{path}.alerting", block.alerting))
    match = PERIOD_PATTERN.match(block.time_period)
    if not match:
        errors.append(f"{path}.time_period: {block.time_period!r} must be a number of days such as '30d'")
    elif not MIN_PERIOD_DAYS <= int(match["days"]) <= MAX_PERIOD_DAYS:
        errors.append(
            f"{path}.time_period: {block.time_period!r} must be between {MIN_PERIOD_DAYS}d and "
            f"{MAX_PERIOD_DAYS}d (the slowest burn-rate alert already looks back 3d)"
        )
    if block.min_events and block.sli.raw is not None:
        errors.append(f"{path}.min_events: needs sli.events; a raw error ratio carries no event count")
    for position, detector in enumerate(block.detectors):
        if not NAME_PATTERN.match(detector):
            errors.append(
                f"{path}.detectors[{position}]: {detector!r} is not a detector name ([a-z][a-z0-9_]*)"
            )
    repeated = sorted({d for d in block.detectors if block.detectors.count(d) > 1})
    if repeated:
        errors.append(f"{path}.detectors: listed more than once: {repeated}")
    return errors


def _sli_errors(path: str, block: SLOBlock) -> list[str]:
    sli = block.sli
    if (sli.events is None) == (sli.raw is None):
        return [
            f"{path}: set exactly one of `events` (error_query + total_query) or `raw` (error_ratio_query)"
        ]
    queries: dict[str, str] = (
        {"events.error_query": sli.events.error_query, "events.total_query": sli.events.total_query}
        if sli.events is not None
        else {"raw.error_ratio_query": sli.raw.error_ratio_query}  # type: ignore[union-attr]
    )
    errors: list[str] = []
    for field, query in queries.items():
        errors.extend(_query_errors(f"{path}.{field}", query))
    if sli.events is not None and _normalise(sli.events.error_query) == _normalise(sli.events.total_query):
        errors.append(
            f"{path}.events: error_query and total_query are identical, so the error ratio would always be 1"
        )
    return errors


def _query_errors(path: str, query: str) -> list[str]:
    if not query.strip():
        return [f"{path}: must not be empty"]
    errors: list[str] = []
    if not WINDOW_PLACEHOLDER.search(query):
        errors.append(f"{path}: must use {{{{.window}}}} as its range (e.g. rate(x[{{{{.window}}}}]))")
    unknown = [a for a in ANY_TEMPLATE_ACTION.findall(query) if not WINDOW_PLACEHOLDER.fullmatch(a)]
    if unknown:
        errors.append(f"{path}: unknown template action(s) {unknown}; only {{{{.window}}}} is provided")
    return errors


def _alerting_errors(path: str, alerting: Alerting) -> list[str]:
    errors: list[str] = []
    enabled = not (alerting.page_alert.disable and alerting.ticket_alert.disable)
    if enabled and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", alerting.name):
        errors.append(
            f"{path}.name: required while page or ticket alerts are enabled, and must be a valid "
            f"alert name ([A-Za-z_][A-Za-z0-9_]*), got {alerting.name!r}"
        )
    errors.extend(_label_errors(f"{path}.labels", alerting.labels, ALERT_LABELS))
    errors.extend(_label_errors(f"{path}.annotations", alerting.annotations, frozenset()))
    for kind in ("page_alert", "ticket_alert"):
        override: AlertOverride = getattr(alerting, kind)
        errors.extend(_label_errors(f"{path}.{kind}.labels", override.labels, ALERT_LABELS))
        errors.extend(_label_errors(f"{path}.{kind}.annotations", override.annotations, frozenset()))
    return errors


def _label_errors(path: str, labels: Mapping[str, str], reserved: frozenset[str]) -> list[str]:
    errors: list[str] = []
    for key in labels:
        if not LABEL_NAME_PATTERN.match(key) or key.startswith("__"):
            errors.append(f"{path}.{key}: not a valid Prometheus label name")
        elif key in reserved:
            errors.append(
                f"{path}.{key}: reserved, the generated rules set it themselves "
                f"(severity is page/ticket for Alertmanager routing; use another label name)"
                if key == "severity"
                else f"{path}.{key}: reserved, the generated rules set it themselves"
            )
    return errors


def _duplicate_name_errors(slos: Sequence[SLO]) -> list[str]:
    # The `slo` label, incidents and detectors refer to an SLO by name alone, so names are global.
    seen: dict[str, str] = {}
    errors: list[str] = []
    for slo in slos:
        if slo.name in seen:
            errors.append(
                f"slos[].name: {slo.name!r} is defined twice (services {seen[slo.name]!r} and "
                f"{slo.service!r}); SLO names must be unique across services"
            )
        seen.setdefault(slo.name, slo.service)
    # A series carries one `slo` label, so a detector can protect only one SLO.
    owner: dict[str, str] = {}
    for slo in slos:
        for detector in slo.block.detectors:
            if detector in owner and owner[detector] != slo.name:
                errors.append(
                    f"slos[].detectors: detector {detector!r} is linked to both {owner[detector]!r} and "
                    f"{slo.name!r}; a detector can protect only one SLO"
                )
            owner.setdefault(detector, slo.name)
    return errors


def _normalise(query: str) -> str:
    return re.sub(r"\s+", "", query)


def dump_specs(slos: Sequence[SLO]) -> str:
    """Sloth-compatible YAML: one document per service (and service-label set), SLOs by name."""
    groups: dict[tuple[str, tuple[tuple[str, str], ...]], list[SLO]] = {}
    for slo in sorted(slos, key=lambda s: (s.service, s.name)):
        key = (slo.service, tuple(sorted(slo.service_labels.items())))
        groups.setdefault(key, []).append(slo)
    documents = []
    for (service, labels), members in groups.items():
        document: dict[str, Any] = {"version": SPEC_VERSION, "service": service}
        if labels:
            document["labels"] = dict(labels)
        document["slos"] = [_compact_block(m.block) for m in members]
        documents.append(document)
    return str(yaml.safe_dump_all(documents, sort_keys=False, allow_unicode=True, width=1000))


def _compact_block(block: SLOBlock) -> dict[str, Any]:
    # Leave out defaults so an exported file reads like one a person wrote.
    return block.model_dump(mode="json", exclude_defaults=True)
