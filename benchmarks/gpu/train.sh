#!/usr/bin/env bash
# LoRA training throughput on one H100/H200 with no network: bf16 vs fp16 vs fp32+tf32,
# ZeRO-2 vs ZeRO-3; real tokens/s, MFU and peak GPU memory of a random ~1.1B LLaMA built
# on the spot. About 6-8 minutes. Results: benchmarks/results/train_gpu_<device>.{json,md}.
#
# The GPU machine has torch, transformers, peft and accelerate but no network and no
# DeepSpeed: build DeepSpeed (and its small pure-Python dependencies) as wheels first, on a
# machine with PyPI access, and let them travel with the repository:
#     bash benchmarks/gpu/train.sh --build-wheels      # writes benchmarks/gpu/wheels/
# Then on the GPU machine:
#     bash benchmarks/gpu/train.sh
# Check it works on CPU (tiny model, fp32):
#     bash benchmarks/gpu/train.sh --dry-run
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-python}
WHEELS=benchmarks/gpu/wheels
DS_VERSION=${DS_VERSION:-0.19.8}

if [[ "${1:-}" == "--build-wheels" ]]; then
  mkdir -p "$WHEELS"
  $PY -m pip wheel --no-deps -w "$WHEELS" "deepspeed==$DS_VERSION" hjson py-cpuinfo msgpack ninja einops
  ls -l "$WHEELS"
  exit 0
fi

if ! $PY -c "import deepspeed" >/dev/null 2>&1; then
  ls "$WHEELS"/deepspeed-*.whl >/dev/null 2>&1 || { echo "error: no DeepSpeed wheel in $WHEELS; run with --build-wheels where PyPI is reachable" >&2; exit 2; }
  # --no-index: nothing is fetched; the dependencies come from the same folder or are already installed.
  $PY -m pip install --no-index --find-links "$WHEELS" deepspeed \
    || $PY -m pip install --no-index --no-deps "$WHEELS"/*.whl
fi
export TORCH_EXTENSIONS_DIR=${TORCH_EXTENSIONS_DIR:-$HOME/.cache/oncoloop/torch_extensions}
export HF_HUB_OFFLINE=1 WANDB_MODE=offline DS_BUILD_OPS=0
# The 8-minute budget is for the GPU run; a CPU dry run takes as long as the CPU needs.
if [[ " $* " == *" --dry-run "* ]]; then exec $PY benchmarks/gpu/train_bench.py "$@"; fi
exec timeout 480 $PY benchmarks/gpu/train_bench.py "$@"
