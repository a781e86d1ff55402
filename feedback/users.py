"""Manage accounts.

Usage::

    python -m feedback.users add --username alice --password '...' --role clinician
    python -m feedback.users list
    python -m feedback.users reset alice      # a new random password, printed once (or --password '...')
    python -m feedback.users disable alice
    python -m feedback.users enable alice
    python -m feedback.users unlock alice     # lift a lockout after too many failed logins

Roles: clinician (chat and rate), reviewer (also approve training data), admin
(also A/B share, promote and roll back). Passwords are stored as argon2id hashes.
"""

from __future__ import annotations

import argparse
import secrets
import sys

from core.errors import cli_command
from feedback.db import ROLES
from feedback.store import FeedbackStore


@cli_command
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m feedback.users", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    add = sub.add_parser("add", help="create an account")
    add.add_argument("--username", required=True)
    add.add_argument("--password", required=True, help="at least 8 characters")
    add.add_argument("--role", required=True, choices=ROLES)
    sub.add_parser("list", help="accounts, roles and whether they are disabled")
    for name in ("disable", "enable"):
        sub.add_parser(name, help=f"{name} an account (its history stays)").add_argument("username")
    sub.add_parser("unlock", help="lift an account's lockout after failed logins").add_argument("username")
    reset = sub.add_parser("reset", help="set a new password (random and printed once unless --password)")
    reset.add_argument("username")
    reset.add_argument("--password", help="at least 8 characters; default: a random one")
    args = parser.parse_args(argv)

    store = FeedbackStore.open()
    if args.command == "add":
        account = store.add_user(args.username, args.password, args.role)
        print(f"added {account.username} ({account.role})")
    elif args.command == "list":
        users = store.list_users()
        for u in users:
            print(f"{u.username:<24} {u.role:<10} {'disabled' if u.disabled else 'active':<8} "
                  f"{u.created_at:%Y-%m-%d}")
        if not users:
            print("no users yet: add one with `python -m feedback.users add`")
    elif args.command == "reset":
        password = args.password or secrets.token_urlsafe(12)
        store.reset_password(args.username, password)
        print(f"reset {args.username}" + ("" if args.password else f": new password {password} (shown once)"))
    elif args.command == "unlock":
        lifted = store.throttle.unlock(args.username)
        print(f"unlocked {args.username}" if lifted else f"{args.username} had no failed logins to forget")
    else:
        store.set_disabled(args.username, args.command == "disable")
        print(f"{args.command}d {args.username}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
