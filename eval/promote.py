"""Make a version the champion (admins only); the move is recorded with its report.

Usage::

    ONCOLOOP_PASSWORD=... python -m eval.promote lora-20261128 --user alice --reason "passed the gate on 28 Nov"

The version's latest gate report is cited; a version without a passing gate decision (none, or a failed
latest one) needs ``--force`` and a reason, and the move is recorded as forced.
The serving gateway hot-swaps to the new champion within its poll interval.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from core.errors import cli_command
from eval.promotion import promote
from feedback.credentials import authorize, read_password


@cli_command
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eval.promote", description=__doc__.splitlines()[0])
    parser.add_argument("version", help="version id (or alias) to make champion")
    parser.add_argument("--reason", required=True, help="why (recorded with the move)")
    parser.add_argument("--user", required=True, help="an admin account of the feedback store")
    parser.add_argument("--password-file", type=Path, help="default: $ONCOLOOP_PASSWORD, else asked at a terminal")
    parser.add_argument("--force", action="store_true", help="promote even without a passing gate decision (recorded as forced)")
    args = parser.parse_args(argv)

    from feedback.store import FeedbackStore
    from serve.registry import Registry

    store = FeedbackStore.open()
    account = authorize(store, args.user, read_password(args.password_file), "promote")
    move = promote(Registry(store.store), args.version, args.reason, account, args.force)
    print(f"promote: champion {move.from_version or '-'} -> {move.to_version} by {move.actor}"
          f"{' (forced: no passing gate decision)' if move.forced else ''}; report {move.report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
