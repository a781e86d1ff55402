"""Login throttling: failed logins per account and per client address, stored so a restart keeps them.

After ``account_max_failures`` failures in a row for one username (known or not, so that a lockout does
not tell which usernames exist), or ``address_max_failures`` from one client address, further logins are
refused without checking the password for ``lockout_s`` seconds, doubling with each further failure up to
``lockout_max_s``. A right password resets its account's count; an address's count is forgotten after
``failure_memory_s`` without a failure (a clinic's shared address is not locked for good by typos).

An attempt counts as a failure from before its password is checked until it proves right, so a burst of
parallel guesses gets no more checks than the limit allows.

>>> cfg = AccessConfig()
>>> [lockout_seconds(n, 5, cfg) for n in (4, 5, 6, 7, 20)]
[0.0, 30.0, 60.0, 120.0, 900.0]
"""

from __future__ import annotations

import datetime as dt
from typing import Callable

from sqlalchemy import case, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite

from core.errors import OncoLoopError
from feedback.config import AccessConfig
from feedback.db import LoginFailures, Store, utcnow

KEY_MAX = 200


def lockout_seconds(failures: int, limit: int, cfg: AccessConfig) -> float:
    """How long a key with ``failures`` failures in a row is locked (0: not locked)."""
    if failures < limit:
        return 0.0
    return float(min(cfg.lockout_s * 2 ** min(failures - limit, 32), cfg.lockout_max_s))


def _as_utc(t: dt.datetime) -> dt.datetime:
    return t.replace(tzinfo=dt.timezone.utc) if t.tzinfo is None else t


class LoginThrottle:
    """Count failed logins in the store and refuse logins while a key is locked."""

    def __init__(self, store: Store, cfg: AccessConfig, now: Callable[[], dt.datetime] = utcnow):
        self.store, self.cfg, self.now = store, cfg, now

    @staticmethod
    def keys(username: str, address: str | None) -> dict[str, str]:
        """The throttled keys of a login attempt: its username (case-folded) and its client address."""
        out = {"account": f"user:{(username or '').strip().casefold()}"[:KEY_MAX]}
        if address:
            out["address"] = f"addr:{address}"[:KEY_MAX]
        return out

    def check(self, username: str, address: str | None) -> None:
        """Refuse the attempt while its account or address is locked.

        Raises:
            OncoLoopError: saying how long to wait.
        """
        keys = self.keys(username, address)
        now = self.now()
        with self.store.session() as s:
            rows = {r.key: r for r in s.scalars(select(LoginFailures).where(LoginFailures.key.in_(keys.values())))}
        for what, key in keys.items():
            row = rows.get(key)
            if row is not None and row.locked_until is not None and _as_utc(row.locked_until) > now:
                wait = max(1, int((_as_utc(row.locked_until) - now).total_seconds() + 0.999))
                if what == "account":
                    raise OncoLoopError(f"too many failed logins for this account; wait {wait} s and try again, "
                                        "or ask an admin to lift the lock (`python -m feedback.users unlock NAME`).")
                raise OncoLoopError(f"too many failed logins from your address; wait {wait} s and try again.")

    def attempt(self, username: str, address: str | None) -> float:
        """Count an attempt as a failure before its password is checked; returns the lockout it causes (s).

        Raises:
            OncoLoopError: another attempt locked the account or address since :meth:`check` (a parallel
                burst); this one is refused unchecked.
        """
        now = self.now()
        forget = now - dt.timedelta(seconds=self.cfg.failure_memory_s)
        limits = {"account": self.cfg.account_max_failures, "address": self.cfg.address_max_failures}
        table = LoginFailures.__table__
        insert = (postgresql.insert if self.store.engine.dialect.name == "postgresql" else sqlite.insert)(table)
        longest, locked = 0.0, None
        with self.store.engine.begin() as conn:  # holds the rows' write lock: attempts on a key go one by one
            for what, key in self.keys(username, address).items():
                failures, locked_until = conn.execute(
                    insert.values(key=key, failures=1, last_failure_at=now).on_conflict_do_update(
                        index_elements=[table.c.key],
                        set_={"failures": case((table.c.last_failure_at < forget, 1), else_=table.c.failures + 1),
                              "last_failure_at": now})
                    .returning(table.c.failures, table.c.locked_until)).one()
                if locked_until is not None and _as_utc(locked_until) > now:
                    locked = locked or what
                    continue  # a parallel attempt locked it: this one counts, and the lock stands
                seconds = lockout_seconds(failures, limits[what], self.cfg)
                conn.execute(update(table).where(table.c.key == key).values(
                    locked_until=now + dt.timedelta(seconds=seconds) if seconds else None))
                longest = max(longest, seconds)
        if locked:
            self.check(username, address)  # says how long to wait
        return longest

    def succeeded(self, username: str, address: str | None = None) -> None:
        """A right password: its account's count starts again, and the address's loses this attempt."""
        keys = self.keys(username, address)
        with self.store.engine.begin() as conn:
            conn.execute(delete(LoginFailures).where(LoginFailures.key == keys["account"]))
            if "address" in keys:
                table = LoginFailures.__table__
                left = conn.execute(update(table).where(table.c.key == keys["address"], table.c.failures > 0)
                                    .values(failures=table.c.failures - 1).returning(table.c.failures)).scalar()
                if left is not None and left < self.cfg.address_max_failures:
                    conn.execute(update(table).where(table.c.key == keys["address"]).values(locked_until=None))

    def unlock(self, username: str) -> bool:
        """Lift an account's lockout (an admin's ``python -m feedback.users unlock``); whether one was there."""
        with self.store.engine.begin() as conn:
            gone = conn.execute(delete(LoginFailures).where(LoginFailures.key == self.keys(username, None)["account"]))
        return bool(gone.rowcount)
