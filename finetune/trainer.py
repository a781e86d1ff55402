"""The Hugging Face Trainer as training uses it: arguments from TrainConfig, our sampler,
the run directory, resumable checkpoints and the final save."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from transformers import Trainer, TrainingArguments

from core.config import config_dict
from core.settings import get_settings
from finetune.batching import LengthGroupedSampler
from finetune.train_config import TrainConfig

# Config fields that name where a run goes, not what it does (left out of the run's identity).
_PLACE_FIELDS = ("output_dir", "run_name")


def run_identity(cfg: TrainConfig, data_sha: str) -> str:
    """A short id for what a run does: same config and data → same id, so a rerun resumes.

    >>> len(run_identity(TrainConfig(), "0" * 64))
    10
    """
    what = {k: v for k, v in config_dict(cfg).items() if k not in _PLACE_FIELDS}
    blob = json.dumps(what, sort_keys=True) + data_sha
    return hashlib.sha256(blob.encode()).hexdigest()[:10]


def run_directory(cfg: TrainConfig, data_sha: str) -> tuple[Path, str]:
    """``(run dir, run name)``: ``output_dir`` if set, else ``$ONCOLOOP_HOME/runs/<method>-<identity>``."""
    name = cfg.run_name or f"{cfg.method}-{run_identity(cfg, data_sha)}"
    if cfg.output_dir:
        return Path(cfg.output_dir).expanduser().absolute(), name
    return get_settings().ensure_layout().runs_dir / name, name


def last_checkpoint(run_dir: Path) -> str | None:
    """The newest complete ``checkpoint-N`` (one whose trainer_state.json was written), or None.

    The Trainer writes trainer_state.json last, so a run killed while saving leaves a
    checkpoint without it, and the one before is used.
    """
    done = [p for p in run_dir.glob("checkpoint-*") if p.name.split("-")[-1].isdigit()
            and (p / "trainer_state.json").is_file()]
    return str(max(done, key=lambda p: int(p.name.split("-")[-1]))) if done else None


def remove_incomplete_checkpoints(run_dir: Path) -> None:
    """Delete checkpoint folders a kill left half-written, so the Trainer's rotation ignores them."""
    for p in run_dir.glob("checkpoint-*"):
        if p.is_dir() and not (p / "trainer_state.json").is_file():
            shutil.rmtree(p, ignore_errors=True)


def training_arguments(cfg: TrainConfig, run_dir: Path, ds: dict | None) -> TrainingArguments:
    """TrainingArguments for ``cfg``; DeepSpeed's ``"auto"`` values are filled from these."""
    import torch

    return TrainingArguments(
        output_dir=str(run_dir),
        seed=cfg.seed,
        learning_rate=cfg.lr,
        weight_decay=cfg.weight_decay,
        warmup_steps=cfg.warmup_ratio,  # < 1: a fraction of the total steps
        lr_scheduler_type=cfg.lr_scheduler,
        max_grad_norm=cfg.max_grad_norm,
        num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps,
        per_device_train_batch_size=cfg.per_device_batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        # Under FSDP, checkpointing is FSDP's activation_checkpointing (one all-gather fewer).
        gradient_checkpointing=cfg.gradient_checkpointing and not cfg.fsdp,
        # Non-reentrant checkpointing works with frozen embeddings (LoRA, P-tuning).
        gradient_checkpointing_kwargs={"use_reentrant": False},
        **fsdp_arguments(cfg),
        bf16=cfg.precision == "bf16",
        # The Trainer accepts bf16 without a GPU only when told it runs on the CPU (never under DeepSpeed).
        use_cpu=cfg.precision == "bf16" and ds is None and not torch.cuda.is_available(),
        fp16=cfg.precision == "fp16",
        tf32=cfg.tf32 or None,
        deepspeed=ds,
        save_strategy="steps",
        save_steps=cfg.save_steps,
        save_total_limit=cfg.save_total_limit,
        logging_steps=cfg.logging_steps,
        logging_first_step=True,
        report_to="none",  # our own TrackingCallback logs to wandb, with tokens/s and the dataset hash
        include_num_input_tokens_seen="non_padding",
        dataloader_num_workers=0,
        remove_unused_columns=False,
        ddp_find_unused_parameters=False,
    )


def response_only_loss(head):
    """A Trainer ``compute_loss_func`` that applies the LM head at response positions only.

    The model runs with ``output_hidden_states=True, logits_to_keep=1`` (see
    ``OncoTrainer.compute_loss``); the final (normed) hidden states are gathered where the
    next token has a label, and only those go through the vocabulary-sized head and
    softmax. The loss equals the padded full-sequence cross-entropy (same sum, same
    normaliser): prompts are about half of every example, so half of the head's matmuls
    and softmaxes are skipped.
    """
    import torch.nn.functional as F

    from finetune.batching import IGNORE

    def loss_func(outputs, labels, num_items_in_batch=None):
        # P-tuning prepends virtual tokens: the last labels.shape[1] positions are the text.
        hidden = outputs.hidden_states[-1][:, -labels.shape[1]:-1]
        targets = labels[:, 1:]
        keep = targets != IGNORE
        logits = head(hidden[keep]).float()
        total = F.cross_entropy(logits, targets[keep], reduction="sum")
        return total / (num_items_in_batch if num_items_in_batch is not None else keep.sum())

    return loss_func


def fsdp_arguments(cfg: TrainConfig) -> dict:
    """TrainingArguments for FSDP2 through accelerate (``fsdp=true``): every decoder layer
    sharded on its own (the model's ``_no_split_modules``), a full state dict on save so
    ``final/`` is a plain Hugging Face directory.

    >>> fsdp_arguments(TrainConfig())
    {}
    >>> fsdp_arguments(TrainConfig(method="full", fsdp=True))["fsdp_config"]["version"]
    2
    """
    if not cfg.fsdp:
        return {}
    return {"fsdp": "full_shard auto_wrap",
            "fsdp_config": {"version": 2, "reshard_after_forward": True, "state_dict_type": "FULL_STATE_DICT",
                            "activation_checkpointing": cfg.gradient_checkpointing}}


class OncoTrainer(Trainer):
    """The Trainer with this project's length grouping (a global sort, not mega-batches) and,
    with ``response_only_head``, the LM head and loss computed at response positions only."""

    def __init__(self, *args, grouping: str = "length", response_only_head: bool = True, **kwargs):
        if response_only_head:
            model = kwargs["model"] if "model" in kwargs else args[0]
            kwargs["compute_loss_func"] = response_only_loss(model.get_output_embeddings())
        super().__init__(*args, **kwargs)
        self.grouping = grouping
        self.response_only_head = response_only_head

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if self.response_only_head:
            # The final hidden states for our head; the model's own head runs on one position only.
            inputs = {**inputs, "output_hidden_states": True, "logits_to_keep": 1}
        return super().compute_loss(model, inputs, return_outputs=return_outputs,
                                    num_items_in_batch=num_items_in_batch)

    def _get_train_sampler(self, train_dataset=None):
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        if self.grouping != "length":
            return super()._get_train_sampler(train_dataset)
        from finetune.distributed import world_size

        global_batch = self.args.per_device_train_batch_size * world_size()
        return LengthGroupedSampler([len(e["input_ids"]) for e in dataset], global_batch, self.args.seed)

    def _track_num_input_tokens(self, inputs):
        """Count real (non-padding) tokens over all processes.

        The Trainer's own version all-gathers a 0-d tensor, which gloo (CPU) refuses; an
        all-reduce of a 1-element tensor works on every backend.
        """
        import torch

        mask = inputs.get("attention_mask")
        count = mask.sum() if mask is not None else torch.tensor(inputs["input_ids"].numel())
        count = count.to(self.args.device, torch.int64).reshape(1)
        if torch.distributed.is_initialized() and torch.distributed.get_world_size() > 1:
            torch.distributed.all_reduce(count)
        self.state.num_input_tokens_seen += int(count.item())


def save_final(trainer: Trainer, tokenizer, final_dir: Path) -> None:
    """The trained adapter (LoRA / P-tuning) or full model, with the tokenizer, in ``final_dir``.

    Every process must call it: under ZeRO-3 the weights are gathered from all of them.
    """
    model = trainer.model
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    base.config.use_cache = True  # served models want their KV cache back
    trainer.save_model(str(final_dir))
    if trainer.is_world_process_zero():
        tokenizer.save_pretrained(str(final_dir))
