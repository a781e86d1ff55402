"""The base model and what is trained on it: LoRA, P-tuning (peft) or every parameter.

``base`` is a registry alias or version id (``champion``), a local Hugging Face directory,
or a hub id; the tokenizer always leaves with the project's chat template (``core.prompt``).
"""

from __future__ import annotations

from pathlib import Path

from core.errors import OncoLoopError
from core.prompt import CHAT_TEMPLATE
from finetune.train_config import TrainConfig

REPO = Path(__file__).resolve().parent.parent


def resolve_base(base: str) -> str:
    """A loadable path or hub id for ``base``: registry alias/version first, then a path, then a hub id.

    Raises:
        OncoLoopError: ``base`` looks like a path that does not exist, or names no version,
            path or hub id.
    """
    if not base:
        raise OncoLoopError("no base model: set base=champion, a version id, a model directory or a hub id.")
    path = Path(base).expanduser()
    if path.is_dir():
        return str(path)
    from feedback.db import open_store
    from serve.registry import Registry

    try:
        return Registry(open_store()).get(base).path
    except OncoLoopError as registry_error:
        looks_like_path = base.startswith((".", "/", "~")) or base.count("/") > 1
        if looks_like_path or "/" not in base:
            raise OncoLoopError(f"base model {base!r} is neither an existing directory nor a registered "
                                f"version ({registry_error})") from None
        return base  # org/name: a hub id, loaded (or refused offline) by transformers


def training_preamble(cfg: TrainConfig) -> str | None:
    """The system preamble training prompts open with: the one ``cfg.guard`` makes the gateway send.

    Raises:
        OncoLoopError: the guard config is missing or invalid.
    """
    if not cfg.guard:
        return None
    from serve.guard import load_guard

    path = Path(cfg.guard)
    guard = load_guard(path if path.is_absolute() or path.exists() else REPO / path)
    return guard.cfg.preamble if guard.cfg.send_preamble else None


def load_base(cfg: TrainConfig):
    """Model and tokenizer for ``cfg.base`` (fp32 weights; mixed precision comes from the Trainer).

    Raises:
        OncoLoopError: nothing loadable at ``cfg.base``.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = resolve_base(cfg.base)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        model = AutoModelForCausalLM.from_pretrained(source, dtype="float32")
    except (OSError, ValueError) as e:
        raise OncoLoopError(f"cannot load base model {cfg.base!r} from {source}: {e}".split("\n")[0]) from e
    tokenizer.chat_template = CHAT_TEMPLATE
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.config.use_cache = False  # no KV cache while training (and none across packed sequences)
    return model, tokenizer, source


def apply_method(model, cfg: TrainConfig):
    """Wrap ``model`` for ``cfg.method``; returns the model whose trainable parameters are trained.

    Raises:
        OncoLoopError: LoRA target modules that the model does not have.
    """
    if cfg.method == "full":
        for p in model.parameters():
            p.requires_grad_(True)
        return model
    from peft import LoraConfig, PromptEncoderConfig, TaskType, get_peft_model

    if cfg.method == "lora":
        names = {n.rsplit(".", 1)[-1] for n, _ in model.named_modules()}
        missing = sorted(set(cfg.lora_target_modules) - names)
        if missing:
            raise OncoLoopError(f"lora_target_modules {', '.join(missing)} are not modules of this model; "
                                f"LLaMA attention projections are q_proj, k_proj, v_proj, o_proj.")
        peft_config = LoraConfig(task_type=TaskType.CAUSAL_LM, r=cfg.lora_r, lora_alpha=cfg.lora_alpha,
                                 lora_dropout=cfg.lora_dropout, target_modules=list(cfg.lora_target_modules))
    else:
        if cfg.ptuning_encoder_type not in ("MLP", "LSTM"):
            raise OncoLoopError(f"unknown ptuning_encoder_type {cfg.ptuning_encoder_type!r}; use MLP or LSTM.")
        peft_config = PromptEncoderConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=cfg.ptuning_virtual_tokens,
                                          encoder_reparameterization_type=cfg.ptuning_encoder_type,
                                          encoder_hidden_size=cfg.ptuning_encoder_hidden_size)
    return get_peft_model(model, peft_config)


def count_parameters(model) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    total = sum(p.numel() for p in model.parameters())
    return sum(p.numel() for p in model.parameters() if p.requires_grad), total
