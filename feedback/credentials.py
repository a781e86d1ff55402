"""Credentials for commands that change what is served: an account of the store, its password, its role.

Commands that move a registry alias (``eval.promote``, ``eval.rollback``, ``serve.registry alias``) take
``--user NAME`` and read the password from ``--password-file``, ``$ONCOLOOP_PASSWORD`` (for scripts) or the
terminal. Wrong passwords count towards the login lockout like the UI's (``feedback.throttle``).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from core.errors import OncoLoopError
from feedback.auth import Account

PASSWORD_ENV = "ONCOLOOP_PASSWORD"


def read_password(password_file: Path | None = None) -> str:
    """The password: from a file, from ``$ONCOLOOP_PASSWORD``, or typed at a terminal.

    Raises:
        OncoLoopError: none of these available.
    """
    if password_file is not None:
        try:
            return password_file.read_text(encoding="utf-8").strip()
        except OSError as e:
            raise OncoLoopError(f"cannot read the password file {password_file}: {e}") from None
    if os.environ.get(PASSWORD_ENV):
        return os.environ[PASSWORD_ENV]
    if sys.stdin.isatty():
        import getpass

        return getpass.getpass("password: ")
    raise OncoLoopError(f"no password: set {PASSWORD_ENV}, pass --password-file FILE, or run at a terminal.")


def authorize(store, username: str, password: str, action: str) -> Account:
    """The account, if the password is right and its role may do ``action`` (e.g. promote or rollback).

    Raises:
        OncoLoopError: wrong username or password, a lockout, a disabled account, or a role without the permission.
    """
    return store.require(store.authenticate(username, password), action)
