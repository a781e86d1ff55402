#!/usr/bin/env bash
# The README's second command: install (if needed) and run the whole test suite.
# The tests run in two worker processes (pytest-xdist; ONCOLOOP_TEST_WORKERS, default 2 for CI's two cores, 0 runs
# them one by one): much of a test's time is a subprocess starting or a server answering, not computing. Each test
# file stays on one worker, in file order, so a module's gateway or UI starts once (`--dist loadfile`).
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -m "not slow" -x`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest -n "${ONCOLOOP_TEST_WORKERS:-2}" --dist loadfile "$@"
