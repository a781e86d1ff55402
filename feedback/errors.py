"""The one exception type for errors a user can cause and fix."""


class OncoLoopError(Exception):
    """A problem the user can fix: the message says what went wrong and what to do.

    Command-line entry points catch it, print the message without a traceback
    and exit with status 2.
    """
