"""Gateway keys: every request to the gateway but ``/health`` carries ``Authorization: Bearer <key>``.

Usage::

    python -m feedback.keys create --name lab-notebook --scopes chat      # prints the key once
    python -m feedback.keys create --name nightly-eval --scopes eval
    python -m feedback.keys list
    python -m feedback.keys revoke lab-notebook

Scopes: ``chat`` (chat completions, the model list, ``/ready``'s summary), ``eval`` (also the guard's
``audit`` mode and ``/ready?details=true``: engine URLs and process ids), ``admin`` (everything). The store
keeps the SHA-256 of each key, never the key: a key is 256 random bits, so a fast hash is as good as a slow
one here, and a stolen database gives no usable key. A lost key is revoked and a new one created.

OncoLoop's own clients (the UI, evaluation, retrain, benchmarks) need no manual step: :func:`client_key`
returns ``$ONCOLOOP_API_KEY`` when set, else a key of the component's own created once and kept, owner-only,
in ``$ONCOLOOP_HOME/keys/<component>.key`` (the key named ``local-<component>`` in ``list``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import fcntl
import hashlib
import re
import secrets
import sys
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import select, update

from core.errors import OncoLoopError, cli_command
from core.settings import Settings, get_settings, private_dir
from feedback.db import ApiKeyRow, Store, open_store, utcnow

SCOPES = ("chat", "eval", "admin")
API_KEY_ENV = "ONCOLOOP_API_KEY"
KEY_PREFIX = "onk_"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def key_hash(secret: str) -> str:
    """The stored form of a key.

    >>> key_hash("onk_example")[:16]
    '9012b09261544b0a'
    """
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def check_scopes(scopes: Iterable[str]) -> tuple[str, ...]:
    """The scopes, de-duplicated in the order of :data:`SCOPES`.

    >>> check_scopes(["eval", "chat", "eval"])
    ('chat', 'eval')

    Raises:
        OncoLoopError: none given, or one that is not chat, eval or admin.
    """
    given = {s.strip() for s in scopes if s.strip()}
    unknown = sorted(given - set(SCOPES))
    if unknown or not given:
        raise OncoLoopError(f"scopes must be one or more of {', '.join(SCOPES)}"
                            + (f", not {', '.join(unknown)}" if unknown else "") + ".")
    return tuple(s for s in SCOPES if s in given)


@dataclass(frozen=True)
class ApiKey:
    """A key as the store knows it (its secret is never kept)."""

    id: int
    name: str
    scopes: tuple[str, ...]
    prefix: str
    created_at: dt.datetime
    revoked_at: dt.datetime | None = None

    def allows(self, *scopes: str) -> bool:
        """Whether the key has any of ``scopes`` (``admin`` has them all)."""
        return "admin" in self.scopes or any(s in self.scopes for s in scopes)


def _view(row: ApiKeyRow) -> ApiKey:
    return ApiKey(row.id, row.name, tuple(row.scopes), row.prefix, row.created_at, row.revoked_at)


class KeyStore:
    """Create, list, revoke and check gateway keys in the store."""

    def __init__(self, store: Store):
        self.store = store

    def create(self, name: str, scopes: Iterable[str]) -> tuple[ApiKey, str]:
        """A new key: its record and its secret (shown to the person once, then only its hash remains).

        Raises:
            OncoLoopError: a bad name or scope, or an active key with that name already.
        """
        if not _NAME.match(name or ""):
            raise OncoLoopError(f"key name {name!r}: use 1-64 letters, digits, '.', '_' or '-'.")
        scopes = check_scopes(scopes)
        secret = KEY_PREFIX + secrets.token_urlsafe(32)
        with self.store.session() as s, s.begin():
            if s.scalar(select(ApiKeyRow.id).where(ApiKeyRow.name == name, ApiKeyRow.revoked_at.is_(None))):
                raise OncoLoopError(f"an active key named {name!r} exists; revoke it first "
                                    f"(`python -m feedback.keys revoke {name}`) or choose another name.")
            row = ApiKeyRow(name=name, key_hash=key_hash(secret), prefix=secret[:len(KEY_PREFIX) + 6],
                            scopes=list(scopes), created_at=utcnow())
            s.add(row)
            s.flush()
            return _view(row), secret

    def list(self) -> list[ApiKey]:
        """Every key, revoked ones too, oldest first."""
        with self.store.session() as s:
            return [_view(r) for r in s.scalars(select(ApiKeyRow).order_by(ApiKeyRow.id))]

    def revoke(self, name: str) -> int:
        """Revoke the active key(s) named ``name``; how many.

        Raises:
            OncoLoopError: no active key has that name.
        """
        with self.store.engine.begin() as conn:
            done = conn.execute(update(ApiKeyRow).where(ApiKeyRow.name == name, ApiKeyRow.revoked_at.is_(None))
                                .values(revoked_at=utcnow())).rowcount
        if not done:
            raise OncoLoopError(f"no active key named {name!r}; see `python -m feedback.keys list`.")
        return done

    def verify(self, secret: str) -> ApiKey | None:
        """The active key whose secret this is, or None."""
        if not secret or not secret.startswith(KEY_PREFIX) or len(secret) > 200:
            return None
        with self.store.session() as s:
            row = s.scalar(select(ApiKeyRow).where(ApiKeyRow.key_hash == key_hash(secret),
                                                   ApiKeyRow.revoked_at.is_(None)))
            return _view(row) if row is not None else None


def local_key(component: str, scopes: Iterable[str], settings: Settings | None = None,
              store: Store | None = None) -> str:
    """The key ``component`` of this machine uses: the one kept in ``$ONCOLOOP_HOME/keys/<component>.key``
    while it is active with these scopes, else a new one (``local-<component>``) written there, owner-only."""
    settings = settings or get_settings()
    folder = private_dir(settings.ensure_layout().home / "keys")
    path = folder / f"{component}.key"
    scopes = check_scopes(scopes)
    with open(folder / ".lock", "a") as lock:  # two processes of one component must not replace each other's key
        fcntl.flock(lock, fcntl.LOCK_EX)
        keys = KeyStore(store or open_store(settings))
        secret = path.read_text(encoding="utf-8").strip() if path.is_file() else ""
        known = keys.verify(secret)
        if known is not None and known.scopes == scopes:
            return secret
        name = f"local-{component}"
        if any(k.name == name and k.revoked_at is None for k in keys.list()):
            keys.revoke(name)  # its secret is lost or its scopes changed: a fresh one replaces it
        _, secret = keys.create(name, scopes)
        path.unlink(missing_ok=True)
        path.touch(mode=0o600)
        path.write_text(secret + "\n", encoding="utf-8")
        return secret


def client_key(component: str, scopes: Iterable[str], env: dict[str, str] | None = None) -> str:
    """The key an OncoLoop client sends: ``$ONCOLOOP_API_KEY`` if set, else :func:`local_key`."""
    import os

    env = os.environ if env is None else env
    return env.get(API_KEY_ENV) or local_key(component, scopes)


@cli_command
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m feedback.keys", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    create = sub.add_parser("create", help="a new key, printed once")
    create.add_argument("--name", required=True, help="who uses it, e.g. ui, nightly-eval")
    create.add_argument("--scopes", required=True, help="comma-separated: chat, eval, admin")
    sub.add_parser("list", help="keys, scopes, and whether revoked")
    sub.add_parser("revoke", help="revoke a key at once").add_argument("name")
    args = parser.parse_args(argv)

    keys = KeyStore(open_store())
    if args.command == "create":
        key, secret = keys.create(args.name, args.scopes.split(","))
        print(f"created key {key.name} ({','.join(key.scopes)}); it is shown once, keep it secret:\n{secret}")
        print(f"clients send it as `Authorization: Bearer <key>` (OncoLoop's own read {API_KEY_ENV}).")
    elif args.command == "list":
        rows = keys.list()
        for k in rows:
            state = f"revoked {k.revoked_at:%Y-%m-%d %H:%M}" if k.revoked_at else "active"
            print(f"{k.name:<24} {k.prefix}...  {','.join(k.scopes):<16} {k.created_at:%Y-%m-%d}  {state}")
        if not rows:
            print("no keys yet: create one with `python -m feedback.keys create --name NAME --scopes chat`")
    else:
        n = keys.revoke(args.name)
        print(f"revoked {args.name}" + (f" ({n} keys)" if n > 1 else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
