"""LoRA training on one GPU: bf16 vs fp16 vs fp32+tf32, ZeRO-2 vs ZeRO-3 (real tokens/s, MFU, peak memory).

Run through ``benchmarks/gpu/train.sh`` (it installs the DeepSpeed wheel first). Builds a
random-initialised LLaMA of about 1.1B parameters on the spot (no hub), trains it with
``python -m finetune.train`` once per setting and writes
``benchmarks/results/train_gpu_<device>.json`` and ``.md``.

``--dry-run`` runs every setting on CPU with a tiny model, each precision as plain fp32
(the Trainer runs neither fp16 nor bf16 with DeepSpeed on a CPU), so every code path up to
the GPU-only flags runs before a GPU is rented. Its results go to the work folder, not
``benchmarks/results/``. Results are rewritten after every setting, so a run cut short by
the time limit keeps what it measured.

MFU: model FLOPs per real token = 4·N_frozen + 6·N_trainable (LoRA computes no weight
gradients for frozen weights) + 12·layers·hidden·seq_len (attention, forward and backward),
divided by the GPU's dense peak for the precision (H100/H200 SXM: 989 TFLOP/s bf16/fp16,
494 TF32).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
PEAK_TFLOPS = {"bf16": 989.0, "fp16": 989.0, "tf32": 494.0, "fp32": 67.0}  # H100/H200 SXM dense
SETTINGS = [  # (label, precision, tf32, ZeRO config)
    ("bf16 ZeRO-2", "bf16", False, "zero2"),
    ("fp16 ZeRO-2", "fp16", False, "zero2"),
    ("fp32+tf32 ZeRO-2", "fp32", True, "zero2"),
    ("bf16 ZeRO-3", "bf16", False, "zero3"),
    ("fp16 ZeRO-3", "fp16", False, "zero3"),
    ("fp32+tf32 ZeRO-3", "fp32", True, "zero3"),
]


def build_model(out: Path, dry_run: bool) -> dict:
    """A random LLaMA (about 1.1B parameters, or tiny for a dry run) with the project tokenizer."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(REPO / "assets" / "tiny-oncology-llama")
    sizes = (dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4) if dry_run else
             dict(hidden_size=2048, intermediate_size=5632, num_hidden_layers=22, num_attention_heads=32))
    config = LlamaConfig(vocab_size=32000, num_key_value_heads=sizes["num_attention_heads"],
                         max_position_embeddings=2048, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                         pad_token_id=tok.pad_token_id, **sizes)
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return {"parameters": sum(p.numel() for p in model.parameters()), "layers": config.num_hidden_layers,
            "hidden": config.hidden_size}


def dry_precision(precision: str) -> str:
    """The precision a CPU dry run uses for a GPU setting: fp32 (DeepSpeed + fp16/bf16 need a GPU).

    >>> [dry_precision(p) for p in ("bf16", "fp16", "fp32")]
    ['fp32', 'fp32', 'fp32']
    """
    return "fp32"


def run_setting(label, precision, tf32, zero, model_dir, work, args) -> dict:
    """One ``python -m finetune.train`` run; its train_meta.json metrics."""
    out = work / label.replace(" ", "_").replace("+", "_")
    overrides = [f"base={model_dir}", f"output_dir={out}", f"max_steps={args.steps}", "tracker=none",
                 f"per_device_batch_size={args.batch}", f"max_seq_len={args.seq_len}", "logging_steps=5",
                 f"save_steps={args.steps + 1}", f"precision={precision}", f"tf32={str(tf32).lower()}",
                 f"deepspeed=configs/deepspeed/{zero}.json", "epochs=100", "lora_r=16"]
    if args.dry_run:
        overrides = [o for o in overrides if not o.startswith(("precision=", "tf32=", "logging_steps="))]
        overrides += [f"precision={dry_precision(precision)}", "tf32=false", "logging_steps=1"]
    shutil.rmtree(out, ignore_errors=True)  # a finished run left here would be "already complete"
    started = time.time()
    proc = subprocess.run([sys.executable, "-m", "finetune.train", "--config", "configs/lora/tiny_cpu.yaml",
                           *overrides], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    if proc.returncode != 0:
        return {"label": label, "error": proc.stderr[-1500:]}
    meta = json.loads((out / "final" / "train_meta.json").read_text())
    m = meta["metrics"]
    steady = m["tokens_per_second_log"][1:] or m["tokens_per_second_log"]  # first interval includes warm-up
    return {"label": label, "precision": dry_precision(precision) if args.dry_run else precision,
            "tf32": tf32 and not args.dry_run,
            "zero": zero, "tokens_per_second": statistics.median(steady), "peak_memory_gib": m["peak_memory_gib"],
            "trainable_parameters": m["trainable_parameters"], "total_parameters": m["total_parameters"],
            "mean_tokens_per_row": meta["dataset"]["real_tokens"] / meta["dataset"]["examples"],
            "wall_seconds": round(time.time() - started, 1)}


def mfu(r: dict, shape: dict) -> float | None:
    if "error" in r:
        return None
    n, n_train = r["total_parameters"], r["trainable_parameters"]
    flops_per_token = 4 * (n - n_train) + 6 * n_train + 12 * shape["layers"] * shape["hidden"] * r["mean_tokens_per_row"]
    peak = PEAK_TFLOPS["tf32" if r["tf32"] else r["precision"]] * 1e12
    return r["tokens_per_second"] * flops_per_token / peak


def write_results(stem: Path, device: str, shape: dict, args, results: list[dict]) -> None:
    """``<stem>.json`` and a Markdown table ``<stem>.md`` of the settings measured so far."""
    stem.with_suffix(".json").write_text(json.dumps({"device": device, "model": shape, "steps": args.steps,
                                                     "batch": args.batch, "seq_len": args.seq_len,
                                                     "results": results}, indent=2) + "\n")
    lines = [f"# LoRA training on {device}", "", f"Random LLaMA {shape['parameters'] / 1e9:.2f}B, {args.steps} steps, "
             f"batch {args.batch}, max_seq_len {args.seq_len}, seed data, length grouping.", "",
             "| setting | real tokens/s | MFU | peak memory (GiB) |", "| --- | ---: | ---: | ---: |"]
    for r in results:
        lines.append(f"| {r['label']} | failed | | |" if "error" in r else
                     f"| {r['label']} | {r['tokens_per_second']:.0f} | {100 * r['mfu']:.1f}% | {r['peak_memory_gib']:.1f} |")
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="tiny model on CPU, fp32 only")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--batch", type=int, default=None)
    parser.add_argument("--seq-len", type=int, default=1024)
    parser.add_argument("--work", type=Path, default=Path("/tmp/oncoloop-gpu-train-bench"))
    parser.add_argument("--only", help="comma-separated labels to run (default: all)")
    args = parser.parse_args(argv)
    args.steps = args.steps or (3 if args.dry_run else 25)
    args.batch = args.batch or (2 if args.dry_run else 16)
    import torch

    device = "cpu-dry-run" if args.dry_run else torch.cuda.get_device_name(0).replace(" ", "_")
    if not args.dry_run and not torch.cuda.is_available():
        print("error: no CUDA GPU; use --dry-run on CPU", file=sys.stderr)
        return 2
    args.work.mkdir(parents=True, exist_ok=True)
    model_dir = args.work / "llama-random"
    shape = build_model(model_dir, args.dry_run)
    print(f"model: random LLaMA, {shape['parameters'] / 1e9:.2f}B parameters, on {device}", flush=True)
    results = []
    wanted = set(args.only.split(",")) if args.only else None
    results_dir = args.work if args.dry_run else REPO / "benchmarks" / "results"
    results_dir.mkdir(parents=True, exist_ok=True)
    stem = results_dir / f"train_gpu_{device}"
    for label, precision, tf32, zero in SETTINGS:
        if wanted and label not in wanted:
            continue
        r = run_setting(label, precision, tf32, zero, model_dir, args.work, args)
        label = r["label"] = f"{label} (dry run: {dry_precision(precision)})" if args.dry_run else label
        r["mfu"] = mfu(r, shape)
        results.append(r)
        if "error" in r:
            print(f"{label:18s} FAILED: {r['error'].strip().splitlines()[-1] if r['error'].strip() else ''}", flush=True)
        else:
            print(f"{label:18s} {r['tokens_per_second']:9.0f} real tokens/s  MFU {100 * r['mfu']:5.1f}%  "
                  f"peak {r['peak_memory_gib']:.1f} GiB  ({r['wall_seconds']}s)", flush=True)
        write_results(stem, device, shape, args, results)
    print(f"results: {stem}.json, {stem}.md")
    return 1 if any("error" in r for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
