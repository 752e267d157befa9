"""Credentials out of text meant for logs, errors and pages (pure).

A tracking or database URI may carry `user:password@`; MLflow and the drivers repeat the URI in
their own error messages, so whole messages are redacted, not only the URI we format ourselves.
"""

from __future__ import annotations

import re

# scheme://userinfo@ : the userinfo (anything up to the last '@' before the host) is replaced.
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)[^/\s@'\"]+@")


def redact_credentials(text: str) -> str:
    """`text` with the user and password of every URL in it replaced by `***`."""
    return _USERINFO.sub(r"\g<scheme>***@", text)
