"""Move the champion back to the version it replaced, or to a named one (admins only); recorded with a report.

Usage::

    ONCOLOOP_PASSWORD=... python -m eval.rollback --user alice --reason "clinicians report wrong staging" [--to V]

A version named with ``--to`` that never was champion needs a passing gate decision, or ``--force``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from core.errors import cli_command
from eval.promotion import rollback
from feedback.credentials import authorize, read_password


@cli_command
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eval.rollback", description=__doc__.splitlines()[0])
    parser.add_argument("--reason", required=True, help="why (recorded with the move)")
    parser.add_argument("--user", required=True, help="an admin account of the feedback store")
    parser.add_argument("--password-file", type=Path, help="default: $ONCOLOOP_PASSWORD, else asked at a terminal")
    parser.add_argument("--to", help="version to return to (default: the one the champion replaced)")
    parser.add_argument("--force", action="store_true",
                        help="--to a version that never was champion and has no passing gate decision")
    args = parser.parse_args(argv)

    from feedback.store import FeedbackStore
    from serve.registry import Registry

    store = FeedbackStore.open()
    account = authorize(store, args.user, read_password(args.password_file), "rollback")
    move = rollback(Registry(store.store), args.reason, account, args.to, args.force)
    print(f"rollback: champion {move.from_version} -> {move.to_version} by {move.actor}; report {move.report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
