"""The store's access settings: retention and login throttling (``configs/access/default.yaml``)."""

from __future__ import annotations

import os
from dataclasses import dataclass

from core.config import load_config
from core.errors import OncoLoopError

ACCESS_CONFIG_ENV = "ONCOLOOP_ACCESS_CONFIG"


@dataclass
class AccessConfig:
    """Who may try how often, and how long raw text is kept (``configs/access/default.yaml``).

    Read by every process from the YAML file named by ``$ONCOLOOP_ACCESS_CONFIG`` (defaults when unset), so
    the UI, the command-line tools and the retention job apply the same rules.
    """

    retention_days: int = 30  # raw questions, answers and corrections older than this are replaced by their
    #                           scrubbed form by `python -m feedback.retention` (run it daily from cron)
    account_max_failures: int = 5  # failed logins in a row for one username before it is locked for a while
    address_max_failures: int = 20  # the same for one client address (a clinic may share one address)
    lockout_s: float = 30.0  # the first lockout; each further failure doubles it ...
    lockout_max_s: float = 900.0  # ... up to this
    failure_memory_s: float = 3600.0  # failures are forgotten after this long without a new one

    def __post_init__(self):
        if self.retention_days < 1:
            raise OncoLoopError(f"retention_days must be at least 1, not {self.retention_days}.")
        if self.account_max_failures < 1 or self.address_max_failures < 1:
            raise OncoLoopError("account_max_failures and address_max_failures must be at least 1.")
        if not 0 < self.lockout_s <= self.lockout_max_s:
            raise OncoLoopError("lockout_s must be above 0 and at most lockout_max_s.")
        if self.failure_memory_s <= 0:
            raise OncoLoopError("failure_memory_s must be above 0.")


def load_access_config(env: dict[str, str] | None = None) -> AccessConfig:
    """The access settings from ``$ONCOLOOP_ACCESS_CONFIG`` (a YAML file), or the defaults.

    Raises:
        OncoLoopError: the file is missing or malformed, or a value is out of range.
    """
    env = os.environ if env is None else env
    return load_config(AccessConfig, env.get(ACCESS_CONFIG_ENV) or None)
