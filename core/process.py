"""Child processes: a free port to give one, a leash to its parent, and a clean stop for it and its children."""

from __future__ import annotations

import os
import signal
import socket
import subprocess


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def die_with_parent(sig: int = signal.SIGTERM):
    """A ``preexec_fn`` that has the child receive ``sig`` when its parent dies, even by ``kill -9`` (Linux).

    SIGTERM lets a gateway stop its own engines on the way out; SIGKILL suits a leaf process.
    """
    def _set() -> None:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, int(sig))  # 1 = PR_SET_PDEATHSIG

    return _set


def stop_group(proc: subprocess.Popen | None, grace_s: float = 10.0) -> None:
    """Stop a process started with ``start_new_session=True`` and its children: SIGTERM, SIGKILL after ``grace_s``."""
    if proc is None or proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        pass
