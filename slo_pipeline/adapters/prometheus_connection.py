"""One place that turns the connection settings into HTTP: every Prometheus-API reader asks
`prometheus_session` for its `requests.Session` (credentials, tenant headers, TLS) and
`raise_for_auth` for a 401/403, so a new reader cannot forget the credentials or leak them.

Credentials never reach a message: URLs are printed through `redact_url`, secrets are
`SecretStr`, and an auth failure names only the URL and the status.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests
import urllib3

from slo_pipeline.adapters import outages
from slo_pipeline.settings import PrometheusConnection

AUTH_STATUSES = (401, 403)
# Why a query failed: a small fixed set, as it labels `anomaly_exporter_query_errors_total`.
QUERY_ERROR_REASONS = ("auth", "unreachable", "timeout", "oversized", "http_status", "bad_answer", "other")
_READ_CHUNK_BYTES = 1 << 16


class PrometheusQueryError(RuntimeError):
    """A query failed; the message names the query and the Prometheus URL, `reason` is one of
    `QUERY_ERROR_REASONS`."""

    def __init__(self, message: str, reason: str = "other") -> None:
        super().__init__(message)
        self.reason = reason if reason in QUERY_ERROR_REASONS else "other"


class PrometheusAuthError(PrometheusQueryError):
    """The backend refused the credentials (HTTP 401/403). Permanent until the settings change:
    CLIs exit 2 on it, and retrying does not help."""

    def __init__(self, message: str) -> None:
        super().__init__(message, "auth")


class AnswerTooLargeError(requests.RequestException):
    """The answer's body exceeded PROMETHEUS_MAX_RESPONSE_BYTES (read no further)."""


class AnswerTooSlowError(requests.Timeout):
    """The whole answer did not arrive within the request's deadline (a server dripping bytes)."""


class AnswerCutError(requests.exceptions.ChunkedEncodingError):
    """The connection ended before the announced body did (a partial answer)."""


def reason_of(err: BaseException) -> str:
    """The `QUERY_ERROR_REASONS` value of a transport error (`requests`' hierarchy)."""
    if isinstance(err, PrometheusQueryError):
        return err.reason
    if isinstance(err, AnswerTooLargeError):
        return "oversized"
    if isinstance(err, requests.Timeout):  # ConnectTimeout too: Prometheus did not answer in time
        return "timeout"
    if isinstance(err, requests.exceptions.ChunkedEncodingError | requests.exceptions.ContentDecodingError):
        return "bad_answer"
    if isinstance(err, requests.ConnectionError):
        # After urllib3's retries a read timeout arrives wrapped: MaxRetryError(ReadTimeoutError).
        cause = err.args[0] if err.args else None
        if isinstance(getattr(cause, "reason", None), urllib3.exceptions.ReadTimeoutError):
            return "timeout"
        return "unreachable"
    return "other"


class PrometheusSecretError(PrometheusQueryError):
    """A `*_FILE` secret could not be read; the message names the file, never its content."""


def redact_url(url: str) -> str:
    """`https://user:pw@host/x` -> `https://user:***@host/x`; other URLs unchanged."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable URL>"
    if parts.password is None and parts.username is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    userinfo = f"{user}:***" if parts.password is not None else user
    return urlunsplit((parts.scheme, f"{userinfo}@{host}", parts.path, parts.query, parts.fragment))


def as_connection(target: str | PrometheusConnection, timeout: float | None = None) -> PrometheusConnection:
    """A bare URL (tests, benchmarks) is a connection without credentials."""
    if isinstance(target, PrometheusConnection):
        return target if timeout is None else target.model_copy(update={"timeout_seconds": timeout})
    return PrometheusConnection(url=target, timeout_seconds=30.0 if timeout is None else timeout)


def read_secret_file(path: Path, setting: str) -> str:
    """A mounted secret's content without the trailing newline editors and `kubectl` add."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        reason = err.strerror if isinstance(err, OSError) and err.strerror else type(err).__name__
        raise PrometheusSecretError(f"cannot read {setting} {str(path)!r}: {reason}") from None
    secret = text.rstrip("\r\n")
    if not secret:
        raise PrometheusSecretError(f"{setting} {str(path)!r} is empty")
    return secret


def request_headers(connection: PrometheusConnection) -> dict[str, str]:
    """Extra headers plus the bearer token, as a request must carry them."""
    headers = dict(connection.headers)
    token = _bearer_token(connection)
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return headers


def basic_auth(connection: PrometheusConnection) -> tuple[str, str] | None:
    if not connection.username:
        return None
    if connection.password_file is not None:
        return connection.username, read_secret_file(connection.password_file, "PROMETHEUS_PASSWORD_FILE")
    password = connection.password.get_secret_value() if connection.password is not None else ""
    return connection.username, password


def tls_verify(connection: PrometheusConnection) -> bool | str:
    """`requests`' `verify`: a CA bundle path, False (skip), or True (system CAs)."""
    if connection.tls_insecure_skip_verify:
        return False
    return str(connection.ca_file) if connection.ca_file is not None else True


def client_cert(connection: PrometheusConnection) -> tuple[str, str] | None:
    if connection.cert_file is None or connection.key_file is None:
        return None
    return str(connection.cert_file), str(connection.key_file)


def prometheus_session(connection: PrometheusConnection) -> requests.Session:
    """A session that sends the connection's credentials, headers and TLS settings with every
    request. Secret files are read now, so a rotated token is used by the next session."""
    session = _BoundedSession(connection.timeout_seconds, connection.max_response_bytes)
    # Loopback/LAN: gzip costs Prometheus and us more CPU than the bytes it saves
    # (slo_pipeline/adapters/prometheus.py explains the measurement).
    session.headers["Accept-Encoding"] = "identity"
    session.headers.update(request_headers(connection))
    session.auth = basic_auth(connection)
    session.verify = tls_verify(connection)
    session.cert = client_cert(connection)
    return session


class _SettingsFirstSession(requests.Session):
    """`requests` lets REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE override a session's own `verify`
    (psf/requests#3829), which would silently ignore PROMETHEUS_CA_FILE and skip-verify on any
    machine that sets them (many container images do). The settings win here; proxies and the
    rest of the environment still apply."""

    def merge_environment_settings(
        self, url: str, proxies: Any, stream: Any, verify: Any, cert: Any
    ) -> dict[str, Any]:
        merged = super().merge_environment_settings(url, proxies, stream, verify, cert)
        if verify is None and self.verify is not True:
            merged["verify"] = self.verify
        return merged

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        # Inside `outages.remembering_outages()` (a UI page view) a Prometheus that timed out or
        # refused once is not waited on again: a black-holed server costs one timeout per page.
        parts = urlsplit(request.url or "")
        server = f"{parts.scheme}://{parts.netloc}"
        earlier = outages.earlier_outage(server)
        if earlier is not None:
            raise requests.ConnectionError(outages.not_asked_again(earlier), request=request)
        try:
            return super().send(request, **kwargs)
        except (requests.ConnectionError, requests.Timeout) as err:
            outages.note_outage(server, _cause_name(err))
            raise


class _BoundedSession(_SettingsFirstSession):
    """Every answer is read whole, within `deadline_seconds` from the request and at most
    `max_bytes` long, before the caller sees it.

    `requests`' timeout bounds the connect and each socket read, not the answer: a backend that
    drips its body, or a query that matches far more series than expected, would otherwise hold
    a reader (the exporter's whole cycle) for as long as it likes and take all its memory. The
    body is read in chunks against the deadline and the cap (as the webhook's driver lookups
    do), then handed over as an ordinary response, so `prometheus-api-client` gets it too.
    """

    def __init__(self, deadline_seconds: float, max_bytes: int) -> None:
        super().__init__()
        self.deadline_seconds = deadline_seconds
        self.max_bytes = max_bytes

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        if kwargs.get("stream"):
            # The caller reads the body itself, against its own deadline (incident drivers).
            return super().send(request, **kwargs)
        deadline = time.monotonic() + self.deadline_seconds
        kwargs["stream"] = True
        response = super().send(request, **kwargs)
        shown = redact_url(request.url or "")
        try:
            announced = response.headers.get("Content-Length", "")
            if announced.isdigit() and int(announced) > self.max_bytes:
                raise AnswerTooLargeError(self._too_large(shown, f"announces {int(announced)} bytes"))
            content = bytearray()
            # read1: whatever one socket read returns (read(n) would wait for all n bytes).
            while chunk := response.raw.read1(_READ_CHUNK_BYTES, decode_content=True):
                content.extend(chunk)
                if len(content) > self.max_bytes:
                    raise AnswerTooLargeError(
                        self._too_large(shown, f"sent more than {self.max_bytes} bytes")
                    )
                if time.monotonic() > deadline:
                    raise AnswerTooSlowError(
                        f"the answer from {shown} was not complete within {self.deadline_seconds:g}s "
                        f"({len(content)} bytes so far)"
                    )
        except requests.RequestException:
            raise  # ours, above (an OSError too, which the last clause must not re-label)
        except urllib3.exceptions.ReadTimeoutError as err:
            raise requests.ReadTimeout(f"reading the answer from {shown} timed out") from err
        except (urllib3.exceptions.ProtocolError, urllib3.exceptions.DecodeError) as err:
            raise AnswerCutError(f"the answer from {shown} was cut short: {type(err).__name__}") from err
        except OSError as err:
            raise requests.ConnectionError(f"reading the answer from {shown} failed: {err}") from err
        finally:
            response.close()
        response._content = bytes(content)
        response._content_consumed = True
        return response

    def _too_large(self, shown: str, what: str) -> str:
        return (
            f"the answer from {shown} {what}, over PROMETHEUS_MAX_RESPONSE_BYTES={self.max_bytes}: "
            "narrow the query or raise the cap"
        )


def _cause_name(err: requests.RequestException) -> str:
    """`ReadTimeoutError` rather than the `ConnectionError` requests wraps urllib3's errors in."""
    reason = getattr(err.args[0], "reason", None) if err.args else None
    return type(reason if isinstance(reason, Exception) else err).__name__


def raise_for_auth(status_code: int, url: str) -> None:
    """A 401/403 becomes one line naming the URL and the status, nothing of the request."""
    if status_code in AUTH_STATUSES:
        reason = "Unauthorized" if status_code == 401 else "Forbidden"
        raise PrometheusAuthError(
            f"Prometheus-API backend at {redact_url(url)} answered HTTP {status_code} {reason}: check "
            "PROMETHEUS_USERNAME/PASSWORD, PROMETHEUS_BEARER_TOKEN or PROMETHEUS_HEADERS"
        )


def _bearer_token(connection: PrometheusConnection) -> str | None:
    if connection.bearer_token_file is not None:
        return read_secret_file(connection.bearer_token_file, "PROMETHEUS_BEARER_TOKEN_FILE")
    if connection.bearer_token is not None:
        return connection.bearer_token.get_secret_value()
    return None
