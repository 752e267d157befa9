"""Sign-in logic without Streamlit: password hashes, the trusted-proxy rule, roles, lockout."""

from __future__ import annotations

import pytest

from slo_pipeline.settings import ConfigError, load_settings
from streamlit_app import identity, passwords, users
from streamlit_app.identity import FailedSignIns, Identity, NotAllowedError

# A cheap cost keeps the tests fast; the stored parameters are what verification uses.
FAST = {"n": 2**4, "r": 1, "p": 1}


def test_a_password_hash_is_salted_and_verifies_only_the_same_password() -> None:
    first = passwords.hash_password("correct horse battery", **FAST)
    second = passwords.hash_password("correct horse battery", **FAST)
    assert first != second  # a fresh salt each time
    assert first.startswith("scrypt$16$1$1$")
    assert passwords.verify_password("correct horse battery", first)
    assert passwords.verify_password("correct horse battery", second)
    assert not passwords.verify_password("correct horse batterY", first)
    assert not passwords.verify_password("", first)


@pytest.mark.parametrize(
    "stored",
    [None, "", "plain-text-password", "bcrypt$x", "scrypt$16$1$1$not base64!$AAAA", "scrypt$1$1$1$AA==$AA=="],
)
def test_a_malformed_stored_hash_never_verifies(stored: str | None) -> None:
    assert not passwords.verify_password("plain-text-password", stored)


def test_the_password_policy_refuses_short_and_huge_passwords() -> None:
    with pytest.raises(passwords.PasswordPolicyError, match="at least 12"):
        passwords.hash_password("short")
    with pytest.raises(passwords.PasswordPolicyError, match="at most"):
        passwords.hash_password("x" * (passwords.MAX_PASSWORD_CHARS + 1))
    assert not passwords.verify_password("x" * 10_000, passwords.hash_password("y" * 12, **FAST))


TRUSTED = identity.parse_networks("10.0.0.5, 192.168.7.0/24")
HEADER = "X-Forwarded-User"


def test_the_proxy_header_is_believed_only_from_a_trusted_peer() -> None:
    headers = [("x-forwarded-user", "alice@example.org")]
    assert identity.proxy_user(headers, "10.0.0.5", HEADER, TRUSTED) == "alice@example.org"
    assert identity.proxy_user(headers, "192.168.7.200", HEADER, TRUSTED) == "alice@example.org"
    assert identity.proxy_user(headers, "10.0.0.6", HEADER, TRUSTED) is None
    assert identity.proxy_user(headers, "127.0.0.1", HEADER, TRUSTED) is None
    assert identity.proxy_user(headers, None, HEADER, TRUSTED) is None
    assert identity.proxy_user(headers, "not-an-ip", HEADER, TRUSTED) is None
    assert identity.proxy_user(headers, "10.0.0.5", HEADER, ()) is None  # nothing configured


@pytest.mark.parametrize(
    "headers",
    [
        [],
        [("X-Forwarded-User", "")],
        [("X-Forwarded-User", "alice"), ("X-Forwarded-User", "root")],  # one passed through
        [("X-Forwarded-User", "alice\nInjected: yes")],
        [("X-Forwarded-User", "x" * 300)],
        [("X-Forwarded-Email", "alice@example.org")],  # another header
    ],
)
def test_a_missing_doubled_or_malformed_proxy_header_is_refused(headers: list[tuple[str, str]]) -> None:
    assert identity.proxy_user(headers, "10.0.0.5", HEADER, TRUSTED) is None


def test_trusted_proxies_must_be_addresses() -> None:
    with pytest.raises(ValueError, match="not an IP address"):
        identity.parse_networks("10.0.0.5, proxy.example.org")
    assert identity.parse_networks(" , ::1 ,") == identity.parse_networks("::1")


def test_proxy_mode_without_trusted_proxies_is_a_configuration_error(tmp_path) -> None:
    absent = tmp_path / "absent.yml"
    with pytest.raises(ConfigError, match="SLO_PIPELINE_UI_TRUSTED_PROXIES"):
        load_settings(config_path=absent, ui_auth="proxy")
    with pytest.raises(ConfigError, match="not an address"):
        load_settings(config_path=absent, ui_auth="proxy", ui_trusted_proxies="proxy.local")
    assert (
        load_settings(config_path=absent, ui_auth="proxy", ui_trusted_proxies="10.0.0.5").ui_auth == "proxy"
    )


def test_oidc_identity_prefers_email_and_refuses_unusable_claims() -> None:
    assert identity.oidc_user({"email": "bo@example.org", "sub": "123"}) == "bo@example.org"
    assert identity.oidc_user({"sub": "abc-123"}) == "abc-123"
    assert identity.oidc_user({"email": "a b@c", "sub": ""}) is None
    assert identity.oidc_user({}) is None


def test_user_names_are_matched_whole() -> None:
    assert users.validate_name("alice@example.org") == "alice@example.org"
    for bad in ("alice\n", "", "-alice", "al ice", "x" * 201, "ali'ce"):
        with pytest.raises(ValueError, match="not allowed"):
            users.validate_name(bad)


def test_external_users_get_their_stored_role_or_the_default() -> None:
    assert identity.external_role("editor", "viewer") == "editor"
    assert identity.external_role(None, "viewer") == "viewer"
    assert identity.external_role(None, "none") is None


def test_only_editors_may_write() -> None:
    identity.require_editor(Identity("ed", "editor", identity.PASSWORD), "Rollback")
    with pytest.raises(NotAllowedError, match="Rollback needs the editor role; vi is signed in as viewer"):
        identity.require_editor(Identity("vi", "viewer", identity.PROXY), "Rollback")


def test_failed_sign_ins_lock_a_name_until_the_oldest_failure_ages_out() -> None:
    now = [1000.0]
    failures = FailedSignIns(limit=3, window=60.0, clock=lambda: now[0])
    for _ in range(2):
        failures.record_failure("alice")
        now[0] += 1
    assert failures.locked_for("alice") == 0.0
    failures.record_failure("alice")
    assert failures.locked_for("alice") == pytest.approx(58.0)
    assert failures.locked_for("bob") == 0.0  # per name
    now[0] += 58.5
    assert failures.locked_for("alice") == 0.0
    failures.record_failure("alice")
    failures.clear("alice")
    assert failures.locked_for("alice") == 0.0
