"""Alertmanager webhook payload (version 4) -> typed alerts. Pure: no I/O, no Flask.

Every rejection raises PayloadError naming the offending field (e.g. `alerts[2].startsAt`), so a
400 tells the operator exactly what their Alertmanager (or hand-written curl) got wrong.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

SUPPORTED_VERSION = "4"
ALERT_STATUSES = frozenset({"firing", "resolved"})
# Go's zero time.Time: Alertmanager sends it as endsAt of an alert with no known end.
GO_ZERO_TIME_YEAR = 1
RETRAIN_LABEL = "retrain"
DETECTOR_LABEL = "detector"
# Values the database indexes (the fingerprint, and the alertname/detector/slo/severity labels
# copied into columns) must fit a btree index row (~2.7 kB). Alertmanager's fingerprints are 16
# hex digits and these labels are short names, so a longer one is refused (400, raw body kept)
# rather than answered 503 forever. Other labels, annotations, the groupKey and the receiver are
# not indexed and may be any length.
MAX_INDEXED_VALUE_BYTES = 1024
INDEXED_LABELS = ("alertname", DETECTOR_LABEL, "slo", "severity")


class PayloadError(ValueError):
    """The body can never be accepted (the webhook answers 400, Alertmanager does not retry)."""

    def __init__(self, field_path: str, problem: str) -> None:
        super().__init__(f"{field_path}: {problem}" if field_path else problem)
        self.field_path = field_path
        self.problem = problem


@dataclass(frozen=True)
class Alert:
    status: str
    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: datetime
    ends_at: datetime | None  # None while firing, whatever endsAt said
    generator_url: str
    fingerprint: str

    @property
    def alertname(self) -> str:
        return self.labels.get("alertname", "")

    @property
    def detector(self) -> str | None:
        return self.labels.get(DETECTOR_LABEL) or None

    @property
    def slo(self) -> str | None:
        return self.labels.get("slo") or None

    @property
    def severity(self) -> str | None:
        return self.labels.get("severity") or None

    @property
    def requests_retrain(self) -> bool:
        """Only a firing alert routed for retraining that names its detector enqueues a job."""
        return self.status == "firing" and self.labels.get(RETRAIN_LABEL) == "true" and bool(self.detector)


@dataclass(frozen=True)
class Notification:
    receiver: str
    status: str
    group_key: str
    alerts: list[Alert] = field(default_factory=list)
    truncated_alerts: int = 0


@dataclass(frozen=True)
class DeliveryKey:
    """What Alertmanager said about the delivery, read leniently so a bad body is still stored."""

    receiver: str | None
    status: str | None
    group_key: str | None


def parse_json(body: bytes) -> Any:
    """Strict JSON (RFC 8259, UTF-8): NaN or a stray BOM is not JSON here, as in PostgreSQL."""
    if not body.strip():
        raise PayloadError("", "request body is empty; expected an Alertmanager JSON notification")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as err:
        raise PayloadError("", f"request body is not valid JSON: {err}") from err


def delivery_key(document: Any) -> DeliveryKey:
    """The dedup fields of any JSON document, None where missing or not a string."""
    if not isinstance(document, Mapping):
        return DeliveryKey(None, None, None)

    def text(key: str) -> str | None:
        value = document.get(key)
        return value if isinstance(value, str) else None

    return DeliveryKey(receiver=text("receiver"), status=text("status"), group_key=text("groupKey"))


def parse_notification(document: Any) -> Notification:
    if not isinstance(document, Mapping):
        raise PayloadError("", f"notification must be a JSON object, got {_json_type(document)}")
    nul_path = _path_of_nul(document, "")
    if nul_path is not None:
        # Valid JSON, but PostgreSQL text and jsonb cannot hold U+0000, ever.
        raise PayloadError(
            nul_path or "(a key)", "contains a NUL character (\\u0000), which cannot be stored"
        )
    version = document.get("version")
    if version is None:
        raise PayloadError("version", 'missing; expected "4" (Alertmanager webhook payload version)')
    if version != SUPPORTED_VERSION:
        raise PayloadError("version", f'unsupported version {version!r}; expected "4"')
    alerts_value = _required(document, "alerts", list, "")
    alerts = [_parse_alert(item, f"alerts[{index}]") for index, item in enumerate(alerts_value)]
    truncated = document.get("truncatedAlerts", 0)
    if not isinstance(truncated, int) or isinstance(truncated, bool) or truncated < 0:
        raise PayloadError("truncatedAlerts", f"must be a non-negative integer, got {truncated!r}")
    return Notification(
        receiver=_required(document, "receiver", str, ""),
        status=_status(document, ""),
        group_key=_required(document, "groupKey", str, ""),
        alerts=alerts,
        truncated_alerts=truncated,
    )


def _parse_alert(item: Any, path: str) -> Alert:
    if not isinstance(item, Mapping):
        raise PayloadError(path, f"must be an object, got {_json_type(item)}")
    status = _status(item, path)
    labels = _string_map(_required(item, "labels", Mapping, path), f"{path}.labels")
    if not labels:
        raise PayloadError(f"{path}.labels", "must not be empty")
    annotations_value = item.get("annotations", {})
    if not isinstance(annotations_value, Mapping):
        raise PayloadError(f"{path}.annotations", f"must be an object, got {_json_type(annotations_value)}")
    starts_at = parse_timestamp(_required(item, "startsAt", str, path), f"{path}.startsAt")
    if starts_at is None:
        raise PayloadError(f"{path}.startsAt", "must be a real time, not Go's zero time")
    ends_at_text = item.get("endsAt")
    if ends_at_text is not None and not isinstance(ends_at_text, str):
        raise PayloadError(f"{path}.endsAt", f"must be a string, got {_json_type(ends_at_text)}")
    ends_at = parse_timestamp(ends_at_text, f"{path}.endsAt") if ends_at_text else None
    if status == "resolved" and ends_at is None:
        raise PayloadError(f"{path}.endsAt", "a resolved alert must say when it ended")
    generator_url = item.get("generatorURL", "")
    if not isinstance(generator_url, str):
        raise PayloadError(f"{path}.generatorURL", f"must be a string, got {_json_type(generator_url)}")
    fingerprint = _required(item, "fingerprint", str, path)
    if not fingerprint:
        raise PayloadError(f"{path}.fingerprint", "must not be empty")
    _check_indexed_length(fingerprint, f"{path}.fingerprint")
    for name in INDEXED_LABELS:
        if name in labels:
            _check_indexed_length(labels[name], f"{path}.labels.{name}")
    return Alert(
        status=status,
        labels=labels,
        annotations=_string_map(annotations_value, f"{path}.annotations"),
        starts_at=starts_at,
        # A firing alert's endsAt is only Alertmanager's expiry guess; the incident is open.
        ends_at=ends_at if status == "resolved" else None,
        generator_url=generator_url,
        fingerprint=fingerprint,
    )


def _path_of_nul(node: Any, path: str) -> str | None:
    """The path of the first string (key or value) holding U+0000, or None."""
    if isinstance(node, str):
        return path if "\x00" in node else None
    if isinstance(node, Mapping):
        for key, value in node.items():
            child = f"{path}.{key}" if path else str(key)
            if "\x00" in key:
                return child.replace("\x00", "\\u0000")
            found = _path_of_nul(value, child)
            if found is not None:
                return found
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found = _path_of_nul(value, f"{path}[{index}]")
            if found is not None:
                return found
    return None


def _check_indexed_length(value: str, path: str) -> None:
    size = len(value.encode("utf-8", "surrogatepass"))
    if size > MAX_INDEXED_VALUE_BYTES:
        raise PayloadError(path, f"is {size} bytes long, more than the {MAX_INDEXED_VALUE_BYTES} allowed")


def parse_timestamp(text: str, path: str) -> datetime | None:
    """RFC 3339 -> aware UTC datetime; Go's zero time (0001-01-01T00:00:00Z) -> None."""
    try:
        # fromisoformat takes 'Z' and truncates Go's nanoseconds to microseconds
        parsed = datetime.fromisoformat(text)
    except ValueError as err:
        raise PayloadError(path, f"not an RFC 3339 timestamp: {text!r}") from err
    if parsed.tzinfo is None:
        raise PayloadError(path, f"timestamp has no time zone: {text!r}")
    if parsed.year == GO_ZERO_TIME_YEAR:
        return None
    try:
        return parsed.astimezone(UTC)
    except OverflowError as err:  # e.g. 9999-12-31T23:59:59-05:00 is past datetime.max in UTC
        raise PayloadError(path, f"timestamp out of range: {text!r}") from err


def _required(container: Mapping[str, Any], key: str, kind: type, path: str) -> Any:
    field_path = f"{path}.{key}" if path else key
    if key not in container or container[key] is None:
        raise PayloadError(field_path, "missing")
    value = container[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise PayloadError(field_path, f"must be {_kind_name(kind)}, got {_json_type(value)}")
    return value


def _status(container: Mapping[str, Any], path: str) -> str:
    status = _required(container, "status", str, path)
    if status not in ALERT_STATUSES:
        field_path = f"{path}.status" if path else "status"
        raise PayloadError(field_path, f"must be 'firing' or 'resolved', got {status!r}")
    return status


def _string_map(value: Mapping[str, Any], path: str) -> dict[str, str]:
    result: dict[str, str] = {}
    for key, item in value.items():
        if not isinstance(item, str):
            raise PayloadError(f"{path}.{key}", f"must be a string, got {_json_type(item)}")
        result[key] = item
    return result


def _kind_name(kind: type) -> str:
    return {str: "a string", list: "an array", Mapping: "an object", int: "an integer"}.get(
        kind, kind.__name__
    )


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, Mapping):
        return "an object"
    return type(value).__name__
