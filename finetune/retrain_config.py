"""The retrain job's config: which feedback, which recipe, which gate.

Shipped configs: ``configs/retrain/smollm2_cpu.yaml`` (the embedded default on a CPU, the default),
``configs/retrain/tiny_cpu.yaml`` (the tiny test fixture) and ``configs/retrain/llama3_8b_gpu.yaml``. Every field can be overridden as ``key=value``.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class RetrainConfig:
    """Everything ``python -m finetune.retrain`` decides; saved with the dataset snapshot and the version."""

    # the training recipe: a TrainConfig YAML (method, optimizer, precision, ...) and overrides for it
    train_config: str = "configs/lora/smollm2_cpu.yaml"
    method: str = ""  # lora | ptuning | full; "" keeps the recipe's
    deepspeed: str = "configs/deepspeed/zero2.json"  # DeepSpeed config for the run; "" trains without it
    train_overrides: list[str] = field(default_factory=list)  # key=value for the TrainConfig
    launcher: str = ""  # "" = one process; e.g. "torchrun --nproc_per_node 8" or "deepspeed --num_gpus 8"
    merge_scale: float = 1.0  # LoRA: merge this fraction of the trained update into the champion (WiSE-FT)
    # the training set: the seed (replayed against forgetting) plus the new reviewed feedback
    seed_data: list[str] = field(default_factory=lambda: ["data/oncology_seed.jsonl"])
    replay_records: int = 0  # seed records replayed: 0 = all of them, N = a fixed-seed sample of N
    new_share: float = 0.3  # share of training examples that are new feedback (repeated up to it, never below 1x)
    min_new_records: int = 1  # fewer new reviewed records than this: nothing to do (safe from cron)
    reviewed_only: bool = True  # a well-rated answer needs a reviewer's approval too, like a correction
    embedder: str = "auto"  # de-duplication: auto | minilm | lexical
    # the gate
    gate_policy: str = "configs/gate/smollm2_cpu.yaml"
    gateway_url: str = ""  # "" = the gate starts a private gateway; else this one must serve the candidate
    promote: bool = True  # False: evaluate and report only
    actor: str = "retrain"  # recorded with the alias move
    seed: int = 0
