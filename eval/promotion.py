"""Promotion and rollback by an admin: who may move the champion, and the report every move is recorded with.

An admin is an account of the feedback store with the ``promote`` / ``rollback`` permission (role admin),
authenticated by password. A promotion cites the candidate's latest gate report; a version without a passing
gate decision (none, or a failed latest one) is promoted only with ``force`` and a reason, and the move is
recorded as forced. A rollback moves the champion back to the version it replaced (or a named one: one that
never was champion needs a passing gate decision or ``force``, as a promotion does). Each move writes a small report of its own under
``$ONCOLOOP_HOME/reports/<id>/`` (who, why, from, to, the gate report it rests on) and the registry records
the move with that report.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

from core.errors import OncoLoopError
from core.settings import get_settings
from eval.report import render
from feedback.auth import Account
from serve.registry import check_champion, gate_decisions

def write_move_report(kind: str, alias: str, from_version: str | None, to_version: str, account: Account,
                      reason: str, gate: dict | None, forced: bool = False) -> Path:
    """A one-page report of an alias move (Markdown + HTML + JSON); returns the HTML path."""
    now = dt.datetime.now(dt.timezone.utc)
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", to_version)[:60]
    out = get_settings().ensure_layout().reports_dir / f"{now:%Y%m%d-%H%M%S}-{kind}-{safe}"
    out.mkdir(parents=True, exist_ok=True)
    gate_line = (f"gate report {gate['report_dir']}/report.html: {'PASSED' if gate['passed'] else 'FAILED'}"
                 if gate else "no gate report for this version")
    facts = {"kind": kind, "alias": alias, "from": from_version, "to": to_version, "by": account.username,
             "role": account.role, "reason": reason, "at": now.isoformat(timespec="seconds"), "gate": gate_line,
             "forced": forced, "gate_reasons": (gate or {}).get("reasons", [])}
    (out / "move.json").write_text(json.dumps(facts, indent=1), encoding="utf-8")
    title = f"{kind.capitalize()}: {alias} {from_version or '-'} → {to_version}"
    (out / "report.md").write_text(render("move.md.j2", title=title, facts=facts), encoding="utf-8")
    (out / "report.html").write_text(render("move.html.j2", title=title, facts=facts), encoding="utf-8")
    return out / "report.html"


def _check_reason(reason: str) -> None:
    if not (reason or "").strip():
        raise OncoLoopError("every alias move needs a reason (--reason); it is recorded with the move.")


def promote(registry, version: str, reason: str, account: Account, force: bool = False):
    """Make ``version`` the champion, citing its latest gate report.

    Raises:
        OncoLoopError: unknown or unfinished version, already champion, or no passing gate decision without
            ``force``.
    """
    from eval.comparison import check_version

    _check_reason(reason)
    target = check_version(registry, version)
    current = registry.aliases().get("champion")
    if current == target.id:
        raise OncoLoopError(f"{target.id} is already the champion; nothing to do.")
    gate, forced = check_champion(registry, target.id, force)
    report = write_move_report("promotion", "champion", current, target.id, account, reason, gate, forced)
    return registry.set_alias("champion", target.id, account.username, reason, report=str(report), forced=forced)


def rollback(registry, reason: str, account: Account, to: str | None = None, force: bool = False):
    """Move the champion back to the version it replaced (or to ``to``).

    Raises:
        OncoLoopError: no champion, no earlier champion to return to, an unknown/unfinished target, or a
            target that never was champion and has no passing gate decision, without ``force``.
    """
    from eval.comparison import check_version

    _check_reason(reason)
    current = registry.aliases().get("champion")
    if current is None:
        raise OncoLoopError("there is no champion to roll back.")
    if to is None:
        moves = [m for m in registry.history("champion") if m.to_version == current and m.from_version]
        if not moves:
            raise OncoLoopError(f"the champion {current} replaced no earlier version; name one with --to VERSION.")
        to = moves[-1].from_version
    target = check_version(registry, to)
    if target.id == current:
        raise OncoLoopError(f"{target.id} is already the champion; nothing to roll back.")
    _, forced = check_champion(registry, target.id, force)
    decisions = gate_decisions(current)
    report = write_move_report("rollback", "champion", current, target.id, account, reason,
                               decisions[-1] if decisions else None, forced)
    return registry.set_alias("champion", target.id, account.username, reason, report=str(report), forced=forced)
