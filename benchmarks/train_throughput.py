"""Real (non-padding) tokens/s of our LoRA training against a plain HF Trainer + peft baseline.

Usage::

    python benchmarks/train_throughput.py [--steps 30] [--rounds 3] [--batch 16]

Same model (the bundled tiny LLaMA), same data (the seed set), same LoRA settings, same
number of optimizer steps and batch size. Variants:

- ``baseline``: ``transformers.Trainer`` + peft, random order, padded to the longest in each batch;
- ``length``: ``finetune.trainer.OncoTrainer`` with length grouping (our default);
- ``packing``: OncoTrainer with each batch flattened into one row with position ids.

Each measurement runs in its own process (so peak memory is per variant), variants
alternate round by round, and the median round is reported. Only the training loop is
timed; tokens are counted from attention masks (padding excluded).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
MODEL = REPO / "assets" / "tiny-oncology-llama"
DATA = REPO / "data" / "oncology_seed.jsonl"
VARIANTS = ("baseline", "length", "packing")


def measure(variant: str, steps: int, batch: int, out: str) -> dict:
    """Train ``steps`` LoRA steps with one variant; return real tokens, seconds and peak RSS."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer, TrainingArguments, set_seed

    from finetune import batching, methods
    from finetune.train_config import TrainConfig
    from finetune.trainer import OncoTrainer

    cfg = TrainConfig(base=str(MODEL), method="lora", per_device_batch_size=batch, max_steps=steps,
                      grouping="length" if variant == "baseline" else variant)
    set_seed(0)
    tok = AutoTokenizer.from_pretrained(MODEL)
    model = methods.apply_method(AutoModelForCausalLM.from_pretrained(MODEL), cfg)
    examples = batching.encode_records(batching.load_records([str(DATA)]), tok, cfg.max_seq_len)
    args = TrainingArguments(output_dir=out, max_steps=steps, per_device_train_batch_size=batch, learning_rate=1e-3,
                             report_to="none", save_strategy="no", logging_steps=steps, disable_tqdm=True,
                             include_num_input_tokens_seen="non_padding", remove_unused_columns=False,
                             dataloader_num_workers=0, seed=0)
    if variant == "baseline":
        from transformers import DataCollatorForSeq2Seq

        trainer = Trainer(model=model, args=args, train_dataset=examples, processing_class=tok,
                          data_collator=DataCollatorForSeq2Seq(tok, padding="longest", label_pad_token_id=-100))
    else:
        trainer = OncoTrainer(model=model, args=args, train_dataset=examples, processing_class=tok,
                              data_collator=batching.make_collator(variant, tok.pad_token_id), grouping=variant)
    started = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - started
    tokens = trainer.state.num_input_tokens_seen
    return {"variant": variant, "tokens": tokens, "seconds": seconds, "tokens_per_second": tokens / seconds,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "threads": torch.get_num_threads()}


def run_worker(variant: str, steps: int, batch: int, out: Path) -> dict:
    cmd = [sys.executable, __file__, "--worker", variant, "--steps", str(steps), "--batch", str(batch),
           "--out", str(out / variant)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    if proc.returncode != 0:
        raise SystemExit(f"{variant} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--worker", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--out", default="/tmp/oncoloop-train-throughput")
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(measure(args.worker, args.steps, args.batch, args.out)))
        return 0

    variants = args.variants.split(",")
    results: dict[str, list[dict]] = {v: [] for v in variants}
    for round_ in range(args.rounds):
        for variant in variants if round_ % 2 == 0 else reversed(variants):
            r = run_worker(variant, args.steps, args.batch, Path(args.out))
            results[variant].append(r)
            print(f"round {round_ + 1} {variant:9s} {r['tokens_per_second']:8.0f} real tokens/s "
                  f"({r['tokens']} tokens in {r['seconds']:.2f}s), peak RSS {r['peak_rss_mib']:.0f} MiB", flush=True)
    med = {v: statistics.median(r["tokens_per_second"] for r in rs) for v, rs in results.items()}
    print(f"\nLoRA on {MODEL.name}, {args.steps} steps x batch {args.batch}, median of {args.rounds} rounds:")
    for v in variants:
        peak = max(r["peak_rss_mib"] for r in results[v])
        ratio = f"{med[v] / med['baseline']:.2f}x baseline" if "baseline" in med else ""
        print(f"  {v:9s} {med[v]:8.0f} real tokens/s  peak RSS {peak:5.0f} MiB  {ratio}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
