"""Who is using the UI and what they may do. Pure: the Streamlit side is in ui_signin.py.

Three ways to sign in (`SLO_PIPELINE_UI_AUTH`): a local password (`ui_users`), a user name in a
header set by an authenticating proxy (oauth2-proxy style), trusted only from the configured
proxy addresses, or OIDC through Streamlit's own `st.login`. Every way ends in one `Identity`,
and every write in the UI records `Identity.name`.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from streamlit_app.users import EDITOR, NAME_PATTERN, VIEWER

PASSWORD = "password"
PROXY = "proxy"
OIDC = "oidc"
METHODS = (PASSWORD, PROXY, OIDC)


class NotAllowedError(Exception):
    """The signed-in user's role does not allow this action."""


@dataclass(frozen=True)
class Identity:
    name: str
    role: str  # viewer | editor
    method: str  # one of METHODS

    @property
    def can_edit(self) -> bool:
        return self.role == EDITOR


def require_editor(identity: Identity, action: str) -> None:
    """Checked inside every write, not only by disabling its widget: the server decides."""
    if not identity.can_edit:
        raise NotAllowedError(
            f"{action} needs the editor role; {identity.name} is signed in as {identity.role}"
        )


def parse_networks(text: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """`10.0.0.5, 10.1.0.0/16, ::1` -> networks; raises ValueError naming the bad entry."""
    networks = []
    for entry in (part.strip() for part in text.split(",")):
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError as err:
            raise ValueError(f"{entry!r} is not an IP address or network: {err}") from err
    return tuple(networks)


def proxy_user(
    headers: Iterable[tuple[str, str]],
    peer: str | None,
    header: str,
    trusted: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network],
) -> str | None:
    """The user name a trusted proxy vouches for, or None.

    None unless the TCP peer is one of the trusted proxy addresses: anyone else could send the
    header themselves. A value that is not a valid user name, or a header sent twice, is
    refused rather than cleaned up.
    """
    if peer is None or not trusted:
        return None
    try:
        address = ipaddress.ip_address(peer)
    except ValueError:
        return None
    if not any(address in network for network in trusted):
        return None
    wanted = header.lower()
    values = [v for k, v in headers if k.lower() == wanted]
    # Two copies mean the proxy passed one through from the client: believe neither.
    if len(values) != 1:
        return None
    value = values[0].strip()
    return value if NAME_PATTERN.fullmatch(value) else None


def oidc_user(claims: Mapping[str, object]) -> str | None:
    """The name an OIDC sign-in is known by: e-mail if the provider gives one, else `sub`."""
    for claim in ("email", "preferred_username", "sub"):
        value = claims.get(claim)
        if isinstance(value, str) and NAME_PATTERN.fullmatch(value.strip()):
            return value.strip()
    return None


def external_role(stored_role: str | None, default_role: str) -> str | None:
    """The role of a proxy/OIDC user: `ui_users` if listed there, else the default (None = refuse)."""
    if stored_role is not None:
        return stored_role
    return default_role if default_role in (VIEWER, EDITOR) else None


@dataclass
class FailedSignIns:
    """Slows password guessing: after `limit` failures for one name within `window` seconds,
    that name is locked until the oldest failure ages out. Kept in the UI process."""

    limit: int = 5
    window: float = 300.0
    clock: Callable[[], float] = time.monotonic
    _failures: dict[str, list[float]] = field(default_factory=dict)

    def locked_for(self, name: str) -> float:
        """Seconds until `name` may try again (0 = now)."""
        recent = self._recent(name)
        if len(recent) < self.limit:
            return 0.0
        return max(0.0, recent[0] + self.window - self.clock())

    def record_failure(self, name: str) -> None:
        self._failures[name] = [*self._recent(name), self.clock()]
        if len(self._failures) > 10_000:  # never grows without bound under a spray of names
            self._failures.clear()

    def clear(self, name: str) -> None:
        self._failures.pop(name, None)

    def _recent(self, name: str) -> list[float]:
        cutoff = self.clock() - self.window
        return [t for t in self._failures.get(name, []) if t > cutoff]
