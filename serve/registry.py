"""The model registry: immutable versions, movable aliases, and every move recorded.

Usage::

    python -m serve.registry list
    python -m serve.registry show champion
    ONCOLOOP_PASSWORD=... python -m serve.registry alias challenger <version> --user alice --reason "A/B from Monday"
    python -m serve.registry lineage champion          # parents, training configs, datasets, feedback rows
    python -m serve.registry lineage --message 42      # a stored answer: its version, and versions trained on it

Promotion and rollback with a gate report go through ``eval.promote`` /
``eval.rollback``; this command is the registry's plain read/write interface. Moving an alias needs an
admin account of the store (``--user``; the password from ``$ONCOLOOP_PASSWORD``, ``--password-file`` or the
terminal), and making a version champion that has no passing gate decision (and never was champion) also
``--force``; the move is recorded with who, why and whether it was forced.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from sqlalchemy import select

from core.errors import OncoLoopError, cli_command
from core.settings import get_settings
from feedback.credentials import authorize, read_password
from feedback.db import Alias, AliasMove, ModelVersion, Store, open_store, utcnow

ALIASES = ("champion", "challenger")
_VERSION_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class Registry:
    """Read and write the registry tables of a store."""

    def __init__(self, store: Store):
        self.store = store

    def register(self, path: str | Path) -> ModelVersion:
        """Register the version directory ``path`` (its name is the version id).

        The directory must hold ``meta.json`` with at least ``method`` and ``base``.
        Registering the same directory twice is a no-op; a different directory
        under an existing id is refused, since versions never change.

        Raises:
            OncoLoopError: bad id, missing ``meta.json``, or an id already taken.
        """
        path = Path(path).absolute()
        version_id = path.name
        if not _VERSION_ID.match(version_id):
            raise OncoLoopError(f"{version_id!r} is not a valid version id (letters, digits, '.', '_', '-').")
        meta_file = path / "meta.json"
        if not meta_file.is_file():
            raise OncoLoopError(f"{path} has no meta.json: only complete version directories can be registered.")
        try:
            meta = json.loads(meta_file.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise OncoLoopError(f"{meta_file} is not valid JSON ({e}); rebuild this version.") from e
        missing = [k for k in ("method", "base") if k not in meta]
        if missing:
            raise OncoLoopError(f"{meta_file} lacks {', '.join(missing)}; rebuild this version.")
        with self.store.session.begin() as s:
            existing = s.get(ModelVersion, version_id)
            if existing is not None:
                if Path(existing.path) != path:
                    raise OncoLoopError(
                        f"version {version_id} is already registered at {existing.path}; versions are "
                        "immutable, so give the new model another directory name."
                    )
                return existing
            row = ModelVersion(
                id=version_id, path=str(path), method=meta["method"], base=str(meta["base"]),
                parent=meta.get("parent"), mergeable=int(meta.get("mergeable", True)), meta=meta,
            )
            s.add(row)
        return row

    def get(self, name: str) -> ModelVersion:
        """The version an alias points at, or the version with that id.

        Raises:
            OncoLoopError: no such alias or version.
        """
        with self.store.session() as s:
            alias = s.get(Alias, name)
            version = s.get(ModelVersion, alias.version_id if alias else name)
            if version is None:
                known = ", ".join(v.id for v in s.scalars(select(ModelVersion).order_by(ModelVersion.created_at)))
                hint = (f"known versions: {known}" if known else
                        "no version is registered yet: run `python -m finetune.bootstrap`")
                raise OncoLoopError(f"unknown model or version {name!r}; {hint}.")
            return version

    def resolve(self, name: str) -> str:
        """The version id behind an alias or id."""
        return self.get(name).id

    def versions(self) -> list[ModelVersion]:
        with self.store.session() as s:
            return list(s.scalars(select(ModelVersion).order_by(ModelVersion.created_at)))

    def aliases(self) -> dict[str, str]:
        with self.store.session() as s:
            return {a.name: a.version_id for a in s.scalars(select(Alias))}

    def history(self, alias: str | None = None) -> list[AliasMove]:
        """Alias moves, oldest first (all aliases when ``alias`` is None)."""
        with self.store.session() as s:
            q = select(AliasMove).order_by(AliasMove.id)
            if alias:
                q = q.where(AliasMove.alias == alias)
            return list(s.scalars(q))

    def lineage(self, name: str) -> list[ModelVersion]:
        """The version behind ``name`` and its ancestors, newest first."""
        chain = [self.get(name)]
        while chain[-1].parent and chain[-1].parent not in {v.id for v in chain}:
            chain.append(self.get(chain[-1].parent))
        return chain

    def trained_on(self, message_id: int) -> list[str]:
        """Versions whose own training data held the feedback of stored message ``message_id``."""
        return [v.id for v in self.versions() if message_id in feedback_messages(v.meta)]

    def set_alias(self, alias: str, version: str, actor: str, reason: str, report: str | None = None,
                  forced: bool = False) -> AliasMove:
        """Point ``alias`` at ``version`` and record the move in the same transaction.

        This is the registry's plain write: who may move what is checked by the commands and the UI
        (``check_champion``, ``feedback.credentials``); ``forced`` records an override of the gate.

        Raises:
            OncoLoopError: unknown alias name or version, or no reason given.
        """
        if alias not in ALIASES:
            raise OncoLoopError(f"unknown alias {alias!r}; use one of {', '.join(ALIASES)}.")
        if not reason.strip():
            raise OncoLoopError("every alias move needs a reason (--reason).")
        version_id = self.resolve(version)
        with self.store.session.begin() as s:
            row = s.get(Alias, alias)
            move = AliasMove(alias=alias, from_version=row.version_id if row else None, to_version=version_id,
                             actor=actor, reason=reason, report=report, moved_at=utcnow(), forced=forced)
            if row is None:
                s.add(Alias(name=alias, version_id=version_id, updated_at=utcnow()))
            else:
                row.version_id, row.updated_at = version_id, utcnow()
            s.add(move)
        return move


    def was_champion(self, version_id: str) -> bool:
        """Whether ``version_id`` served as champion before (returning to it is a rollback)."""
        return any(m.to_version == version_id for m in self.history("champion"))


def gate_decisions(version: str) -> list[dict]:
    """Every gate decision recorded for ``version`` (``reports/*/decision.json``), oldest first."""
    out = []
    for path in sorted(get_settings().reports_dir.glob("*/decision.json")):
        try:
            d = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue
        if isinstance(d, dict) and d.get("candidate") == version:
            out.append(d)
    return sorted(out, key=lambda d: str(d.get("created_at", "")))


def check_champion(registry: Registry, version_id: str, force: bool) -> tuple[dict | None, bool]:
    """May ``version_id`` become champion? Returns its latest gate decision and whether the move is forced.

    Without ``force`` only a version whose latest gate decision passed, or one that was champion before,
    may; ``force`` (an admin's explicit override, with a reason) lets any other through, recorded as forced.

    Raises:
        OncoLoopError: no passing gate decision and no ``force``.
    """
    decisions = gate_decisions(version_id)
    gate = decisions[-1] if decisions else None
    if (gate and gate.get("passed") is True) or registry.was_champion(version_id):
        return gate, False
    if not force:
        why = (f"failed its latest gate ({gate.get('report_dir')}/report.html)" if gate else
               f"has no gate decision (gate it first: python -m eval.gate --candidate {version_id})")
        raise OncoLoopError(f"{version_id} {why}; make it champion anyway only with --force (an admin's "
                            "override, recorded as forced), and say why in --reason.")
    return gate, True


def feedback_messages(meta: dict | None) -> list[int]:
    """The stored messages a version was trained on, from its ``meta.json``.

    >>> feedback_messages({"feedback_ids": {"messages": [3, 5], "ratings": [7]}}), feedback_messages({})
    ([3, 5], [])
    """
    ids = (meta or {}).get("feedback_ids") or {}
    return list(ids.get("messages", [])) if isinstance(ids, dict) else list(ids)


def _print_lineage(registry: Registry, name: str) -> None:
    moves = registry.history()
    for depth, v in enumerate(registry.lineage(name)):
        meta, pad = v.meta or {}, "  " * depth
        cfg, data, ids = meta.get("config") or {}, meta.get("dataset") or {}, meta.get("feedback_ids") or {}
        print(f"{pad}{v.id}  method={v.method}  parent={v.parent or '-'}  created={v.created_at:%Y-%m-%d %H:%M}")
        print(f"{pad}  path: {v.path}")
        if cfg:
            keys = ("method", "optimizer", "lr", "epochs", "max_steps", "lora_r", "precision", "deepspeed")
            print(f"{pad}  training config: " + ", ".join(f"{k}={cfg[k]}" for k in keys if cfg.get(k) not in (None, "")))
        if data:
            print(f"{pad}  dataset: sha256 {str(data.get('sha256', '?'))[:16]}  "
                  + "  ".join(f"{k}={data[k]}" for k in ("snapshot", "path", "examples", "new_records") if k in data))
        if isinstance(ids, dict) and ids:
            print(f"{pad}  feedback: " + "; ".join(f"{k} {', '.join(map(str, x))}" for k, x in ids.items() if x))
        for m in moves:
            if m.to_version == v.id:
                print(f"{pad}  {m.moved_at:%Y-%m-%d %H:%M} became {m.alias}{' (forced)' if m.forced else ''} "
                      f"(by {m.actor}: {m.reason}"
                      + (f"; report {m.report}" if m.report else "") + ")")


def _print_message_lineage(registry: Registry, message_id: int) -> None:
    from feedback.db import Message

    with registry.store.session() as s:
        message = s.get(Message, message_id)
        if message is None:
            raise OncoLoopError(f"no stored message {message_id}; message ids are in the reviewer queue and exports "
                                "(meta.feedback_ids.message).")
        version, context = message.model_version, list(message.context_reviews or [])
    print(f"message {message_id} was answered by {version or 'nobody (unanswered)'}")
    print("approved answers given as context (review ids): " + (", ".join(map(str, context)) if context else "none"))
    trained = registry.trained_on(message_id)
    print("versions trained on its feedback: " + (", ".join(trained) if trained else "none yet"))
    if version:
        try:
            _print_lineage(registry, version)
        except OncoLoopError:
            print(f"(version {version} is not in this registry)")


def _print_version(v: ModelVersion, aliases: dict[str, str]) -> None:
    names = [a for a, vid in aliases.items() if vid == v.id]
    print(f"{v.id}  method={v.method}  parent={v.parent or '-'}  created={v.created_at:%Y-%m-%d %H:%M}"
          + (f"  [{', '.join(names)}]" if names else ""))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m serve.registry", description="The model registry.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="versions and the aliases pointing at them")
    show = sub.add_parser("show", help="one version's meta.json and alias history")
    show.add_argument("name", help="version id or alias")
    al = sub.add_parser("alias", help="move an alias (an admin; recorded)")
    al.add_argument("alias", choices=ALIASES)
    al.add_argument("version")
    al.add_argument("--user", "--by", dest="user", required=True, help="an admin account of the store (who moves it)")
    al.add_argument("--password-file", type=Path, help="default: $ONCOLOOP_PASSWORD, else asked at a terminal")
    al.add_argument("--reason", required=True)
    al.add_argument("--force", action="store_true",
                    help="champion: move it even though the version has no passing gate decision")
    lin = sub.add_parser("lineage", help="a version's ancestry, training data and feedback rows")
    lin.add_argument("name", nargs="?", help="version id or alias")
    lin.add_argument("--message", type=int, help="a stored answer's message id instead of a version")
    return parser


def _list(registry: Registry) -> None:
    aliases, versions = registry.aliases(), registry.versions()
    for v in versions:
        _print_version(v, aliases)
    if not versions:
        print("no versions yet: run `python -m finetune.bootstrap`")


def _show(registry: Registry, name: str) -> None:
    v = registry.get(name)
    print(json.dumps({"id": v.id, "path": v.path, "meta": v.meta}, indent=2, default=str))
    for m in registry.history():
        if v.id in (m.to_version, m.from_version):
            print(f"{m.moved_at:%Y-%m-%d %H:%M} {m.alias}: {m.from_version or '-'} -> {m.to_version}"
                  f" by {m.actor}{' (forced)' if m.forced else ''}: {m.reason}")


def _move_alias(registry: Registry, args: argparse.Namespace) -> None:
    """An admin moves an alias, with a reason; champion needs a passing gate decision unless forced."""
    from feedback.store import FeedbackStore

    account = authorize(FeedbackStore(registry.store), args.user, read_password(args.password_file), "promote")
    if not args.reason.strip():
        raise OncoLoopError("every alias move needs a reason (--reason).")
    forced = False
    if args.alias == "champion":
        _, forced = check_champion(registry, registry.resolve(args.version), args.force)
    move = registry.set_alias(args.alias, args.version, account.username, args.reason, forced=forced)
    print(f"{move.alias}: {move.from_version or '-'} -> {move.to_version} by {move.actor}"
          + (" (forced: no passing gate decision)" if forced else ""))


@cli_command
def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "lineage" and (args.name is None) == (args.message is None):
        parser.error("lineage takes a version (or alias) or --message ID, not both")
    registry = Registry(open_store(get_settings()))
    if args.command == "list":
        _list(registry)
    elif args.command == "show":
        _show(registry, args.name)
    elif args.command == "lineage" and args.message is not None:
        _print_message_lineage(registry, args.message)
    elif args.command == "lineage":
        _print_lineage(registry, args.name)
    elif args.command == "alias":
        _move_alias(registry, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
