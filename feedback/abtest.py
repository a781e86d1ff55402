"""The A/B share an admin sets in the UI: stored, with who set it and why, for the gateway to read.

The current share is the store setting ``ab.challenger_share`` (JSON: share, actor, reason, time);
every change is also kept, append-only, as ``ab.challenger_share@<UTC time>``, so the history of the
A/B test can be read back like the registry's alias moves. No setting means: the gateway's own
``ServeConfig.challenger_share`` applies.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from sqlalchemy import select

from core.errors import OncoLoopError
from feedback.db import Store, StoreSetting, utcnow

SHARE_KEY = "ab.challenger_share"


@dataclass(frozen=True)
class ShareChange:
    """One setting of the challenger's share of conversations."""

    share: float
    actor: str
    reason: str
    at: str  # UTC ISO-8601


def check_share(share) -> float:
    """The share as a float in [0, 1].

    >>> check_share("0.25")
    0.25
    >>> check_share(1.5)
    Traceback (most recent call last):
    core.errors.OncoLoopError: the challenger's share must lie between 0 and 1 (0 stops the A/B test), not 1.5.
    """
    try:
        value = float(share)
    except (TypeError, ValueError):
        raise OncoLoopError(f"the challenger's share must be a number between 0 and 1, not {share!r}.") from None
    if not 0.0 <= value <= 1.0:
        raise OncoLoopError(f"the challenger's share must lie between 0 and 1 (0 stops the A/B test), not {share}.")
    return value


def set_challenger_share(store: Store, share, actor: str, reason: str) -> ShareChange:
    """Record a new challenger share (and keep the change in the history).

    Raises:
        OncoLoopError: a share outside [0, 1] or no reason.
    """
    value = check_share(share)
    if not (reason or "").strip():
        raise OncoLoopError("changing the A/B share needs a reason; it is recorded with the change.")
    change = ShareChange(value, actor, reason.strip(), utcnow().isoformat())
    text = json.dumps(asdict(change))
    with store.session.begin() as s:
        row = s.get(StoreSetting, SHARE_KEY)
        if row is None:
            s.add(StoreSetting(key=SHARE_KEY, value=text))
        else:
            row.value = text
        s.add(StoreSetting(key=f"{SHARE_KEY}@{change.at}", value=text))
    return change


def current_share(store: Store) -> ShareChange | None:
    """The share last set, or None when nobody set one (the gateway's config applies)."""
    with store.session() as s:
        row = s.get(StoreSetting, SHARE_KEY)
    return ShareChange(**json.loads(row.value)) if row is not None else None


def challenger_share(store: Store) -> float | None:
    """The share last set (for the gateway's pool to apply), or None."""
    change = current_share(store)
    return change.share if change else None


def share_history(store: Store) -> list[ShareChange]:
    """Every change of the share, oldest first."""
    with store.session() as s:
        rows = s.scalars(select(StoreSetting.value).where(StoreSetting.key.like(f"{SHARE_KEY}@%"))
                         .order_by(StoreSetting.key))
        return [ShareChange(**json.loads(v)) for v in rows]
