"""One place that turns the connection settings into HTTP: every Prometheus-API reader asks
`prometheus_session` for its `requests.Session` (credentials, tenant headers, TLS) and
`raise_for_auth` for a 401/403, so a new reader cannot forget the credentials or leak them.

Credentials never reach a message: URLs are printed through `redact_url`, secrets are
`SecretStr`, and an auth failure names only the URL and the status.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests

from slo_pipeline.settings import PrometheusConnection

AUTH_STATUSES = (401, 403)


class PrometheusQueryError(RuntimeError):
    """A query failed; the message names the query and the Prometheus URL."""


class PrometheusAuthError(PrometheusQueryError):
    """The backend refused the credentials (HTTP 401/403). Permanent until the settings change:
    CLIs exit 2 on it, and retrying does not help."""


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
    session = _SettingsFirstSession()
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
