"""The sign-in gate every page passes: it returns who is signed in, or draws the way to sign in.

Password sign-in keeps the user name in the Streamlit session (server side; the browser holds only
the session's websocket), and re-reads the account on every run, so a removed user or a changed
role takes effect on their next click.
"""

from __future__ import annotations

import logging
import time

import streamlit as st

from slo_pipeline.adapters.postgres import DatabaseError
from slo_pipeline.settings import Settings
from streamlit_app import identity, passwords, users
from streamlit_app.identity import Identity

log = logging.getLogger(__name__)

_SESSION_KEY = "_signed_in_user"
_VERIFIED_KEY = "_signed_in_verified"
_MESSAGE_KEY = "_sign_in_message"
# While PostgreSQL is down, an account checked this recently still counts (with a warning), so
# the pages that do not need the database (Prometheus, MLflow) keep answering.
_DATABASE_OUTAGE_GRACE_SECONDS = 300.0
# Verified when the name is unknown, so a wrong name takes as long as a wrong password.
_DUMMY_HASH = "scrypt$16384$8$1$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="


@st.cache_resource
def _failed_sign_ins() -> identity.FailedSignIns:
    """One counter for the whole UI process (shared by every browser session)."""
    return identity.FailedSignIns()


def signed_in(settings: Settings) -> Identity | None:
    """The signed-in operator, or None after drawing the sign-in page (or why access is refused)."""
    if settings.ui_auth == identity.PROXY:
        return _proxy_identity(settings)
    if settings.ui_auth == identity.OIDC:
        return _oidc_identity(settings)
    return _password_identity(settings)


def sidebar(who: Identity) -> None:
    st.sidebar.caption(f"Signed in as **{who.name}** ({who.role}, {who.method})")
    if who.method == identity.PASSWORD:
        st.sidebar.button("Sign out", key="sign_out", on_click=_sign_out)
    elif who.method == identity.OIDC:
        st.sidebar.button("Sign out", key="sign_out", on_click=st.logout)


def _sign_out() -> None:
    st.session_state.pop(_SESSION_KEY, None)
    st.session_state.pop(_VERIFIED_KEY, None)


def _password_identity(settings: Settings) -> Identity | None:
    name = st.session_state.get(_SESSION_KEY)
    if name:
        try:
            user = users.get_user(settings.database_url, name)
        except DatabaseError as err:
            return _recently_verified(name, err)
        if user is not None and user.password_hash:
            return _verified(Identity(name=user.name, role=user.role, method=identity.PASSWORD))
        st.session_state.pop(_SESSION_KEY, None)
        st.session_state[_MESSAGE_KEY] = f"The account {name!r} was removed or has no password now."
    _sign_in_form(settings)
    return None


def _verified(who: Identity) -> Identity:
    st.session_state[_VERIFIED_KEY] = (who, time.monotonic())
    return who


def _recently_verified(name: str, err: DatabaseError) -> Identity:
    """The account as last read from the database, if that was recent; else the outage stands."""
    cached = st.session_state.get(_VERIFIED_KEY)
    if cached is not None:
        who, at = cached
        if who.name == name and time.monotonic() - at < _DATABASE_OUTAGE_GRACE_SECONDS:
            st.warning(f"Your account could not be re-checked ({err}); using the role read before.")
            return who
    raise err


def _sign_in_form(settings: Settings) -> None:
    st.header("Sign in")
    message = st.session_state.pop(_MESSAGE_KEY, None)
    if message:
        st.error(message)
    with st.form("sign_in"):
        st.text_input("User name", key="sign_in_name", autocomplete="username")
        st.text_input("Password", type="password", key="sign_in_password", autocomplete="current-password")
        st.form_submit_button("Sign in", type="primary", on_click=_check_password, args=(settings,))
    st.caption("Accounts are made with `slo-pipeline ui user add NAME --role viewer|editor`.")


def _check_password(settings: Settings) -> None:
    state = st.session_state
    name = str(state.get("sign_in_name") or "").strip()
    password = str(state.get("sign_in_password") or "")
    state["sign_in_password"] = ""  # never kept in the session after this check
    failures = _failed_sign_ins()
    wait = failures.locked_for(name)
    if wait > 0:
        state[_MESSAGE_KEY] = f"Too many failed sign-ins for {name!r}: try again in {wait:.0f} s."
        return
    try:
        user = users.get_user(settings.database_url, name) if name else None
    except DatabaseError as err:
        state[_MESSAGE_KEY] = f"Cannot sign in: {err}"
        return
    stored = user.password_hash if user is not None else None
    if passwords.verify_password(password, stored or _DUMMY_HASH) and user is not None and stored:
        failures.clear(name)
        state[_SESSION_KEY] = user.name
        log.info("UI sign-in: %s (%s)", user.name, user.role)
        return
    failures.record_failure(name)
    log.warning("UI sign-in refused for user name %r", name[:200])
    state[_MESSAGE_KEY] = "Wrong user name or password."


def _proxy_identity(settings: Settings) -> Identity | None:
    trusted = identity.parse_networks(settings.ui_trusted_proxies)
    name = identity.proxy_user(
        list(st.context.headers.items()), _peer_address(), settings.ui_proxy_user_header, trusted
    )
    if name is None:
        st.header("Not signed in")
        st.error(
            "This UI accepts only users signed in by the authenticating proxy "
            f"({settings.ui_trusted_proxies}), which passes the user in the "
            f"`{settings.ui_proxy_user_header}` header. Open it through the proxy."
        )
        return None
    return _external(settings, name, identity.PROXY)


def _oidc_identity(settings: Settings) -> Identity | None:
    if not st.user.is_logged_in:
        st.header("Sign in")
        provider = settings.ui_oidc_provider.strip()
        st.button(
            "Sign in with single sign-on",
            type="primary",
            key="oidc_sign_in",
            on_click=st.login,
            args=(provider,) if provider else (),
        )
        return None
    name = identity.oidc_user(st.user.to_dict())
    if name is None:
        st.error("The identity provider gave no usable user name (email, preferred_username or sub).")
        return None
    return _external(settings, name, identity.OIDC)


def _external(settings: Settings, name: str, method: str) -> Identity | None:
    try:
        user = users.get_user(settings.database_url, name)
    except DatabaseError as err:
        return _recently_verified(name, err)
    role = identity.external_role(user.role if user else None, settings.ui_default_role)
    if role is None:
        st.error(
            f"{name} has no access to this UI. An administrator can grant it with "
            f"`slo-pipeline ui user add {name} --role viewer --no-password`."
        )
        return None
    return _verified(Identity(name=name, role=role, method=method))


def _peer_address() -> str | None:
    """The TCP peer of this browser session's websocket (not a header a client could forge).

    `st.context.ip_address` hides loopback peers (None), which is exactly the address a proxy on
    the same host has, so the session's client context is read instead.
    """
    from streamlit import runtime
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    ctx = get_script_run_ctx()
    if ctx is None or not runtime.exists():
        return None
    client = runtime.get_instance().get_client(ctx.session_id)
    context = getattr(client, "client_context", None)
    peer = getattr(context, "remote_ip", None)
    return peer if isinstance(peer, str) else None
