"""DeepSpeed configs, precision checks, optimizer choice and the process environment.

The DeepSpeed JSON files under ``configs/deepspeed/`` hold what is specific to a ZeRO
stage (partitioning, offload); everything the training config already says (batch size,
accumulation, clipping, learning rate, precision) is ``"auto"`` there and filled in by the
Hugging Face Trainer, and the optimizer section is written here from ``optimizer=``, so
one value never lives in two places.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from core.errors import OncoLoopError
from core.process import free_port
from finetune.train_config import METHODS, OPTIMIZERS, PRECISIONS, GROUPINGS, TrainConfig

REPO = Path(__file__).resolve().parent.parent
# DeepSpeed's CPU ops are built against one Python environment's torch and DeepSpeed (ninja's build commands
# hold their absolute paths), so each environment gets its own folder: two checkouts sharing one would rebuild
# each other's ops at every switch (about a minute of gcc for Lion and the shared-memory comm op).
EXTENSIONS_DIR = (Path("~/.cache/oncoloop/torch_extensions").expanduser()
                  / hashlib.sha256(sys.prefix.encode()).hexdigest()[:12])
# DeepSpeed optimizer type names (its "optimizer.type" field).
_DS_NAMES = {"adam": "Adam", "adamw": "AdamW", "lamb": "Lamb", "lion": "Lion"}


@dataclass(frozen=True)
class Hardware:
    """What the machine can do, read once so checks stay pure functions."""

    cuda: bool
    bf16: bool  # bf16 arithmetic (CUDA Ampere+; CPUs through autocast)
    tf32: bool  # TF32 tensor cores (CUDA compute capability >= 8)
    cuda_ops: bool = True  # a CUDA toolkit (nvcc) to JIT-build DeepSpeed's fused GPU optimizers

    @classmethod
    def detect(cls) -> "Hardware":
        import torch

        if torch.cuda.is_available():
            from torch.utils.cpp_extension import CUDA_HOME

            major, _ = torch.cuda.get_device_capability()
            nvcc = CUDA_HOME is not None and (Path(CUDA_HOME) / "bin" / "nvcc").exists()
            return cls(cuda=True, bf16=torch.cuda.is_bf16_supported(), tf32=major >= 8, cuda_ops=nvcc)
        return cls(cuda=False, bf16=True, tf32=False)


def check_choices(cfg: TrainConfig) -> None:
    """Refuse unknown names and impossible combinations before anything loads.

    >>> check_choices(TrainConfig(optimizer="sgd"))
    Traceback (most recent call last):
    ...
    core.errors.OncoLoopError: unknown optimizer 'sgd'; use one of adam, adamw, lamb, lion.
    """
    for name, value, allowed in (("method", cfg.method, METHODS), ("optimizer", cfg.optimizer, OPTIMIZERS),
                                 ("precision", cfg.precision, PRECISIONS), ("grouping", cfg.grouping, GROUPINGS)):
        if value not in allowed:
            raise OncoLoopError(f"unknown {name} {value!r}; use one of {', '.join(allowed)}.")
    if cfg.method == "ptuning" and cfg.grouping == "packing":
        raise OncoLoopError("grouping=packing cannot be used with method=ptuning (virtual tokens are prepended "
                            "to each row, not to each packed sequence); use grouping=length.")
    if cfg.max_seq_len < 2 or cfg.per_device_batch_size < 1 or cfg.gradient_accumulation_steps < 1:
        raise OncoLoopError("max_seq_len must be >= 2, per_device_batch_size and gradient_accumulation_steps >= 1.")
    if cfg.save_steps < 1:
        raise OncoLoopError("save_steps must be >= 1 (checkpoints make a killed run resumable).")
    if cfg.fsdp and cfg.deepspeed:
        raise OncoLoopError("fsdp=true and deepspeed= are two ways to shard the same model; choose one "
                            "(set deepspeed= to empty, or fsdp=false).")
    if cfg.fsdp and cfg.method != "full":
        raise OncoLoopError("fsdp=true is for method=full (FSDP shards the whole model); LoRA and P-tuning "
                            "train few parameters: use deepspeed=configs/deepspeed/zero2.json for them.")


def check_precision(cfg: TrainConfig, hw: Hardware) -> None:
    """Refuse a precision (or FSDP) the hardware cannot do, with what to use instead.

    >>> check_precision(TrainConfig(precision="fp16"), Hardware(cuda=False, bf16=True, tf32=False))
    Traceback (most recent call last):
    ...
    core.errors.OncoLoopError: precision=fp16 needs a CUDA GPU and none is visible; use precision=fp32 (or bf16) on CPU.
    """
    if cfg.precision == "fp16" and not hw.cuda:
        raise OncoLoopError("precision=fp16 needs a CUDA GPU and none is visible; use precision=fp32 (or bf16) on CPU.")
    if cfg.precision == "bf16" and not hw.cuda and cfg.deepspeed:
        raise OncoLoopError("precision=bf16 with DeepSpeed needs a GPU (on CPU the Trainer runs bf16 only without "
                            "DeepSpeed); use precision=fp32, or drop deepspeed= to train in bf16 on this CPU.")
    if cfg.precision == "bf16" and not hw.bf16:
        raise OncoLoopError("this GPU has no bf16 support (it needs Ampere or newer); use precision=fp16 or fp32.")
    if cfg.fsdp and not hw.cuda:
        raise OncoLoopError(
            "fsdp=true needs CUDA GPUs: the Trainer shards with FSDP through accelerate, which (1.15) enables "
            "FSDP only for GPU-like devices, not for CPU processes (torch's own FSDP2 runs on CPU with gloo, "
            "accelerate does not drive it there). On CPU, shard full fine-tuning with DeepSpeed instead: "
            "deepspeed=configs/deepspeed/zero3.json fsdp=false (2 processes: torchrun --nproc_per_node 2 -m finetune.train ...)."
        )
    if cfg.tf32 and not hw.tf32:
        where = "this GPU is older than Ampere" if hw.cuda else "no CUDA GPU is visible"
        raise OncoLoopError(f"tf32=true needs an Ampere or newer NVIDIA GPU and {where}; set tf32=false.")


def resolve_path(path: str) -> Path:
    """A config-relative path: as given when it exists, else from the repository root."""
    p = Path(path).expanduser()
    return p if p.exists() or p.is_absolute() else REPO / p


def deepspeed_config(cfg: TrainConfig, hw: Hardware) -> dict | None:
    """The DeepSpeed config dict for the Trainer (None without DeepSpeed).

    Reads ``cfg.deepspeed``, checks the ZeRO stage and writes the optimizer section from
    ``cfg.optimizer``. DeepSpeed's CPU builds have no Lamb at all and run Lion only as the
    offloaded ``DeepSpeedCPULion``, so on CPU Lion gets ``offload_optimizer`` added (ZeRO
    1-3) and Lamb runs as finetune.optimizers.Lamb handed to DeepSpeed (see ``client_optimizer``).

    Raises:
        OncoLoopError: missing or malformed file, unknown ZeRO stage, or Lion at ZeRO 0 on CPU.
    """
    if not cfg.deepspeed:
        return None
    path = resolve_path(cfg.deepspeed)
    if not path.is_file():
        raise OncoLoopError(f"DeepSpeed config {cfg.deepspeed} not found; shipped ones are in configs/deepspeed/.")
    try:
        ds = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise OncoLoopError(f"DeepSpeed config {path} is not valid JSON: {e}") from e
    zero = ds.setdefault("zero_optimization", {"stage": 0})
    stage = zero.get("stage", 0)
    if stage not in (0, 1, 2, 3):
        raise OncoLoopError(f"{path}: unknown ZeRO stage {stage!r}; use 0, 1, 2 or 3.")
    if "optimizer" in ds:
        raise OncoLoopError(f"{path} has an optimizer section; remove it and choose with optimizer= "
                            f"({', '.join(OPTIMIZERS)}) so the choice lives in one place.")
    offload = zero.get("offload_optimizer", {}).get("device", "none") != "none"
    if not hw.cuda and cfg.optimizer == "lion" and not offload:
        if stage == 0:
            raise OncoLoopError("optimizer=lion on CPU runs only as DeepSpeed's offloaded CPU Lion, which needs "
                                "ZeRO stage 1-3; use deepspeed=configs/deepspeed/zero2_offload.json.")
        zero["offload_optimizer"] = {"device": "cpu"}
        offload = True
    if hw.cuda and not hw.cuda_ops and not offload and cfg.optimizer in ("lamb", "lion"):
        raise OncoLoopError(f"optimizer={cfg.optimizer} under DeepSpeed on GPUs needs its fused CUDA op, built "
                            f"with nvcc, and no CUDA toolkit is installed; install one (CUDA_HOME), use a config "
                            f"with offload_optimizer (zero2_offload.json), or use optimizer=adamw.")
    if client_optimizer(cfg, hw, ds) is None:
        params = {"lr": "auto", "weight_decay": "auto"}
        if cfg.optimizer in ("adam", "adamw"):
            params.update(betas="auto", eps="auto")
            # Without offload on CPU, DeepSpeed's FusedAdam does not exist; torch's Adam does. On a GPU
            # machine without a CUDA toolkit FusedAdam cannot be built: torch's (fused CUDA) Adam then.
            if not (hw.cuda and hw.cuda_ops) and not offload:
                params["torch_adam"] = True
            if cfg.optimizer == "adam":
                params["adam_w_mode"] = False
        ds["optimizer"] = {"type": _DS_NAMES[cfg.optimizer], "params": params}
    elif offload:
        ds["zero_force_ds_cpu_optimizer"] = False  # a torch optimizer on offloaded states is slow but correct
    return ds


def zero_stage(ds: dict | None) -> int | None:
    """The ZeRO stage of a DeepSpeed config dict (None without DeepSpeed).

    >>> zero_stage({"zero_optimization": {"stage": 3}}), zero_stage(None)
    (3, None)
    """
    return None if ds is None else ds.get("zero_optimization", {}).get("stage", 0)


def client_optimizer(cfg: TrainConfig, hw: Hardware, ds: dict | None):
    """``(optimizer class, kwargs)`` when the Trainer must build the optimizer itself, else None.

    Without DeepSpeed: torch Adam/AdamW, or Lamb/Lion from ``pytorch_optimizer``. With DeepSpeed its
    own optimizers are used, except Lamb on CPU (DeepSpeed has no CPU Lamb).
    """
    import torch
    from pytorch_optimizer import Lamb, Lion

    if ds is not None and not (cfg.optimizer == "lamb" and not hw.cuda):
        return None
    kwargs = {"lr": cfg.lr, "weight_decay": cfg.weight_decay}
    return {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "lamb": Lamb, "lion": Lion}[cfg.optimizer], kwargs


def prepare_environment(use_deepspeed: bool) -> None:
    """Process-group variables for a single process (launchers set their own) and the extension cache.

    DeepSpeed compiles its CPU ops (Adam, Lion, shared-memory comm) once with gcc; keeping them
    in ``~/.cache/oncoloop/torch_extensions/<environment>`` lets every later run of this environment reuse them.
    """
    os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(EXTENSIONS_DIR))
    if use_deepspeed and "RANK" not in os.environ:
        os.environ.update(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1",
                          MASTER_PORT=os.environ.get("MASTER_PORT", str(free_port())))


def peak_memory_gib() -> float:
    """Peak memory of this process: GPU memory allocated by torch on CUDA, else resident RAM."""
    import resource

    import torch

    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def world_size() -> int:
    """Processes in the training job (1 without a process group)."""
    import torch.distributed as dist

    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_main_process() -> bool:
    return os.environ.get("RANK", "0") == "0"
