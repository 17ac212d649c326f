"""`tembo users ...` and `tembo tokens ...`: accounts and API tokens, from the machine the store is on.

Whoever runs these holds the store (its URL and file), so they act as the admin
`console:<login name>`; every change is in the audit log under that name. Passwords come from a
prompt (asked twice), from one line of standard input (`--password-stdin`, for scripts), or are
generated (`--generate`) and printed once; never from the command line, where `ps` and the shell
history would keep them. A token's secret is printed once, when it is made; the store keeps only
its hash.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from datetime import timedelta
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from lora_bridge.access import Viewer
    from lora_bridge.service import Bridge

# The accounts `tembo demo` makes, one per role that signs in: username -> role.
DEMO_ACCOUNTS = {
    "ranger": "ranger",
    "researcher": "researcher",
    "technician": "field_technician",
    "admin": "admin",
}


def console_actor() -> Viewer:
    """The admin the command line acts as: `console:<login name of this process>`."""
    from lora_bridge.access import ADMIN, Viewer

    try:
        who = getpass.getuser()
    except Exception:  # no login name (a container without one): still say where it came from
        who = "unknown"
    return Viewer(f"console:{who}"[:64], ADMIN)


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Register `users` and `tokens` on the tembo parser."""
    from lora_bridge.access import ROLES

    roles = sorted(ROLES)
    store = argparse.ArgumentParser(add_help=False)
    store.add_argument("--database-url", default=None, help="the store (default: TEMBO_DATABASE_URL or the embedded one)")
    users = sub.add_parser(
        "users", help="accounts that sign in to the dashboard: add, list, remove, passwd, role, unlock, lockouts, sessions, signout"
    )
    users_sub = users.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = users_sub.add_parser("add", parents=[store], help="add an account (password prompted, from stdin, or generated)")
    add.add_argument("username")
    add.add_argument("--role", required=True, choices=roles)
    _password_source(add)
    users_sub.add_parser("list", parents=[store], help="list the accounts")
    remove = users_sub.add_parser("remove", parents=[store], help="remove an account; its tokens are revoked, its sign-ins end")
    remove.add_argument("username")
    passwd = users_sub.add_parser("passwd", parents=[store], help="set a new password; open sign-ins end")
    passwd.add_argument("username")
    _password_source(passwd)
    role = users_sub.add_parser("role", parents=[store], help="give an account another role; its sign-ins end")
    role.add_argument("username")
    role.add_argument("--role", required=True, choices=roles)
    unlock = users_sub.add_parser("unlock", parents=[store],
                                  help="lift a sign-in lockout of a username and/or a client address")
    unlock.add_argument("username", nargs="?", default=None)
    unlock.add_argument("--client", default=None, help="the client address to unlock (dashboard and API)")
    users_sub.add_parser("lockouts", parents=[store], help="usernames and addresses with failed attempts or a lock")
    sessions = users_sub.add_parser("sessions", parents=[store], help="live dashboard sign-ins (never their secrets)")
    sessions.add_argument("--all", action="store_true", help="ended and expired ones too")
    sign_out = users_sub.add_parser("signout", parents=[store], help="end every open sign-in of an account now")
    sign_out.add_argument("username")
    users.set_defaults(func=run_users)

    tokens = sub.add_parser("tokens", help="API tokens (stored hashed): create, list, revoke")
    tokens_sub = tokens.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = tokens_sub.add_parser("create", parents=[store], help="make a token; its secret is printed once")
    create.add_argument("--owner", required=True, help="the account the token acts for")
    create.add_argument("--name", required=True, help="what uses it (e.g. 'earthranger sync')")
    create.add_argument("--role", choices=roles, default=None, help="the owner's role (default) or visitor")
    create.add_argument("--expires-days", type=float, default=None, help="valid for this many days (default: until revoked)")
    tokens_sub.add_parser("list", parents=[store], help="list tokens (never their secrets)")
    revoke = tokens_sub.add_parser("revoke", parents=[store], help="revoke a token by id")
    revoke.add_argument("token_id", type=int)
    tokens.set_defaults(func=run_tokens)


def _password_source(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--generate", action="store_true", help="generate a password and print it once")
    group.add_argument("--password-stdin", action="store_true", help="read the password from one line of stdin")


def _password(args: argparse.Namespace) -> tuple[str, bool]:
    """(password, generated) from the source the arguments name."""
    from lora_bridge.access.passwords import check_strength, generate_password

    if args.generate:
        return generate_password(), True
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n"), False
    if not sys.stdin.isatty():
        raise ValueError("no terminal to ask for a password: use --password-stdin or --generate")
    first = getpass.getpass("Password: ")
    check_strength(first)
    if getpass.getpass("Same password again: ") != first:
        raise ValueError("the two passwords differ")
    return first, False


def _open(args: argparse.Namespace) -> Bridge:
    from lora_bridge.service import open_bridge

    return open_bridge(args.database_url) if args.database_url else open_bridge()


def run_users(args: argparse.Namespace) -> int:
    """`tembo users ACTION`."""
    from lora_bridge.errors import BridgeError
    from lora_bridge.store.utc import utc_now

    actor = console_actor()
    try:
        with _open(args) as bridge:
            if args.action == "add":
                password, generated = _password(args)
                bridge.add_user(args.username, args.role, password, actor=actor)
                print(f"account {args.username} ({args.role}) added")
                if generated:
                    print(f"password: {password}  (shown once; store it in a password manager)")
            elif args.action == "list":
                table = Table("username", "role", "created (UTC)", "password changed (UTC)")
                for account in bridge.users(viewer=actor):
                    table.add_row(account.username, account.role, _time(account.created_at),
                                  _time(account.password_changed_at))
                _console().print(table)
            elif args.action == "remove":
                bridge.remove_user(args.username, actor=actor)
                print(f"account {args.username} removed; its tokens are revoked and its sign-ins ended")
            elif args.action == "passwd":
                password, generated = _password(args)
                bridge.set_password(args.username, password, actor=actor)
                print(f"password of {args.username} changed; its open sign-ins ended")
                if generated:
                    print(f"password: {password}  (shown once)")
            elif args.action == "role":
                bridge.set_role(args.username, args.role, actor=actor)
                print(f"account {args.username} is now {args.role}; its open sign-ins ended")
            elif args.action == "unlock":
                cleared = bridge.unlock(actor=actor, username=args.username, client=args.client)
                what = " and ".join(x for x in (args.username, args.client and f"client {args.client}") if x)
                print(f"{what}: unlocked" if cleared else f"{what}: was not locked and had no failed attempts")
            elif args.action == "signout":
                ended = bridge.end_sessions(args.username, actor=actor)
                print(f"{ended} sign-in(s) of {args.username} ended")
            elif args.action == "lockouts":
                now = utc_now()
                table = Table("scope", "username or address", "failures", "locks in a row", "last failure (UTC)",
                              "locked until (UTC)")
                for row in bridge.lockouts(viewer=actor):
                    table.add_row(row.scope, row.key, str(row.failures), str(row.locks), _time(row.last_failure_at),
                                  _time(row.locked_until) if row.locked_until and row.locked_until > now else "-")
                _console().print(table)
            elif args.action == "sessions":
                now = utc_now()
                table = Table("id", "username", "role", "client", "signed in (UTC)", "last seen (UTC)",
                              "expires (UTC)", "state")
                for row in bridge.sessions(viewer=actor, include_ended=args.all):
                    state = row.end_reason or "ended" if row.ended_at else ("live" if row.active(now) else "expired")
                    table.add_row(str(row.session_id), row.username, row.role, row.client or "-",
                                  _time(row.created_at), _time(row.last_seen_at), _time(row.expires_at), state)
                _console().print(table)
    except (BridgeError, ValueError) as error:
        print(f"tembo users {args.action}: {error}", file=sys.stderr)
        return 1
    return 0


def run_tokens(args: argparse.Namespace) -> int:
    """`tembo tokens ACTION`."""
    from lora_bridge.errors import BridgeError
    from lora_bridge.store.utc import utc_now

    actor = console_actor()
    try:
        with _open(args) as bridge:
            if args.action == "create":
                expires = utc_now() + timedelta(days=args.expires_days) if args.expires_days else None
                made = bridge.create_token(args.owner, args.name, args.role, expires, actor=actor)
                print(f"token {made.view.token_id} for {made.view.owner} ({made.view.role})"
                      + (f", expires {_time(made.view.expires_at)} UTC" if made.view.expires_at else ""))
                print(f"secret: {made.secret}  (shown once; send it as 'Authorization: Bearer <secret>')")
            elif args.action == "list":
                now = utc_now()
                table = Table("id", "name", "starts with", "owner", "role", "created (UTC)", "expires (UTC)",
                              "last used (UTC)", "state")
                for token in bridge.tokens(viewer=actor):
                    state = "revoked" if token.revoked_at else ("active" if token.active(now) else "expired")
                    table.add_row(str(token.token_id), token.name, token.prefix + "…", token.owner, token.role,
                                  _time(token.created_at), _time(token.expires_at), _time(token.last_used_at), state)
                _console().print(table)
            elif args.action == "revoke":
                view = bridge.revoke_token(args.token_id, actor=actor)
                print(f"token {view.token_id} ({view.name}) revoked")
    except (BridgeError, ValueError) as error:
        print(f"tembo tokens {args.action}: {error}", file=sys.stderr)
        return 1
    return 0


def create_demo_accounts(bridge: Bridge) -> list[tuple[str, str, str]]:
    """One account per signing-in role with a fresh random password: (username, role, password).
    An account that exists already gets a new password."""
    from lora_bridge.access.passwords import generate_password
    from lora_bridge.errors import UnknownAccount

    actor = console_actor()
    made = []
    for username, role in DEMO_ACCOUNTS.items():
        password = generate_password()
        try:
            bridge.set_password(username, password, actor=actor)
        except UnknownAccount:
            bridge.add_user(username, role, password, actor=actor)
        made.append((username, role, password))
    return made


def _time(value: object) -> str:
    return value.strftime("%Y-%m-%d %H:%M") if value is not None else "-"  # type: ignore[attr-defined]


def _console() -> Console:
    """A console for the tables: the terminal's width, or wide enough not to wrap when piped."""
    return Console() if sys.stdout.isatty() else Console(width=200)
