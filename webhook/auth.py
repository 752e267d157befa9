"""Bearer-token check for Alertmanager's `http_config.authorization` (pure)."""

from __future__ import annotations

import hmac

BEARER_SCHEME = "bearer"


def bearer_token_matches(authorization_header: str | None, expected_token: str) -> bool:
    """True only for `Bearer <expected_token>`; an empty configured token refuses everyone.

    compare_digest runs in time independent of where the strings differ, so the token cannot be
    guessed byte by byte from response times. Bytes, because it rejects non-ASCII str input.
    """
    if not expected_token or not authorization_header:
        return False
    scheme, _, presented = authorization_header.strip().partition(" ")
    if scheme.lower() != BEARER_SCHEME:
        return False
    return hmac.compare_digest(presented.strip().encode("utf-8"), expected_token.encode("utf-8"))
