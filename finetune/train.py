"""Fine-tune a base model with LoRA, P-tuning or all parameters, optionally under DeepSpeed.

Usage::

    python -m finetune.train --config configs/lora/tiny_cpu.yaml [key=value ...]
    python -m finetune.train --config configs/lora/tiny_cpu.yaml deepspeed=configs/deepspeed/zero2.json
    torchrun --nproc_per_node 2 -m finetune.train --config configs/lora/tiny_cpu.yaml deepspeed=...
    deepspeed --num_gpus 8 --module finetune.train --config configs/lora/llama3_8b_gpu.yaml
    torchrun --nproc_per_node 8 -m finetune.train --config configs/full/llama3_8b_fsdp_gpu.yaml  # FSDP2, GPUs

The run directory (``output_dir``, default ``$ONCOLOOP_HOME/runs/<method>-<id>``, where the
id comes from the config and the data) holds checkpoints every ``save_steps``; starting the
same command again resumes from the newest one. At the end ``<run dir>/final/`` holds the
adapter or full model, the tokenizer (with the chat template) and ``train_meta.json``.
Nothing is registered: merging and registering are ``finetune.merge``'s job.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from core.config import config_dict, load_config
from core.errors import cli_command
from finetune.context import add_context
from finetune.train_config import TrainConfig


def train(cfg: TrainConfig) -> Path:
    """Run (or resume) training for ``cfg``; return the ``final`` directory.

    Raises:
        OncoLoopError: anything wrong with the config, data, base model or hardware,
            found before training starts.
    """
    from finetune import batching, distributed
    from finetune.trainer import last_checkpoint, remove_incomplete_checkpoints, run_directory, save_final

    # 1. Check the config against the hardware before loading anything heavy.
    hw, ds = _check_hardware(cfg)

    # 2. Data, and the run directory named after config + data (so a rerun resumes).
    records = batching.load_records(cfg.data)
    data_sha = batching.dataset_hash(cfg.data)
    run_dir, run_name = run_directory(cfg, data_sha)
    final_dir = run_dir / "final"
    if (final_dir / "train_meta.json").is_file():
        print(f"train: {run_name} is already complete: {final_dir} (choose another run_name to train again)")
        return final_dir

    # 3-4. Model, tokenizer, method, examples (response-only loss), tracking and the Trainer.
    main_process = distributed.is_main_process()
    run = _build_run(cfg, records, hw, ds, run_dir, run_name, data_sha, main_process)
    trainer, tokenizer, callback, tracker, examples = run.trainer, run.tokenizer, run.callback, run.tracker, run.examples

    # 5. Train, resuming from the newest complete checkpoint if a previous run was killed.
    resume = last_checkpoint(run_dir)
    if main_process:
        remove_incomplete_checkpoints(run_dir)
        if resume:
            print(f"train: resuming from {resume}")
    started = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=resume)
    seconds = time.perf_counter() - started

    # 6. Save the adapter or model, the tokenizer and train_meta.json.
    save_final(trainer, tokenizer, final_dir)
    if main_process:
        metrics = _write_train_meta(cfg, trainer, callback, result, final_dir, seconds=seconds, resume=resume,
                                    counts=(run.trainable, run.total, len(records)), examples=examples,
                                    provenance=(ds, run_name, run.source, data_sha))
        tracker.summary({k: v for k, v in metrics.items() if isinstance(v, (int, float))})
        print(f"train: done in {seconds:.1f}s, loss {result.training_loss:.4f}; saved {final_dir}")
    tracker.finish()
    return final_dir


@dataclass
class _Run:
    trainer: object
    tokenizer: object
    callback: object
    tracker: object
    examples: list
    source: str
    trainable: int
    total: int


def _build_run(cfg: TrainConfig, records: list, hw, ds, run_dir: Path, run_name: str, data_sha: str,
               main_process: bool) -> _Run:
    """Model, tokenizer and method; examples tokenised with the response-only loss; tracking; the Trainer."""
    from transformers import set_seed

    from finetune import batching, distributed, methods, tracking
    from finetune.trainer import OncoTrainer, training_arguments

    set_seed(cfg.seed)  # before the method's weights are initialised (LoRA's A, the prompt encoder)
    model, tokenizer, source = methods.load_base(cfg)
    records = add_context(records, cfg.context_share, cfg.seed)
    examples = batching.encode_records(records, tokenizer, cfg.max_seq_len, methods.training_preamble(cfg))
    model = methods.apply_method(model, cfg)
    trainable, total = methods.count_parameters(model)
    if main_process:
        print(f"train: {cfg.method} on {source}: {trainable:,} of {total:,} parameters trainable; "
              f"{len(examples)} of {len(records)} records; ZeRO stage {distributed.zero_stage(ds)}; run {run_dir}")
    meta_config = {**config_dict(cfg), "dataset_sha256": data_sha, "base_source": source}
    tracker = tracking.make_tracker(cfg, run_dir, run_name, meta_config, main_process)
    callback = tracking.TrackingCallback(tracker)
    trainer = OncoTrainer(
        model=model, args=training_arguments(cfg, run_dir, ds), train_dataset=examples,
        data_collator=batching.make_collator(cfg.grouping, tokenizer), processing_class=tokenizer,
        callbacks=[callback], optimizer_cls_and_kwargs=distributed.client_optimizer(cfg, hw, ds),
        grouping=cfg.grouping, response_only_head=cfg.response_only_head,
    )
    return _Run(trainer, tokenizer, callback, tracker, examples, source, trainable, total)


def _check_hardware(cfg: TrainConfig):
    """The hardware and the DeepSpeed config (None without DeepSpeed), after checking the config's choices."""
    from finetune import distributed

    hw = distributed.Hardware.detect()
    distributed.check_choices(cfg)
    distributed.check_precision(cfg, hw)
    ds = distributed.deepspeed_config(cfg, hw)
    distributed.prepare_environment(use_deepspeed=ds is not None)
    return hw, ds


def _write_train_meta(cfg: TrainConfig, trainer, callback, result, final_dir: Path, *, seconds: float, resume,
                      counts: tuple[int, int, int], examples, provenance: tuple) -> dict:
    """``train_meta.json`` next to the saved run: config, data, metrics; returns the metrics."""
    from finetune import batching, distributed

    trainable, total, n_records = counts
    ds, run_name, source, data_sha = provenance
    history = trainer.state.log_history
    speeds = [e["tokens_per_second"] for e in callback.history if "tokens_per_second" in e]
    metrics = {
        "train_loss": result.training_loss, "global_step": trainer.state.global_step,
        "losses": [{"step": e["step"], "loss": e["loss"]} for e in history if "loss" in e],
        "grad_norms": [e["grad_norm"] for e in history if "grad_norm" in e],
        "tokens_per_second": sum(speeds) / len(speeds) if speeds else None, "tokens_per_second_log": speeds,
        "peak_memory_gib": distributed.peak_memory_gib(),
        "real_tokens_seen": trainer.state.num_input_tokens_seen, "seconds": round(seconds, 2),
        "trainable_parameters": trainable, "total_parameters": total, "resumed_from": resume,
        "world_size": distributed.world_size(),
    }
    meta = {
        "method": cfg.method, "base": cfg.base, "base_source": source, "mergeable": cfg.method != "ptuning",
        "config": config_dict(cfg), "deepspeed": ds, "run_name": run_name,
        "dataset": {"paths": list(cfg.data), "sha256": data_sha, "records": n_records,
                    "examples": len(examples), "real_tokens": batching.real_tokens(examples)},
        "metrics": metrics,
    }
    (final_dir / "train_meta.json").write_text(json.dumps(meta, indent=2, default=str) + "\n", encoding="utf-8")
    return metrics


@cli_command
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m finetune.train", description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, required=True, help="a YAML file under configs/<method>/")
    parser.add_argument("--local_rank", "--local-rank", type=int, help=argparse.SUPPRESS)  # set by `deepspeed`
    parser.add_argument("overrides", nargs="*", help="key=value overrides, e.g. max_steps=10 optimizer=lion")
    args = parser.parse_args(argv)
    train(load_config(TrainConfig, args.config, args.overrides))
    return 0


if __name__ == "__main__":
    sys.exit(main())
