"""Accounts: password hashing (argon2id, memory-hard) and who may do what.

Roles nest: a reviewer can do what a clinician can, an admin what a reviewer can.

>>> can("reviewer", "review"), can("clinician", "review"), can("admin", "promote")
(True, False, True)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from core.errors import OncoLoopError
from feedback.db import ROLES

ACTIONS = {
    "clinician": ("ask", "rate"),
    "reviewer": ("ask", "rate", "review"),
    "admin": ("ask", "rate", "review", "promote", "rollback", "ab_share", "manage_users"),
}
MIN_PASSWORD = 8
MAX_PASSWORD = 1024  # argon2 copes with more; a cap stops megabyte "passwords" from costing CPU
_USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")

# argon2id, 19 MiB, 2 passes, 1 lane: OWASP's recommended minimum. ~0.1 s per login on a 2-core
# CI machine, where argon2-cffi's default (64 MiB, 3 passes, 4 lanes) takes ~0.6 s. Hashes carry their
# parameters, so raising these later rehashes each account at its next login.
_hasher = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)


@dataclass(frozen=True)
class Account:
    """A logged-in user as the UI holds it; carries no password material."""

    id: int
    username: str
    role: str

    def can(self, action: str) -> bool:
        return can(self.role, action)


def can(role: str, action: str) -> bool:
    """Whether ``role`` may perform ``action`` (see ``ACTIONS``)."""
    return action in ACTIONS.get(role, ())


def require(account: Account, action: str) -> None:
    """Raise unless ``account`` may perform ``action``.

    Raises:
        OncoLoopError: naming the role that is needed.
    """
    if not can(account.role, action):
        needed = [r for r in ROLES if can(r, action)]
        raise OncoLoopError(
            f"{account.username} is a {account.role} and may not {action.replace('_', ' ')}; "
            f"this needs the role {' or '.join(needed) or 'nobody'}. Ask an admin to change your role."
        )


def check_username(username: str) -> str:
    """The username, if valid.

    >>> check_username("dr.smith")
    'dr.smith'
    """
    if not _USERNAME.match(username or ""):
        raise OncoLoopError(f"{username!r} is not a valid username: use 1-64 letters, digits, '.', '_', '@' or '-'.")
    return username


def check_role(role: str) -> str:
    if role not in ROLES:
        raise OncoLoopError(f"unknown role {role!r}; use one of {', '.join(ROLES)}.")
    return role


def hash_password(password: str) -> str:
    """An argon2id hash of a password of acceptable length.

    Raises:
        OncoLoopError: the password is too short or too long.
    """
    if len(password) < MIN_PASSWORD:
        raise OncoLoopError(f"the password is too short: use at least {MIN_PASSWORD} characters.")
    if len(password) > MAX_PASSWORD:
        raise OncoLoopError(f"the password is too long: use at most {MAX_PASSWORD} characters.")
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    """Whether ``password`` matches; False (not an exception) for a wrong one or a corrupt hash."""
    if len(password) > MAX_PASSWORD:
        return False
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    """Whether a stored hash used older parameters than today's (rehash at the next login)."""
    try:
        return _hasher.check_needs_rehash(password_hash)
    except InvalidHashError:
        return True


@lru_cache(maxsize=1)
def dummy_hash() -> str:
    """A hash to verify against when the username is unknown, so both failures take as long."""
    return _hasher.hash("not-a-real-password")
