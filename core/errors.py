"""The one exception type for errors a user can cause and fix, and how commands report it."""

import functools
import os
import sys
from collections.abc import Callable


class OncoLoopError(Exception):
    """A problem the user can fix: the message says what went wrong and what to do.

    Command-line entry points catch it, print the message without a traceback
    and exit with status 2.
    """


def cli_command(main: Callable[[list[str] | None], int]) -> Callable[[list[str] | None], int]:
    """Wrap a command's ``main(argv) -> int``: an OncoLoopError is printed as ``error: ...``
    on stderr, without a traceback, and the command exits with status 2.

    Every command also runs with the umask 077: what it writes (the store, models, datasets, runs,
    logs, reports, all of which may hold patients' data) is readable by its owner only."""

    @functools.wraps(main)
    def run(argv: list[str] | None = None) -> int:
        os.umask(0o077)
        try:
            return main(argv)
        except OncoLoopError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2

    return run
