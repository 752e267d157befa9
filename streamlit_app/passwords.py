"""Salted password hashes for the UI's local users (hashlib.scrypt, RFC 7914). Pure.

Stored as `scrypt$N$r$p$salt$key` (salt and key base64), so the cost can be raised later
without invalidating older hashes: each hash carries the parameters it was made with.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

SCHEME = "scrypt"
# N=2^14, r=8, p=1: 16 MiB and a fraction of a second per sign-in on a small machine (the
# parameters Python's documentation and RFC 7914 use for interactive logins). Each hash stores
# its own parameters, so raising the cost later keeps existing passwords working.
COST_N = 2**14
BLOCK_R = 8
PARALLEL_P = 1
SALT_BYTES = 16
KEY_BYTES = 32
MIN_PASSWORD_CHARS = 12
MAX_PASSWORD_CHARS = 1024


class PasswordPolicyError(ValueError):
    """The password cannot be used; the message says why."""


def check_policy(password: str) -> None:
    if len(password) < MIN_PASSWORD_CHARS:
        raise PasswordPolicyError(f"a password needs at least {MIN_PASSWORD_CHARS} characters")
    if len(password) > MAX_PASSWORD_CHARS:
        raise PasswordPolicyError(f"a password may have at most {MAX_PASSWORD_CHARS} characters")


def hash_password(password: str, *, n: int = COST_N, r: int = BLOCK_R, p: int = PARALLEL_P) -> str:
    check_policy(password)
    salt = secrets.token_bytes(SALT_BYTES)
    key = _derive(password, salt, n, r, p)
    return "$".join([SCHEME, str(n), str(r), str(p), _b64(salt), _b64(key)])


def verify_password(password: str, encoded: str | None) -> bool:
    """True when `password` matches; False for any other input, a malformed hash included."""
    if not encoded or len(password) > MAX_PASSWORD_CHARS:
        return False
    try:
        scheme, n, r, p, salt, key = encoded.split("$")
        if scheme != SCHEME:
            return False
        expected = base64.b64decode(key, validate=True)
        actual = _derive(password, base64.b64decode(salt, validate=True), int(n), int(r), int(p))
    except ValueError:
        return False
    return hmac.compare_digest(expected, actual)


def _derive(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    # maxmem above OpenSSL's 32 MiB default, so a hash made with a higher cost still verifies.
    return hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=256 * 1024 * 1024, dklen=KEY_BYTES
    )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
