"""The training config: one typed dataclass, loaded from YAML with key=value overrides.

Shipped configs: ``configs/<method>/<name>.yaml`` (``lora/tiny_cpu.yaml``, ...);
DeepSpeed configs: ``configs/deepspeed/*.json``, named by the ``deepspeed`` field.
"""

from __future__ import annotations

from dataclasses import dataclass, field

METHODS = ("lora", "ptuning", "full")
OPTIMIZERS = ("adam", "adamw", "lamb", "lion")
PRECISIONS = ("fp32", "fp16", "bf16")
GROUPINGS = ("none", "length", "packing")


@dataclass
class TrainConfig:
    """Everything that decides a training run; saved whole into the run and the version's meta.json."""

    # what to train
    base: str = "champion"  # registry alias or version id, a local path, or a hub id
    method: str = "lora"  # lora | ptuning | full
    data: list[str] = field(default_factory=lambda: ["data/oncology_seed.jsonl"])
    output_dir: str = ""  # default: $ONCOLOOP_HOME/runs/<run_name>
    run_name: str = ""  # default: <method>-<hash of config + data>, so the same command resumes
    seed: int = 42
    # training prompts open with this guard config's system preamble, exactly as the gateway sends it
    # ("" or a guard with send_preamble: false: no system message, for a model served that way)
    guard: str = "configs/guard/default.yaml"
    # share of records whose prompt also carries approved answers as context (their own and their nearest
    # neighbour's, finetune/context.py), so the model learns to use what the gateway retrieves
    context_share: float = 0.0
    # LoRA
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_target_modules: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])
    # P-tuning (peft PromptEncoder)
    ptuning_virtual_tokens: int = 20
    ptuning_encoder_type: str = "MLP"  # MLP | LSTM
    ptuning_encoder_hidden_size: int = 128
    # optimisation
    optimizer: str = "adamw"  # adam | adamw | lamb | lion
    lr: float = 2e-4
    weight_decay: float = 0.0
    warmup_ratio: float = 0.03
    lr_scheduler: str = "cosine"
    max_grad_norm: float = 1.0
    epochs: float = 3.0
    max_steps: int = -1  # > 0 overrides epochs
    per_device_batch_size: int = 8
    gradient_accumulation_steps: int = 1
    gradient_checkpointing: bool = False
    max_seq_len: int = 512
    grouping: str = "length"  # none | length | packing: how sequences are batched to avoid padding
    response_only_head: bool = True  # LM head + loss at response positions only (same loss, less compute)
    # precision and distribution
    precision: str = "fp32"  # fp32 | fp16 | bf16
    tf32: bool = False  # TF32 matmuls on Ampere+ GPUs
    deepspeed: str = ""  # path to a DeepSpeed JSON config under configs/deepspeed/; "" = none
    fsdp: bool = False  # full fine-tuning sharded with FSDP2 through accelerate (CUDA GPUs; see configs/full/)
    # checkpoints and tracking
    save_steps: int = 50
    save_total_limit: int = 2
    logging_steps: int = 10
    tracker: str = "wandb"  # wandb | none
    wandb_project: str = "oncoloop"
    wandb_mode: str = "offline"  # offline | online (sync offline runs later with `wandb sync`)
