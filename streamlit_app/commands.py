"""Subcommands `ui user add|set|remove|list`: the operator accounts of the Streamlit UI.

Passwords are read from standard input (the first line when piped; asked twice on a terminal), never from
the command line, where `ps` and shell history would show them. Exit codes: 0 done, 1 the
database failed, 2 bad input (name, role, password, an existing or missing user).
"""

from __future__ import annotations

import argparse
import getpass
import sys

EXIT_FAILED = 1
EXIT_INVALID = 2


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    ui = subparsers.add_parser("ui", help="operator UI administration")
    ui_actions = ui.add_subparsers(dest="ui_command", metavar="ACTION", required=True)
    user = ui_actions.add_parser("user", help="manage who may sign in to the UI, with which role")
    actions = user.add_subparsers(dest="user_command", metavar="ACTION", required=True)

    add = actions.add_parser(
        "add",
        help="create a user; the password is read from stdin",
        description="Create a UI user. The password is read from standard input (at least 12 "
        "characters); with --no-password the row only grants a role to a proxy/OIDC identity.",
    )
    add.add_argument("name")
    add.add_argument("--role", required=True, choices=["viewer", "editor"])
    add.add_argument("--no-password", action="store_true", help="for proxy/OIDC sign-in only")
    add.set_defaults(handler=_add)

    change = actions.add_parser("set", help="change a user's role and/or password (stdin)")
    change.add_argument("name")
    change.add_argument("--role", choices=["viewer", "editor"], default=None)
    change.add_argument("--password", action="store_true", help="read a new password from stdin")
    change.set_defaults(handler=_set)

    remove = actions.add_parser("remove", help="delete a user; their open sessions end on the next click")
    remove.add_argument("name")
    remove.set_defaults(handler=_remove)

    listing = actions.add_parser("list", help="users and roles (never the hashes)")
    listing.set_defaults(handler=_list)

    serve = ui_actions.add_parser(
        "serve",
        help="run the operator UI (`streamlit run` of the installed app)",
        description="Start Streamlit on the app this package installed, so a wheel or container "
        "needs no source checkout. Streamlit settings come from its usual places (STREAMLIT_* "
        "variables, .streamlit/config.toml).",
    )
    serve.add_argument("--listen", default="127.0.0.1:8501", metavar="HOST:PORT", help="bind address")
    serve.set_defaults(handler=_serve)


def _serve(args: argparse.Namespace) -> int:
    """Become `streamlit run` (exec, so signals and the exit code are Streamlit's own)."""
    import os
    from pathlib import Path

    host, _, port = args.listen.rpartition(":")
    if not host or not port.isdigit():
        print(f"--listen must be HOST:PORT, got {args.listen!r}", file=sys.stderr)
        return EXIT_INVALID
    app = Path(__file__).with_name("app.py")
    argv = [sys.executable, "-m", "streamlit", "run", str(app)]
    argv += [f"--server.address={host}", f"--server.port={port}"]
    os.execv(sys.executable, argv)


def _read_password() -> str:
    if sys.stdin.isatty():
        first = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != first:
            raise ValueError("the two passwords differ")
        return first
    # Piped: the first line, without its line break (a trailing newline is never part of it).
    return sys.stdin.readline().rstrip("\r\n")


def _add(args: argparse.Namespace) -> int:
    from slo_pipeline.adapters.postgres import DatabaseError
    from slo_pipeline.settings import load_settings
    from streamlit_app import passwords, users

    try:
        users.validate_name(args.name)
        password_hash = None if args.no_password else passwords.hash_password(_read_password())
        users.add_user(load_settings().database_url, args.name, args.role, password_hash)
    except ValueError as err:
        print(f"ui user add: {err}", file=sys.stderr)
        return EXIT_INVALID
    except DatabaseError as err:  # names the server, never the password
        print(f"ui user add: {err}", file=sys.stderr)
        return EXIT_FAILED
    print(f"user {args.name} added as {args.role}" + (" (no password)" if args.no_password else ""))
    return 0


def _set(args: argparse.Namespace) -> int:
    from slo_pipeline.adapters.postgres import DatabaseError
    from slo_pipeline.settings import load_settings
    from streamlit_app import passwords, users

    if args.role is None and not args.password:
        print("ui user set: give --role and/or --password", file=sys.stderr)
        return EXIT_INVALID
    try:
        password_hash = passwords.hash_password(_read_password()) if args.password else None
        changed = users.update_user(load_settings().database_url, args.name, args.role, password_hash)
    except ValueError as err:
        print(f"ui user set: {err}", file=sys.stderr)
        return EXIT_INVALID
    except DatabaseError as err:
        print(f"ui user set: {err}", file=sys.stderr)
        return EXIT_FAILED
    if not changed:
        print(f"ui user set: no user named {args.name!r}", file=sys.stderr)
        return EXIT_INVALID
    print(f"user {args.name} changed")
    return 0


def _remove(args: argparse.Namespace) -> int:
    from slo_pipeline.adapters.postgres import DatabaseError
    from slo_pipeline.settings import load_settings
    from streamlit_app import users

    try:
        removed = users.remove_user(load_settings().database_url, args.name)
    except DatabaseError as err:
        print(f"ui user remove: {err}", file=sys.stderr)
        return EXIT_FAILED
    if not removed:
        print(f"ui user remove: no user named {args.name!r}", file=sys.stderr)
        return EXIT_INVALID
    print(f"user {args.name} removed")
    return 0


def _list(args: argparse.Namespace) -> int:
    from slo_pipeline.adapters.postgres import DatabaseError
    from slo_pipeline.settings import load_settings
    from streamlit_app import users

    try:
        rows = users.list_users(load_settings().database_url)
    except DatabaseError as err:
        print(f"ui user list: {err}", file=sys.stderr)
        return EXIT_FAILED
    for user in rows:
        print(f"{user.name}\t{user.role}\t{'password' if user.password_hash else 'proxy/oidc only'}")
    return 0
