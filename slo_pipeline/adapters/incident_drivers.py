"""Which feature drove an anomaly incident, looked up in Prometheus when the incident is new.

While a series scores at least 1 the exporter publishes
`anomaly_driver_info{<the score's labels>, driver="<feature>"} 1` (slo_pipeline/core/explanations.py).
An anomaly alert is raised on that score, so it carries all those labels (plus its own:
alertname, severity, Prometheus' external labels). For a new incident with a `detector` label the
webhook runs one instant query `anomaly_driver_info{detector="<d>"}` at the alert's startsAt and
keeps the series whose labels (minus `__name__` and `driver`) all appear, equal, in the alert.

Best effort by design: this runs after the notification is committed, with a short time budget
per notification; Prometheus down, slow or without a matching series leaves the driver empty
(NULL) and never changes the answer to Alertmanager.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import psycopg2.extensions
import psycopg2.extras
import requests
import urllib3

from slo_pipeline.adapters.prometheus_connection import (
    PrometheusAuthError,
    PrometheusQueryError,
    as_connection,
    prometheus_session,
    raise_for_auth,
    redact_url,
)
from slo_pipeline.core.explanations import DRIVER_INFO_METRIC, DRIVER_LABEL
from slo_pipeline.settings import PrometheusConnection

log = logging.getLogger(__name__)

# Time allowed for all driver lookups of one notification: Alertmanager waits for our answer.
# The label the anomaly alerts carry their detector in (rules/anomaly.rules.yml).
DETECTOR_LABEL = "detector"
LOOKUP_BUDGET_SECONDS = 2.0
# Outcomes, per new anomaly incident (the `outcome` label of the lookup counter).
FOUND, NO_MATCH, FAILED = "found", "no_match", "failed"
OUTCOMES = (FOUND, NO_MATCH, FAILED)
_IGNORED_SERIES_LABELS = frozenset({"__name__", DRIVER_LABEL})


class DriverLookupError(RuntimeError):
    """Prometheus could not answer the driver query; the message says which and why."""


class DriverSource(Protocol):
    def driver_series(self, detector: str, at: datetime, timeout: float) -> list[dict[str, str]]:
        """Label sets of the detector's `anomaly_driver_info` series at `at`; raises DriverLookupError."""
        ...


class IncidentAlert(Protocol):
    """What a driver lookup needs of an incident's alert (the webhook's parsed Alert has it)."""

    @property
    def labels(self) -> dict[str, str]: ...

    @property
    def starts_at(self) -> datetime: ...

    @property
    def detector(self) -> str | None: ...


@dataclass(frozen=True)
class StoredAlert:
    """An incident's alert as read back from the incidents table (the worker's retries)."""

    labels: dict[str, str]
    starts_at: datetime

    @property
    def detector(self) -> str | None:
        return self.labels.get(DETECTOR_LABEL) or None


@dataclass(frozen=True)
class NewIncident:
    id: int
    alert: IncidentAlert


@dataclass(frozen=True)
class DriverOutcome:
    incident_id: int
    outcome: str  # one of OUTCOMES
    driver: str | None = None
    reason: str = ""  # why there is no driver, for the log
    # False: not asked, because an earlier query of the same batch failed or the budget ran out.
    # Such an incident is `failed` but has not used up an attempt.
    queried: bool = True


# At most this many incident ids are named in the one log line about missing drivers.
LOGGED_INCIDENT_IDS = 10


def describe_missing_drivers(outcomes: Sequence[DriverOutcome]) -> str | None:
    """ONE line about the incidents left without a driver (None if there are none): counts by
    outcome, each distinct reason once, and the first few incident ids. A Prometheus outage
    during a 2,000-alert notification is one line, not 2,000."""
    missing = [o for o in outcomes if o.outcome != FOUND]
    if not missing:
        return None
    counts = {outcome: sum(o.outcome == outcome for o in missing) for outcome in OUTCOMES if outcome != FOUND}
    reasons = list(dict.fromkeys(o.reason for o in missing if o.reason))
    ids = ", ".join(str(o.incident_id) for o in missing[:LOGGED_INCIDENT_IDS])
    more = f" and {len(missing) - LOGGED_INCIDENT_IDS} more" if len(missing) > LOGGED_INCIDENT_IDS else ""
    summary = ", ".join(f"{n} {outcome}" for outcome, n in counts.items() if n)
    shown_reasons = "; ".join(reasons[:3]) + (
        f"; and {len(reasons) - 3} other reasons" if len(reasons) > 3 else ""
    )
    because = shown_reasons or "no reason given"
    return f"{len(missing)} incident(s) without a driver ({summary}): {because} [incidents {ids}{more}]"


def promql_string(value: str) -> str:
    """A PromQL double-quoted string literal (Go escaping rules) holding `value`."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def driver_query(detector: str) -> str:
    return f"{DRIVER_INFO_METRIC}{{detector={promql_string(detector)}}}"


def match_driver(alert_labels: Mapping[str, str], series: Iterable[Mapping[str, str]]) -> str | None:
    """The `driver` of the series whose labels (minus `__name__`, `driver`) all equal the alert's.

    When several match (an alert labelled more specifically than some series) the series with the
    most labels wins; equally specific matches that disagree give None rather than a guess.
    """
    best_size, drivers = -1, set()
    for labels in series:
        driver = labels.get(DRIVER_LABEL)
        if not driver:
            continue
        own = {k: v for k, v in labels.items() if k not in _IGNORED_SERIES_LABELS}
        if any(alert_labels.get(name) != value for name, value in own.items()):
            continue
        if len(own) > best_size:
            best_size, drivers = len(own), {driver}
        elif len(own) == best_size:
            drivers.add(driver)
    return next(iter(drivers)) if len(drivers) == 1 else None


def find_drivers(
    source: DriverSource,
    incidents: Sequence[NewIncident],
    budget_seconds: float = LOOKUP_BUDGET_SECONDS,
    clock: Callable[[], float] = time.monotonic,
) -> list[DriverOutcome]:
    """One outcome per incident with a `detector` label (others are skipped). Never raises.

    One query per distinct (detector, startsAt). After the first failed query, or once the budget
    is spent, the remaining incidents are not queried (Prometheus is down or slow: every further
    query would only make Alertmanager wait longer).
    """
    deadline = clock() + budget_seconds
    answers: dict[tuple[str, datetime], list[dict[str, str]]] = {}
    failure: str | None = None
    outcomes: list[DriverOutcome] = []
    for incident in incidents:
        detector = incident.alert.detector
        if detector is None:
            continue
        key = (detector, incident.alert.starts_at)
        queried = False
        if key not in answers and failure is None:
            remaining = deadline - clock()
            if remaining <= 0:
                failure = f"lookup budget of {budget_seconds:g}s per notification spent"
            else:
                queried = True
                try:
                    answers[key] = source.driver_series(detector, incident.alert.starts_at, remaining)
                except DriverLookupError as err:
                    failure = str(err)
        if key not in answers:
            reason = (failure or "no answer") if queried else f"not looked up: {failure or 'no answer'}"
            outcomes.append(DriverOutcome(incident.id, FAILED, reason=reason, queried=queried))
            continue
        driver = match_driver(incident.alert.labels, answers[key])
        if driver is None:
            reason = f"no {DRIVER_INFO_METRIC} series of detector {detector!r} matches the alert's labels"
            outcomes.append(DriverOutcome(incident.id, NO_MATCH, reason=reason))
        else:
            outcomes.append(DriverOutcome(incident.id, FOUND, driver=driver))
    return outcomes


class PrometheusDriverSource:
    """Instant queries against the Prometheus HTTP API."""

    def __init__(self, prometheus: str | PrometheusConnection) -> None:
        self._connection = as_connection(prometheus)
        self._url = self._connection.url.rstrip("/") + "/api/v1/query"

    def driver_series(self, detector: str, at: datetime, timeout: float) -> list[dict[str, str]]:
        query = driver_query(detector)
        context = f"driver query {query!r} at {at.isoformat()} to {redact_url(self._url)}"
        deadline = time.monotonic() + timeout
        try:
            session = prometheus_session(self._connection)
        except PrometheusQueryError as err:  # an unreadable secret file: names the file only
            raise DriverLookupError(f"{context} failed: {err}") from None
        try:
            # `timeout` bounds the connect and each socket read, not the whole answer; reading the
            # body in chunks against a deadline keeps a server that drips its answer from holding
            # the request for long (at most one more read past the budget).
            with (
                session,
                session.get(
                    self._url,
                    params={"query": query, "time": f"{at.timestamp():.3f}", "timeout": f"{timeout:.3f}"},
                    timeout=timeout,
                    stream=True,
                ) as response,
            ):
                raise_for_auth(response.status_code, self._url)
                content = bytearray()
                # read1: whatever one socket read returns (read(n) would wait for all n bytes).
                while chunk := response.raw.read1(65536, decode_content=True):
                    content.extend(chunk)
                    if len(content) > self._connection.max_response_bytes:
                        raise DriverLookupError(
                            f"{context}: the answer exceeds PROMETHEUS_MAX_RESPONSE_BYTES="
                            f"{self._connection.max_response_bytes}"
                        )
                    if time.monotonic() > deadline:
                        raise DriverLookupError(f"{context}: no complete answer within {timeout:.1f}s")
        except PrometheusAuthError as err:
            raise DriverLookupError(str(err)) from None
        except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as err:
            # Errors while reading the body come from urllib3 itself (read1 is below requests);
            # their text repeats the URL, so the password in it is redacted.
            detail = _first_line(err).replace(self._url, redact_url(self._url))
            raise DriverLookupError(f"{context} failed: {detail}") from err
        try:
            body: Any = json.loads(content)
        except ValueError as err:
            raise DriverLookupError(f"{context}: HTTP {response.status_code}, not JSON") from err
        if not response.ok or not isinstance(body, dict) or body.get("status") != "success":
            detail = (body.get("error") if isinstance(body, dict) else None) or "unexpected answer"
            raise DriverLookupError(f"{context}: HTTP {response.status_code}: {detail}")
        return _label_sets(body, context)


def _label_sets(body: dict[str, Any], context: str) -> list[dict[str, str]]:
    data = body.get("data")
    if not isinstance(data, dict) or data.get("resultType") != "vector":
        raise DriverLookupError(f"{context}: expected an instant vector, got {str(data)[:200]}")
    result = data.get("result") or []
    return [
        {str(k): str(v) for k, v in item["metric"].items()}
        for item in result
        if isinstance(item, dict) and isinstance(item.get("metric"), dict)
    ]


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


# Only touches incidents without a driver (the driver is the one at the incident's start, set
# once) and without a final `no_match`. Every outcome is recorded so the worker knows which
# lookups to retry; only a lookup that asked Prometheus uses up an attempt and restarts the
# back-off (`queried`).
RECORD_DRIVER_LOOKUPS_SQL = """
UPDATE incidents AS i
SET driver = v.driver,
    driver_lookup = v.outcome,
    driver_lookup_attempts = i.driver_lookup_attempts + v.queried::int,
    driver_lookup_at = CASE WHEN v.queried THEN now() ELSE i.driver_lookup_at END
FROM (VALUES %s) AS v (id, outcome, driver, queried)
WHERE i.id = v.id AND i.driver IS NULL AND i.driver_lookup IS DISTINCT FROM 'no_match'
"""


def record_driver_lookups(conn: psycopg2.extensions.connection, outcomes: Sequence[DriverOutcome]) -> int:
    """Store each lookup's outcome (and a found driver) on incidents that have no driver yet;
    returns the rows changed."""
    rows = sorted({o.incident_id: (o.incident_id, o.outcome, o.driver, o.queried) for o in outcomes}.values())
    if not rows:
        return 0
    with conn, conn.cursor() as cur:
        psycopg2.extras.execute_values(
            cur, RECORD_DRIVER_LOOKUPS_SQL, rows, template="(%s, %s, %s::text, %s::boolean)"
        )
        return cur.rowcount
