#!/usr/bin/env bash
# The README's first command: install, put the embedded default model in place,
# and talk to it. Until the chat UI lands this ends by answering a sample
# oncology question from the tiny model.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export ONCOLOOP_HOME=${ONCOLOOP_HOME:-$PWD/var}
.venv/bin/python -m finetune.bootstrap
.venv/bin/python -m serve.ask "${1:-How is tumour lysis syndrome prevented?}"
