"""The UI's operator accounts in PostgreSQL (`ui_users`): who may sign in, with which role."""

from __future__ import annotations

import re
from dataclasses import dataclass

from streamlit_app import pg

VIEWER = "viewer"
EDITOR = "editor"
ROLES = (VIEWER, EDITOR)
# The same rule as the table's CHECK: also fits e-mail addresses that OIDC and proxies pass on.
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@+-]{0,199}$")


class UserExistsError(ValueError):
    """`add` of a name that is already taken."""


@dataclass(frozen=True)
class User:
    name: str
    role: str
    password_hash: str | None  # None: no local password, the role applies to proxy/OIDC sign-in

    @property
    def can_edit(self) -> bool:
        return self.role == EDITOR


def validate_name(name: str) -> str:
    if not NAME_PATTERN.fullmatch(name):
        raise ValueError(
            f"user name {name[:60]!r} is not allowed: 1-200 characters of letters, digits and _.@+- "
            "starting with a letter or digit"
        )
    return name


def validate_role(role: str) -> str:
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
    return role


def get_user(database_url: str, name: str) -> User | None:
    if not NAME_PATTERN.fullmatch(name):
        return None
    rows = pg.fetch_all(
        database_url, "SELECT name, role, password_hash FROM ui_users WHERE name = %s", [name]
    )
    return User(**rows[0]) if rows else None


def list_users(database_url: str) -> list[User]:
    rows = pg.fetch_all(database_url, "SELECT name, role, password_hash FROM ui_users ORDER BY name")
    return [User(**row) for row in rows]


def add_user(database_url: str, name: str, role: str, password_hash: str | None) -> None:
    validate_name(name)
    validate_role(role)
    inserted = pg.execute(
        database_url,
        "INSERT INTO ui_users (name, role, password_hash) VALUES (%s, %s, %s) ON CONFLICT (name) DO NOTHING",
        [name, role, password_hash],
    )
    if inserted != 1:
        raise UserExistsError(f"user {name!r} already exists (use `ui user set` to change it)")


def update_user(database_url: str, name: str, role: str | None, password_hash: str | None) -> bool:
    """Change the role and/or the password of an existing user; False when there is no such user."""
    if role is not None:
        validate_role(role)
    touched = pg.execute(
        database_url,
        """
        UPDATE ui_users
           SET role = COALESCE(%s, role), password_hash = COALESCE(%s, password_hash), updated_at = now()
         WHERE name = %s
        """,
        [role, password_hash, name],
    )
    return touched == 1


def remove_user(database_url: str, name: str) -> bool:
    return pg.execute(database_url, "DELETE FROM ui_users WHERE name = %s", [name]) == 1
