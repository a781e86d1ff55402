"""Turn a training run's output into an immutable model version.

Usage::

    python -m finetune.merge --adapter var/runs/lora-x/final                 # LoRA merged into its base
    python -m finetune.merge --adapter var/runs/lora-x/final --register      # ... and registered
    python -m finetune.merge --adapter var/runs/full-x/final --version full-1 --register
    python -m finetune.merge --adapter var/runs/pt-x/final --register        # P-tuning: adapter version
    python -m finetune.merge --adapter var/runs/lora-x/final --scale 0.5     # half the LoRA update (WiSE-FT)

A LoRA adapter is merged into its base (peft ``merge_and_unload``) and saved as a
standalone Hugging Face directory; a full fine-tune is copied as one. P-tuning
learns virtual-token embeddings, which are extra inputs rather than weight deltas,
so it cannot be merged: with ``--register`` it is saved as an adapter version
(``"mergeable": false``) whose ``base`` is the base version's directory, for the
serving side to load both. ``--scale`` merges a LoRA at a fraction of its trained update, weight-space
interpolation between the base and the fine-tune (WiSE-FT, Wortsman et al. 2022), which keeps more of the
base's general behaviour; the factor is recorded in ``meta.json``. Versions land in ``$ONCOLOOP_HOME/models/<version>/``,
written to a temporary folder and renamed, and are never overwritten.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from core.errors import OncoLoopError, cli_command
from core.prompt import CHAT_TEMPLATE
from core.settings import get_settings

ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")
# peft_type in adapter_config.json -> the project's method name
PEFT_METHODS = {"LORA": "lora", "P_TUNING": "ptuning"}


@dataclass(frozen=True)
class RunOutput:
    """What training left in ``<output_dir>/final/``."""

    path: Path
    method: str  # lora | ptuning | full
    adapter_config: dict  # empty for full fine-tuning
    train_meta: dict  # empty when train_meta.json is absent


@dataclass(frozen=True)
class Base:
    """The base model an adapter belongs to: its directory and, when registered, its version id."""

    path: Path
    version: str | None


def read_run(adapter_dir: str | Path) -> RunOutput:
    """Inspect a training output directory and say which method produced it.

    Raises:
        OncoLoopError: the directory is missing or holds neither an adapter nor a model.
    """
    path = Path(adapter_dir).absolute()
    if not path.is_dir():
        raise OncoLoopError(f"{path} does not exist; give the training run's final/ directory (--adapter).")
    train_meta = {}
    if (path / "train_meta.json").is_file():
        try:
            train_meta = json.loads((path / "train_meta.json").read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise OncoLoopError(f"{path / 'train_meta.json'} is not valid JSON ({e}); rerun training.") from e
    if (path / "adapter_config.json").is_file():
        cfg = json.loads((path / "adapter_config.json").read_text(encoding="utf-8"))
        method = PEFT_METHODS.get(str(cfg.get("peft_type", "")).upper())
        if method is None:
            raise OncoLoopError(f"{path} holds a {cfg.get('peft_type')} adapter; OncoLoop merges LoRA and "
                                "registers P-tuning adapters only.")
        if not (path / "adapter_model.safetensors").is_file():
            raise OncoLoopError(f"{path} has adapter_config.json but no adapter_model.safetensors; "
                                "the run did not finish saving, rerun or resume training.")
        return RunOutput(path, method, cfg, train_meta)
    if (path / "config.json").is_file() and any(path.glob("*.safetensors")):
        return RunOutput(path, "full", {}, train_meta)
    raise OncoLoopError(f"{path} holds neither a peft adapter (adapter_config.json) nor a model "
                        "(config.json + *.safetensors); give the training run's final/ directory.")


def _registry():
    from feedback.db import open_store
    from serve.registry import Registry

    return Registry(open_store())


def resolve_base(name: str | None, run: RunOutput) -> Base:
    """Find the base model directory from ``--base``, the adapter's record, or the training config.

    A directory is taken as is (its version id is its name when it sits under
    ``$ONCOLOOP_HOME/models``); anything else is looked up in the registry.

    Raises:
        OncoLoopError: the base is neither a model directory nor a registered version or alias.
    """
    candidates = [name] if name else [
        run.train_meta.get("base_source"),  # the directory training loaded (finetune.train)
        run.adapter_config.get("base_model_name_or_path"),
        (run.train_meta.get("config") or {}).get("base"),
    ]
    candidates = [str(c) for c in candidates if c]
    if not candidates:
        raise OncoLoopError(f"{run.path} does not say which base it was trained on; pass --base PATH_OR_VERSION.")
    models_dir = get_settings().models_dir.absolute()
    for candidate in candidates:
        path = Path(candidate).expanduser()
        if path.is_dir():
            if not (path / "config.json").is_file():
                raise OncoLoopError(f"base {path} is a directory without config.json, not a model; "
                                    "pass --base with a model directory or a registered version.")
            path = path.absolute()
            return Base(path, path.name if path.parent == models_dir else None)
    # Not a directory: a registry alias or version id (only the first candidate, so that a stale
    # alias in the training config never silently replaces what --base or the adapter names).
    try:
        version = _registry().get(candidates[0])
    except OncoLoopError as e:
        raise OncoLoopError(f"base {candidates[0]!r} does not exist as a directory and is not a registered "
                            f"version ({e}) Pass --base with a model directory or a version id.") from e
    return Base(Path(version.path), version.id)


def default_version(method: str) -> str:
    """A version id for a new model: method and UTC time, e.g. ``lora-20260101-120000``."""
    return f"{method}-{dt.datetime.now(dt.timezone.utc):%Y%m%d-%H%M%S}"


def weights_sha256(model_dir: Path) -> str:
    digest = hashlib.sha256()
    for f in sorted(model_dir.glob("*.safetensors")):
        digest.update(f.read_bytes())
    return digest.hexdigest()


def build_meta(run: RunOutput, base: Base, mergeable: bool) -> dict:
    """The version's ``meta.json``: method, lineage, the whole training config, data and metrics.

    >>> run = RunOutput(Path("/r"), "lora", {"r": 8}, {"config": {"lr": 1e-4}, "dataset": {"sha256": "ab"},
    ...                 "feedback_ids": [3, 4], "metrics": {"loss": 1.5}})
    >>> m = build_meta(run, Base(Path("/m/base-1"), "base-1"), True)
    >>> m["method"], m["base"], m["parent"], m["dataset"], m["feedback_ids"], m["mergeable"]
    ('lora', '/m/base-1', 'base-1', {'sha256': 'ab'}, [3, 4], True)
    >>> build_meta(RunOutput(Path("/r"), "full", {}, {}), Base(Path("/b"), None), True)["dataset"]
    {}
    """
    tm = run.train_meta
    dataset = tm.get("dataset")
    if not isinstance(dataset, dict):
        dataset = {"sha256": dataset} if dataset else {}
    if tm.get("dataset_sha256"):
        dataset = {**dataset, "sha256": tm["dataset_sha256"]}
    feedback_ids = tm.get("feedback_ids", dataset.get("feedback_ids", []))
    return {
        "method": run.method,
        "base": str(base.path),
        "parent": base.version,
        "mergeable": mergeable,
        "config": tm.get("config", {}),
        "dataset": dataset,
        "feedback_ids": feedback_ids if isinstance(feedback_ids, dict) else list(feedback_ids or []),
        "metrics": tm.get("metrics", {}),
        "deepspeed": tm.get("deepspeed"),
        "run_name": tm.get("run_name"),
        "adapter": run.adapter_config or None,
        "source_run": str(run.path),
        "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }


def _save_tokenizer(source: Path, fallback: Path, target: Path) -> None:
    """Save the run's tokenizer (or the base's) with the project chat template into ``target``."""
    from transformers import AutoTokenizer

    tok_dir = source if (source / "tokenizer_config.json").is_file() else fallback
    tokenizer = AutoTokenizer.from_pretrained(str(tok_dir))
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(str(target))


def merge_lora(run: RunOutput, base: Base, tmp: Path, scale: float = 1.0) -> dict:
    """Merge the LoRA adapter, its update times ``scale``, into the base; save the standalone model into ``tmp``.

    Returns the largest absolute logit difference between the adapter model and the
    merged one on a probe input (recorded in meta.json as a sanity check).
    """
    import torch
    from peft import PeftModel
    from peft.tuners.lora import LoraLayer
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(base.path), dtype="auto").eval()
    try:
        model = PeftModel.from_pretrained(model, str(run.path)).eval()
    except (RuntimeError, ValueError, KeyError) as e:
        raise OncoLoopError(f"the adapter in {run.path} does not fit base {base.path} ({str(e)[:300]}); "
                            "pass the base it was trained on (--base).") from e
    for module in model.modules():
        if isinstance(module, LoraLayer):
            module.scale_layer(scale)
    probe = torch.arange(1, 17).unsqueeze(0) % model.config.vocab_size
    with torch.no_grad():
        before = model(input_ids=probe).logits.float()
        merged = model.merge_and_unload()
        after = merged(input_ids=probe).logits.float()
    merged.generation_config.do_sample = False
    merged.save_pretrained(str(tmp))
    return {"probe_max_abs_logit_diff": float((before - after).abs().max())}


def create_version(adapter: str | Path, base: str | None = None, version: str | None = None,
                   register: bool = False, extra_meta: dict | None = None, scale: float = 1.0) -> Path:
    """Make a version from a training output; return its directory.

    Args:
        adapter: the run's ``final/`` directory (LoRA or P-tuning adapter, or a full model).
        base: base model directory, version id or alias; default: what the run recorded.
        version: new version id; default ``<method>-<UTC time>``.
        register: add the version to the registry (aliases do not move).
        extra_meta: lineage to add to ``meta.json`` (e.g. the retrain job's dataset and feedback ids).
        scale: LoRA only: merge this fraction of the adapter's update (1.0: all of it).

    Raises:
        OncoLoopError: P-tuning without ``register``, unknown base, an existing version id,
            or a base that is not registered when registering.
    """
    run = read_run(adapter)
    _check_request(run, scale, register)
    settings = get_settings().ensure_layout()
    version = version or default_version(run.method)
    target = settings.models_dir / version
    if target.exists():
        raise OncoLoopError(f"version {version} already exists at {target}; versions are immutable, "
                            "choose another --version.")
    resolved = resolve_base(base, run) if run.method != "full" else _full_parent(base, run)
    registry = _registry() if register else None
    _check_base(run, resolved, registry, settings)
    tmp = settings.models_dir / f".{version}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        _write_version(run, resolved, tmp, {**build_meta(run, resolved, mergeable=run.method != "ptuning"),
                                            **(extra_meta or {})}, scale)
        tmp.rename(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if registry is not None:
        registry.register(target)
    return target


def _check_request(run: RunOutput, scale: float, register: bool) -> None:
    if scale != 1.0 and (run.method != "lora" or not 0.0 < scale <= 4.0):
        raise OncoLoopError(f"--scale {scale} applies to LoRA adapters only, as a factor in (0, 4]; "
                            f"this run is {run.method}.")
    if run.method == "ptuning" and not register:
        raise OncoLoopError(
            "P-tuning cannot be merged into the base weights: its virtual tokens are extra inputs, not "
            "weight deltas. Run again with --register to save it as an adapter version (mergeable: false) "
            "that the gateway serves on top of its base.")


def _check_base(run: RunOutput, resolved: Base, registry, settings) -> None:
    """The parent is registered before its child; an adapter sits on an immutable base of the right shape."""
    if registry is not None and resolved.version is not None:
        try:
            registry.get(resolved.version)
        except OncoLoopError as e:
            raise OncoLoopError(f"base version {resolved.version} is not registered, so the new version "
                                f"cannot name it as parent; register the base first. ({e})") from e
    if run.method == "ptuning" and resolved.version is None:
        raise OncoLoopError(
            f"base {resolved.path} is not a version under {settings.models_dir}; an unmergeable adapter must "
            "sit on an immutable base version. Pass --base with a registered version id.")
    if run.method != "full":
        _check_shapes(run, resolved)


def _write_version(run: RunOutput, resolved: Base, tmp: Path, meta: dict, scale: float) -> None:
    """The version's files in ``tmp``: merged weights (LoRA), a copy (full) or the adapter (P-tuning), the
    tokenizer and ``meta.json``."""
    if run.method == "lora":
        meta["merge_check"] = merge_lora(run, resolved, tmp, scale)
        meta["merge_scale"] = scale
    elif run.method == "full":
        shutil.copytree(run.path, tmp, ignore=shutil.ignore_patterns("train_meta.json", "optimizer*", "scheduler*",
                                                                       "rng_state*", "global_step*",
                                                                       "training_args.bin"))
    else:
        tmp.mkdir(parents=True)
        for name in ADAPTER_FILES:
            shutil.copy2(run.path / name, tmp / name)
    _save_tokenizer(run.path, resolved.path, tmp)
    if run.method != "ptuning":
        meta["weights_sha256"] = weights_sha256(tmp)
    (tmp / "meta.json").write_text(json.dumps(meta, indent=2, default=str) + "\n", encoding="utf-8")


def _full_parent(base: str | None, run: RunOutput) -> Base:
    """Lineage of a full fine-tune: its base when one can be found, else the run itself."""
    try:
        return resolve_base(base, run)
    except OncoLoopError:
        if base:
            raise
        return Base(run.path, None)


def _check_shapes(run: RunOutput, base: Base) -> None:
    """Refuse an adapter trained on a model of another width (cheap: reads config.json only)."""
    hidden = json.loads((base.path / "config.json").read_text(encoding="utf-8")).get("hidden_size")
    token_dim = run.adapter_config.get("token_dim")
    if token_dim and hidden and token_dim != hidden:
        raise OncoLoopError(f"the adapter in {run.path} was trained for hidden size {token_dim}, but base "
                            f"{base.path} has {hidden}; pass the base it was trained on (--base).")


@cli_command
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m finetune.merge", description=__doc__.splitlines()[0])
    parser.add_argument("--adapter", required=True, type=Path, help="the training run's final/ directory")
    parser.add_argument("--base", help="base model directory, version id or alias (default: the run's base)")
    parser.add_argument("--version", help="new version id (default: <method>-<UTC time>)")
    parser.add_argument("--register", action="store_true", help="register the version (no alias moves)")
    parser.add_argument("--scale", type=float, default=1.0, help="LoRA: merge this fraction of the update")
    args = parser.parse_args(argv)
    target = create_version(args.adapter, args.base, args.version, args.register, scale=args.scale)
    meta = json.loads((target / "meta.json").read_text(encoding="utf-8"))
    kind = {"lora": "LoRA merged into its base", "full": "standalone copy of the full fine-tune"}.get(
        meta["method"], "adapter version (unmergeable, served on its base)")
    print(f"merge: {target.name}: {kind} at {target}" + (" (registered)" if args.register else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
