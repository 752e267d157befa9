"""Bearer-token check for Alertmanager's `http_config.authorization` (pure).

RFC 6750 section 2.1: `credentials = "Bearer" 1*SP b64token`, the scheme compared without regard
to case (RFC 7235 section 2.1). Exactly one space is accepted, which is what every client sends;
anything else is refused, with a reason the webhook counts and logs.
"""

from __future__ import annotations

import hmac
import re
from enum import StrEnum

BEARER_SCHEME = "bearer"
# b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
_CREDENTIALS = re.compile(r"([!#$%&'*+\-.^_`|~0-9A-Za-z]+) (.*)", re.DOTALL)


class AuthFailure(StrEnum):
    """Why a request was refused (the `reason` label of the 401 counter)."""

    MISSING = "missing"  # no Authorization header
    MALFORMED = "malformed"  # not `<scheme> <credentials>`, or a token outside the b64token syntax
    SCHEME = "scheme"  # another scheme (Basic, ...)
    WRONG_TOKEN = "wrong_token"


def is_valid_token(token: str) -> bool:
    """Whether a configured token can be sent by a client at all (b64token syntax)."""
    return B64TOKEN.fullmatch(token) is not None


def check_bearer(authorization_header: str | None, expected_token: str) -> AuthFailure | None:
    """None when the header is exactly `Bearer <expected_token>` (scheme in any case)."""
    if not authorization_header:
        return AuthFailure.MISSING
    match = _CREDENTIALS.fullmatch(authorization_header)
    if match is None:
        return AuthFailure.MALFORMED
    scheme, presented = match.groups()
    if scheme.lower() != BEARER_SCHEME:
        return AuthFailure.SCHEME
    if not is_valid_token(presented):
        return AuthFailure.MALFORMED
    # An empty configured token is refused at start; refusing here too keeps this check safe alone.
    # compare_digest runs in time independent of where the strings differ (no byte-by-byte guessing).
    expected = expected_token.encode("utf-8")
    if not expected or not hmac.compare_digest(presented.encode("ascii"), expected):
        return AuthFailure.WRONG_TOKEN
    return None


def bearer_token_matches(authorization_header: str | None, expected_token: str) -> bool:
    return check_bearer(authorization_header, expected_token) is None


class WebhookSettingsError(ValueError):
    """The webhook must not start with these settings (the message says why)."""


def check_startup_token(token: str) -> None:
    """Refuse to run open or deaf: without a usable token every POST would be a 401."""
    if not token:
        raise WebhookSettingsError(
            "WEBHOOK_TOKEN is not set: the webhook refuses to start without the bearer token "
            "Alertmanager sends (see docs/security.md)"
        )
    if not is_valid_token(token):
        raise WebhookSettingsError(
            "WEBHOOK_TOKEN has characters a Bearer token cannot carry (RFC 6750 b64token: "
            "letters, digits and -._~+/ then optional '='); no client could authenticate"
        )
