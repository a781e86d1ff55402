"""How much memory each GPU needs for a training config, before renting hardware.

Usage::

    python -m finetune.plan --config configs/lora/tiny_cpu.yaml
    python -m finetune.plan --config configs/lora/llama3_8b.yaml --gpus 8 --gpu-memory 80
    python -m finetune.plan --config configs/full/tiny_cpu.yaml base=meta-llama/Llama-2-7b-hf --gpus 4
    python -m finetune.plan --config my.yaml base=my-org/model --params 7B --hidden 4096 --layers 32

For every ZeRO stage (0-3), offload choice (none, optimizer, optimizer+params) and
dtype (fp32, fp16, bf16) it prints parameters, gradients, optimizer states,
buffers and activations per GPU, the CPU memory per node that offloading needs,
and whether the configuration fits. Model sizes come from the base's
``config.json`` (a directory, version or alias; weights are never loaded) or,
for hub ids (no hub is reachable here), from a table of known shapes or flags.

The accounting is the ZeRO paper's (Rajbhandari et al. 2020, section 3): with
mixed precision and Adam each trained parameter costs 2 (fp16/bf16 weights) + 2
(gradients) + 12 (fp32 master weights, momentum, variance) = 16 bytes, the 12
partitioned over the GPUs from stage 1, the gradients from stage 2, the weights
at stage 3. Two DeepSpeed buffers are added, as DeepSpeed's own estimator does:
the fp32 copy of each GPU's gradient partition made for the optimizer step
(4 bytes per trained parameter, where the optimizer runs) and, at stage 3, the
largest layer gathered whole. Frozen weights (LoRA, P-tuning) cost only their 2
or 4 bytes. Activations follow the per-layer count of stored tensors in a LLaMA
block with memory-efficient attention (no s^2 score matrix), plus logits.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from core.config import load_config
from core.errors import OncoLoopError, cli_command
from finetune.train_config import TrainConfig

GiB = 2**30
DTYPES = ("fp32", "fp16", "bf16")
# (stage, offload): DeepSpeed offloads the optimizer from stage 1 on and parameters only at stage 3.
LAYOUTS = ((0, "none"), (1, "none"), (1, "optimizer"), (2, "none"), (2, "optimizer"),
           (3, "none"), (3, "optimizer"), (3, "optimizer+params"))
OPTIMIZER_STATES = {"adam": 2, "adamw": 2, "lamb": 2, "lion": 1}  # fp32 tensors kept per trained parameter


@dataclass(frozen=True)
class ModelShape:
    """The sizes of a LLaMA-family decoder, as in its config.json."""

    vocab: int
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    tied: bool = False
    params: int | None = None  # a given total overrides the count from the shape (--params)

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * (self.hidden // self.heads)

    def linears(self) -> dict[str, tuple[int, int]]:
        """(in, out) features of each linear module of one decoder layer."""
        h, i, kv = self.hidden, self.intermediate, self.kv_dim
        return {"q_proj": (h, h), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (h, h),
                "gate_proj": (h, i), "up_proj": (h, i), "down_proj": (i, h)}

    def total_params(self) -> int:
        """All parameters (tied embeddings counted once).

        >>> LLAMA2_7B.total_params()
        6738415616
        """
        if self.params:
            return self.params
        per_layer = sum(a * b for a, b in self.linears().values()) + 2 * self.hidden  # two RMSNorms
        heads = 1 if self.tied else 2
        return self.layers * per_layer + heads * self.vocab * self.hidden + self.hidden

    def largest_layer_params(self) -> int:
        """Parameters of the largest single module, which ZeRO-3 gathers whole (embedding or an MLP matrix)."""
        return max(self.vocab * self.hidden, self.hidden * self.intermediate, self.hidden * self.hidden)


LLAMA2_7B = ModelShape(32000, 4096, 11008, 32, 32, 32)
KNOWN_SHAPES = {  # from the models' published config.json files
    "meta-llama/Llama-2-7b-hf": LLAMA2_7B,
    "meta-llama/Llama-2-13b-hf": ModelShape(32000, 5120, 13824, 40, 40, 40),
    "meta-llama/Llama-2-70b-hf": ModelShape(32000, 8192, 28672, 80, 64, 8),
    "meta-llama/Meta-Llama-3-8B": ModelShape(128256, 4096, 14336, 32, 32, 8),
    "meta-llama/Llama-3.1-8B": ModelShape(128256, 4096, 14336, 32, 32, 8),
    "meta-llama/Llama-3.1-70B": ModelShape(128256, 8192, 28672, 80, 64, 8),
    "meta-llama/Llama-3.2-1B": ModelShape(128256, 2048, 8192, 16, 32, 8, tied=True),
    "meta-llama/Llama-3.2-3B": ModelShape(128256, 3072, 8192, 28, 24, 8, tied=True),
    "mistralai/Mistral-7B-v0.1": ModelShape(32000, 4096, 14336, 32, 32, 8),
}
KNOWN_SHAPES.update({  # chat / instruct variants share their base's shape
    "meta-llama/Llama-2-7b-chat-hf": KNOWN_SHAPES["meta-llama/Llama-2-7b-hf"],
    "meta-llama/Llama-2-13b-chat-hf": KNOWN_SHAPES["meta-llama/Llama-2-13b-hf"],
    "meta-llama/Llama-2-70b-chat-hf": KNOWN_SHAPES["meta-llama/Llama-2-70b-hf"],
    "meta-llama/Meta-Llama-3-8B-Instruct": KNOWN_SHAPES["meta-llama/Meta-Llama-3-8B"],
    "meta-llama/Llama-3.1-8B-Instruct": KNOWN_SHAPES["meta-llama/Llama-3.1-8B"],
    "meta-llama/Llama-3.1-70B-Instruct": KNOWN_SHAPES["meta-llama/Llama-3.1-70B"],
    "meta-llama/Llama-3.2-1B-Instruct": KNOWN_SHAPES["meta-llama/Llama-3.2-1B"],
    "meta-llama/Llama-3.2-3B-Instruct": KNOWN_SHAPES["meta-llama/Llama-3.2-3B"],
    "mistralai/Mistral-7B-Instruct-v0.1": KNOWN_SHAPES["mistralai/Mistral-7B-v0.1"],
})


@dataclass(frozen=True)
class Layout:
    """One way to run the job: ZeRO stage, what is offloaded, dtype, and the GPUs."""

    stage: int
    offload: str  # none | optimizer | optimizer+params
    dtype: str  # fp32 | fp16 | bf16
    gpus: int = 1
    nodes: int = 1


@dataclass(frozen=True)
class Estimate:
    """Bytes per GPU (and per node of CPU memory) for one layout."""

    layout: Layout
    params: int
    grads: int
    optimizer: int
    buffers: int
    activations: int
    activations_checkpointed: int
    cpu_per_node: int
    gradient_checkpointing: bool

    @property
    def model_states(self) -> int:
        return self.params + self.grads + self.optimizer + self.buffers

    @property
    def total(self) -> int:
        act = self.activations_checkpointed if self.gradient_checkpointing else self.activations
        return self.model_states + act


def parse_count(text: str) -> int:
    """A parameter count such as ``7B``, ``6.7e9`` or ``125M``.

    >>> parse_count("7B"), parse_count("125m"), parse_count("6.7e9")
    (7000000000, 125000000, 6700000000)
    """
    match = re.fullmatch(r"\s*([0-9.]+(?:e[0-9]+)?)\s*([kmbt]?)\s*", text.lower())
    if not match:
        raise OncoLoopError(f"cannot read {text!r} as a parameter count; write e.g. 7B, 125M or 6.7e9.")
    scale = {"": 1, "k": 1e3, "m": 1e6, "b": 1e9, "t": 1e12}[match.group(2)]
    return int(round(float(match.group(1)) * scale))


def shape_from_config(cfg: dict) -> ModelShape:
    """A ``ModelShape`` from a Hugging Face LLaMA-style ``config.json`` dict.

    >>> shape_from_config({"vocab_size": 400, "hidden_size": 32, "intermediate_size": 64,
    ...     "num_hidden_layers": 2, "num_attention_heads": 2, "tie_word_embeddings": True}).kv_heads
    2
    """
    try:
        heads = int(cfg["num_attention_heads"])
        return ModelShape(vocab=int(cfg["vocab_size"]), hidden=int(cfg["hidden_size"]),
                          intermediate=int(cfg["intermediate_size"]), layers=int(cfg["num_hidden_layers"]),
                          heads=heads, kv_heads=int(cfg.get("num_key_value_heads") or heads),
                          tied=bool(cfg.get("tie_word_embeddings", False)))
    except (KeyError, TypeError, ValueError) as e:
        raise OncoLoopError(f"config.json lacks a LLaMA-style size field ({e}); give the sizes with "
                            "--hidden/--layers/--intermediate/--vocab/--heads.") from e


def _config_json(path: Path) -> dict:
    meta_file = path / "meta.json"
    if not (path / "config.json").is_file() and meta_file.is_file():  # an adapter version: read its base
        base = json.loads(meta_file.read_text(encoding="utf-8")).get("base", "")
        path = Path(base)
    if not (path / "config.json").is_file():
        raise OncoLoopError(f"{path} has no config.json; point base at a model directory or version.")
    return json.loads((path / "config.json").read_text(encoding="utf-8"))


def _known_by_name(base: str) -> ModelShape | None:
    """A known shape whose hub name ends like ``base`` (a local copy of a hub model, by folder name).

    >>> _known_by_name("/models/Meta-Llama-3-8B") == KNOWN_SHAPES["meta-llama/Meta-Llama-3-8B"]
    True
    """
    name = Path(base).name.lower()
    return next((s for k, s in KNOWN_SHAPES.items() if k.split("/")[-1].lower() == name), None)


def resolve_shape(base: str, overrides: dict[str, int] | None = None) -> ModelShape:
    """The shape of ``base``: a model directory, a registered version or alias, or a known hub id.

    ``overrides`` (hidden, layers, intermediate, vocab, heads, kv_heads, params) replace
    what was read; with hidden and layers given, no lookup is needed at all.

    Raises:
        OncoLoopError: the base cannot be found and the sizes are not given.
    """
    overrides = {k: v for k, v in (overrides or {}).items() if v}
    shape: ModelShape | None = None
    if Path(base).expanduser().is_dir():
        shape = shape_from_config(_config_json(Path(base).expanduser()))
    elif base in KNOWN_SHAPES:
        shape = KNOWN_SHAPES[base]
    elif _known_by_name(base):  # e.g. base: /models/Meta-Llama-3-8B in a GPU config, planned elsewhere
        shape = _known_by_name(base)
    elif {"hidden", "layers"} <= set(overrides):
        h = overrides["hidden"]
        shape = ModelShape(vocab=32000, hidden=h, intermediate=int(8 * h / 3 / 256 + 1) * 256,
                           layers=overrides["layers"], heads=max(1, h // 128), kv_heads=max(1, h // 128))
    else:
        from feedback.db import open_store
        from serve.registry import Registry

        try:
            shape = shape_from_config(_config_json(Path(Registry(open_store()).get(base).path)))
        except OncoLoopError as e:
            known = ", ".join(sorted(KNOWN_SHAPES)[:6])
            raise OncoLoopError(
                f"cannot find the sizes of base {base!r}: it is not a directory, not a registered version "
                f"({e}) and not a known hub model ({known}, ...). Give them: --params 7B --hidden 4096 "
                "--layers 32 [--intermediate --vocab --heads --kv-heads].") from e
    if "kv_heads" not in overrides and "heads" in overrides:
        overrides["kv_heads"] = overrides["heads"]
    return replace(shape, **overrides)


def trainable_params(shape: ModelShape, cfg: TrainConfig) -> int:
    """Parameters the optimizer updates: all (full), the LoRA matrices, or the P-tuning prompt encoder.

    >>> cfg = TrainConfig(method="lora", lora_r=8, lora_target_modules=["q_proj", "v_proj"])
    >>> trainable_params(LLAMA2_7B, cfg)  # 32 layers x 2 modules x 8 x (4096 + 4096)
    4194304
    """
    if cfg.method == "full":
        return shape.total_params()
    if cfg.method == "lora":
        linears = shape.linears()
        unknown = [m for m in cfg.lora_target_modules if m not in linears and m != "lm_head"]
        if unknown:
            raise OncoLoopError(f"unknown LoRA target module(s) {', '.join(unknown)}; "
                                f"known: {', '.join([*linears, 'lm_head'])}.")
        per_layer = sum(cfg.lora_r * sum(linears[m]) for m in cfg.lora_target_modules if m in linears)
        head = cfg.lora_r * (shape.hidden + shape.vocab) if "lm_head" in cfg.lora_target_modules else 0
        return shape.layers * per_layer + head
    if cfg.method == "ptuning":
        d, e, n = shape.hidden, cfg.ptuning_encoder_hidden_size, cfg.ptuning_virtual_tokens
        if cfg.ptuning_encoder_type.upper() == "LSTM":  # peft: 2-layer bidirectional LSTM, then a 2-layer MLP
            lstm = 2 * (4 * e * (d + e) + 8 * e) + 2 * (4 * e * (2 * e + e) + 8 * e)
            encoder = lstm + (2 * e * 2 * e + 2 * e) + (2 * e * d + d)
        else:  # peft: Linear(d, e) ReLU Linear(e, e) ReLU Linear(e, d)
            encoder = (d * e + e) + (e * e + e) + (e * d + d)
        return n * d + encoder
    raise OncoLoopError(f"unknown method {cfg.method!r}; use lora, ptuning or full.")


def activation_bytes(shape: ModelShape, cfg: TrainConfig, dtype: str, checkpointing: bool) -> int:
    """Activations stored for the backward pass of one micro-batch on one GPU.

    Per layer and token a LLaMA block keeps about 6h + 2*kv + 4*i values (norm inputs
    and outputs, q/k/v, attention output, residual, the SwiGLU gate, up and product);
    with checkpointing only each layer's input stays, plus one layer recomputed at a
    time. Logits add b*s*vocab values in the dtype, an fp32 copy for the loss and its
    log-softmax. P-tuning lengthens the sequence by its virtual tokens.
    """
    a = 4 if dtype == "fp32" else 2
    tokens = cfg.per_device_batch_size * (cfg.max_seq_len + (cfg.ptuning_virtual_tokens
                                                             if cfg.method == "ptuning" else 0))
    layer = tokens * (6 * shape.hidden + 2 * shape.kv_dim + 4 * shape.intermediate) * a
    logits = tokens * shape.vocab * (a + 4 + (4 if a == 2 else 0))
    if checkpointing:
        return shape.layers * tokens * shape.hidden * a + layer + logits
    return shape.layers * layer + logits


def estimate(shape: ModelShape, cfg: TrainConfig, layout: Layout) -> Estimate:
    """Per-GPU memory of ``cfg`` on ``shape`` under ``layout`` (see the module docstring)."""
    n, stage = layout.gpus, layout.stage
    mixed = layout.dtype != "fp32"
    p = 2 if mixed else 4
    trained = trainable_params(shape, cfg)
    frozen = 0 if cfg.method == "full" else shape.total_params()  # adapters add to the frozen base
    if cfg.optimizer not in OPTIMIZER_STATES:
        raise OncoLoopError(f"unknown optimizer {cfg.optimizer!r}; use one of {', '.join(OPTIMIZER_STATES)}.")
    states = 4 * OPTIMIZER_STATES[cfg.optimizer] + (4 if mixed else 0)  # + fp32 master weights
    off_opt, off_params = layout.offload != "none", layout.offload == "optimizer+params"
    part_opt = n if stage >= 1 else 1

    params = 0 if off_params else (trained + frozen) * p // (n if stage == 3 else 1)
    grads = 0 if off_opt else trained * p // (n if stage >= 2 else 1)
    optimizer = 0 if off_opt else trained * states // part_opt
    fp32_grads = 0 if (off_opt or not mixed) else trained * 4 // part_opt
    gathered = shape.largest_layer_params() * p if stage == 3 else 0
    cpu = 0
    if off_opt:  # master weights (or the fp32 copy), optimizer states and fp32 gradients live on the CPU
        cpu += trained * (4 + 4 * OPTIMIZER_STATES[cfg.optimizer] + 4) // layout.nodes
    if off_params:
        cpu += (trained + frozen) * p // layout.nodes
    return Estimate(layout, params, grads, optimizer, fp32_grads + gathered,
                    activation_bytes(shape, cfg, layout.dtype, False),
                    activation_bytes(shape, cfg, layout.dtype, True), cpu, cfg.gradient_checkpointing)


def plan(shape: ModelShape, cfg: TrainConfig, gpus: int = 1, nodes: int = 1) -> list[Estimate]:
    """Every layout x dtype for ``cfg`` on ``gpus`` GPUs over ``nodes`` nodes."""
    return [estimate(shape, cfg, Layout(stage, offload, dtype, gpus, nodes))
            for stage, offload in LAYOUTS for dtype in DTYPES]


def deepspeed_choice(path: str) -> tuple[int, str] | None:
    """(stage, offload) named by a DeepSpeed JSON config, or None when no config is set.

    Raises:
        OncoLoopError: the file is missing or not JSON.
    """
    if not path:
        return None
    file = Path(path)
    if not file.is_file() and not file.is_absolute():  # shipped configs name paths from the repository root
        file = Path(__file__).resolve().parent.parent / path
    if not file.is_file():
        raise OncoLoopError(f"DeepSpeed config {path} not found; shipped ones are under configs/deepspeed/.")
    try:
        zero = json.loads(file.read_text(encoding="utf-8")).get("zero_optimization", {})
    except json.JSONDecodeError as e:
        raise OncoLoopError(f"DeepSpeed config {path} is not valid JSON ({e}).") from e
    on = lambda key: (zero.get(key) or {}).get("device", "none") not in ("none", None)  # noqa: E731
    offload = "optimizer+params" if on("offload_param") else "optimizer" if on("offload_optimizer") else "none"
    return int(zero.get("stage", 0)), offload


def verdict(e: Estimate, gpu_memory: float, cpu_memory: float | None = None) -> str:
    """``yes``, ``tight`` (over 90% of the GPU, little room for the CUDA context and allocator) or ``no``."""
    if e.total > gpu_memory * GiB or (cpu_memory is not None and e.cpu_per_node > cpu_memory * GiB):
        return "no"
    return "tight" if e.total > 0.9 * gpu_memory * GiB else "yes"


def render(estimates: list[Estimate], gpu_memory: float, cpu_memory: float | None,
           chosen: tuple[int, str, str] | None) -> str:
    """The table a person reads: GiB per GPU for each layout, and whether it fits."""
    g = lambda b: f"{b / GiB:8.2f}"  # noqa: E731
    lines = [f"{'stage':>5} {'offload':<16} {'dtype':<5} {'params':>8} {'grads':>8} {'optim':>8} {'buffers':>8} "
             f"{'act':>8} {'act+ckpt':>8} {'total':>8} {'CPU/node':>8}  fits {gpu_memory:g} GiB"]
    for e in estimates:
        lay = e.layout
        mark = " <- this config" if chosen == (lay.stage, lay.offload, lay.dtype) else ""
        lines.append(f"{lay.stage:>5} {lay.offload:<16} {lay.dtype:<5} {g(e.params)} {g(e.grads)} {g(e.optimizer)} "
                     f"{g(e.buffers)} {g(e.activations)} {g(e.activations_checkpointed)} {g(e.total)} "
                     f"{g(e.cpu_per_node)}  {verdict(e, gpu_memory, cpu_memory)}{mark}")
    return "\n".join(lines)


def _count_arg(text: str) -> int:
    try:
        return parse_count(text)
    except OncoLoopError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


@cli_command
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m finetune.plan", description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, type=Path, help="a training config (configs/<method>/*.yaml)")
    parser.add_argument("overrides", nargs="*", help="key=value config overrides, e.g. base=... method=full")
    parser.add_argument("--gpus", type=int, default=1, help="GPUs in all (default 1)")
    parser.add_argument("--nodes", type=int, default=1, help="machines the GPUs are spread over (default 1)")
    parser.add_argument("--gpu-memory", type=float, default=80.0, help="GiB per GPU (default 80, an H100)")
    parser.add_argument("--cpu-memory", type=float, help="GiB of CPU memory per node, for offloading")
    for flag in ("hidden", "layers", "intermediate", "vocab", "heads", "kv-heads"):
        parser.add_argument(f"--{flag}", type=int, help=f"model {flag} (for hub ids without a known shape)")
    parser.add_argument("--params", type=_count_arg, help="total parameters, e.g. 7B (overrides the count)")
    parser.add_argument("--json", action="store_true", help="print the estimates as JSON (bytes)")
    args = parser.parse_args(argv)
    if args.gpus < 1 or args.nodes < 1 or args.gpus % args.nodes:
        raise OncoLoopError("--gpus must be a positive multiple of --nodes.")
    cfg = load_config(TrainConfig, args.config, args.overrides)
    sizes = {"hidden": args.hidden, "layers": args.layers, "intermediate": args.intermediate,
             "vocab": args.vocab, "heads": args.heads, "kv_heads": args.kv_heads, "params": args.params}
    shape = resolve_shape(cfg.base, sizes)
    estimates = plan(shape, cfg, args.gpus, args.nodes)
    ds = deepspeed_choice(cfg.deepspeed)
    if args.json:
        print(json.dumps([{**asdict(e), "total": e.total} for e in estimates], indent=1))
        return 0
    trained = trainable_params(shape, cfg)
    print(f"plan: {cfg.method} on {cfg.base}: {shape.total_params() / 1e6:,.1f}M parameters, "
          f"{trained / 1e6:,.3f}M trained; {cfg.optimizer}, micro-batch {cfg.per_device_batch_size} x "
          f"{cfg.max_seq_len} tokens, gradient checkpointing {'on' if cfg.gradient_checkpointing else 'off'}; "
          f"{args.gpus} GPU(s) on {args.nodes} node(s). GiB per GPU:")
    chosen = (ds[0], ds[1], cfg.precision) if ds else (0, "none", cfg.precision)
    print(render(estimates, args.gpu_memory, args.cpu_memory, chosen))
    verdicts = [verdict(e, args.gpu_memory, args.cpu_memory) for e in estimates]
    print(f"plan: {verdicts.count('yes')} of {len(estimates)} configurations fit in {args.gpu_memory:g} GiB per GPU"
          + (f" and {args.cpu_memory:g} GiB CPU per node" if args.cpu_memory else "")
          + f", {verdicts.count('tight')} more only just (over 90%). 'total' counts activations with or without "
          "checkpointing as the config says; CUDA context, allocator fragmentation and communication buckets "
          "come on top.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
