"""Real (non-padding) tokens/s of our LoRA training against a plain HF Trainer + peft baseline.

Usage::

    python benchmarks/train_throughput.py [--steps 30] [--rounds 3] [--batch 16]
        [--model bundled|7m|smollm2] [--data seed|varied] [--threads N] [--variants ours,trl,...]

Same model, same data, same LoRA settings, same number of optimizer steps and batch size.
Models: ``bundled`` (assets/tiny-oncology-llama, 1.6M parameters), ``7m`` (a random
7.4M-parameter LLaMA with the project tokenizer, built on the spot) or ``smollm2`` (the converted
SmolLM2-135M-Instruct base, ``finetune.base_model.converted_base``). Data: ``seed``
(data/oncology_seed.jsonl, 105-209 tokens per example) or ``varied`` (the seed records with
Alpaca-like spread lengths: a third answered in one sentence, a third as written, a third
with 1-3 further answers of the same topic appended; ~60-560 tokens). Variants:

- ``baseline``: ``transformers.Trainer`` + peft, random order, padded to the longest in each batch;
- ``grouped``: ``finetune.trainer.OncoTrainer`` with length grouping, the model's own loss;
- ``ours``: OncoTrainer as ``finetune.train`` runs it: length grouping and the LM head
  applied at response positions only (``response_only_head``);
- ``packing``: ``ours`` with each batch flattened into one row with position ids;
- ``trl``: TRL's ``SFTTrainer`` (needs ``pip install trl``; not a dependency) on the same token ids with
  ``completion_only_loss`` (a ``completion_mask`` column, prompts masked) and the Trainer's
  ``group_by_length`` sampler; its fused LM head and its own loss, no OncoTrainer override;
- ``trl_padfree``: ``trl`` with ``padding_free`` (each batch one row with position ids), random order.

Each measurement runs in its own process (so peak memory is per variant), variants
alternate round by round (order reversed every other round), and the median round is
reported. Only the training loop is timed; tokens are counted from attention masks
(padding excluded). Tokens per CPU-second (the process's CPU time) are printed too: on a
shared machine they move less with other jobs' load than tokens per wall-clock second.
"""

from __future__ import annotations

import argparse
import json
import os
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
VARIANTS = ("baseline", "grouped", "ours", "packing", "trl", "trl_padfree")
DEFAULT_VARIANTS = VARIANTS[:4]  # the TRL arms need trl installed (not a dependency)


def varied_records(records: list[dict], seed: int = 0) -> list[dict]:
    """The seed records with Alpaca-like spread lengths (see the module docstring)."""
    import random

    rng = random.Random(seed)
    by_topic: dict[str, list[str]] = {}
    for r in records:
        by_topic.setdefault(r["meta"]["topic"], []).append(r["output"])
    out = []
    for r in records:
        kind = rng.random()
        if kind < 1 / 3:
            text = r["output"].split(". ")[0].rstrip(".") + "."
        elif kind < 2 / 3:
            text = r["output"]
        else:
            text = " ".join([r["output"], *rng.sample(by_topic[r["meta"]["topic"]], rng.randint(1, 3))])
        out.append({**r, "output": text})
    return out


def build_7m(path: Path) -> None:
    """A random LLaMA of ~7.4M parameters with the project tokenizer (hidden 256, 6 layers)."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(MODEL)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=256, intermediate_size=1024, num_hidden_layers=6,
                         num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=1024,
                         tie_word_embeddings=True, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                         pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(path)
    tok.save_pretrained(path)


def measure(variant: str, steps: int, batch: int, out: str, model_dir: str, data: str, threads: int) -> dict:
    """Train ``steps`` LoRA steps with one variant; return real tokens, seconds and peak RSS."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer, TrainingArguments, set_seed

    from finetune import batching, methods
    from finetune.train_config import TrainConfig
    from finetune.trainer import OncoTrainer

    if threads:
        torch.set_num_threads(threads)
    cfg = TrainConfig(base=model_dir, method="lora", per_device_batch_size=batch, max_steps=steps)
    set_seed(0)
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = methods.apply_method(AutoModelForCausalLM.from_pretrained(model_dir), cfg)
    records = batching.load_records([str(DATA)])
    examples = batching.encode_records(varied_records(records) if data == "varied" else records, tok,
                                       cfg.max_seq_len)
    common = dict(output_dir=out, max_steps=steps, per_device_train_batch_size=batch, learning_rate=1e-3,
                  report_to="none", save_strategy="no", logging_steps=steps, disable_tqdm=True,
                  include_num_input_tokens_seen="non_padding", remove_unused_columns=False,
                  dataloader_num_workers=0, seed=0)
    args = TrainingArguments(**common)
    if variant.startswith("trl"):
        from datasets import Dataset
        from trl import SFTConfig, SFTTrainer

        free = variant == "trl_padfree"
        # padding-free batches hold no padding: every token counts (the pad-id count would miss SmolLM2's EOS = pad)
        sft = SFTConfig(**{**common, "include_num_input_tokens_seen": "all" if free else "non_padding"},
                        bf16=False, gradient_checkpointing=False,  # TRL's defaults are on; the other arms have neither
                        completion_only_loss=True, padding_free=free,
                        max_length=None if free else cfg.max_seq_len,
                        train_sampling_strategy="random" if free else "group_by_length")
        data = Dataset.from_list([{"input_ids": e["input_ids"],
                                   "completion_mask": [int(label != batching.IGNORE) for label in e["labels"]]}
                                  for e in examples])
        trainer = SFTTrainer(model=model, args=sft, train_dataset=data, processing_class=tok)
    elif variant == "baseline":
        from transformers import DataCollatorForSeq2Seq

        trainer = Trainer(model=model, args=args, train_dataset=examples, processing_class=tok,
                          data_collator=DataCollatorForSeq2Seq(tok, padding="longest", label_pad_token_id=-100))
    else:
        grouping = "packing" if variant == "packing" else "length"
        trainer = OncoTrainer(model=model, args=args, train_dataset=examples, processing_class=tok,
                              data_collator=batching.make_collator(grouping, tok), grouping=grouping,
                              response_only_head=variant != "grouped")
    started, cpu_started = time.perf_counter(), time.process_time()
    trainer.train()
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    tokens = trainer.state.num_input_tokens_seen
    return {"variant": variant, "tokens": tokens, "seconds": seconds, "tokens_per_second": tokens / seconds,
            "tokens_per_cpu_second": tokens / cpu_seconds,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "threads": torch.get_num_threads()}


def run_worker(variant: str, args, model_dir: Path) -> dict:
    cmd = [sys.executable, __file__, "--worker", variant, "--steps", str(args.steps), "--batch", str(args.batch),
           "--out", str(Path(args.out) / variant), "--model-dir", str(model_dir), "--data", args.data,
           "--threads", str(args.threads)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    if proc.returncode != 0:
        raise SystemExit(f"{variant} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--variants", default=",".join(DEFAULT_VARIANTS))
    parser.add_argument("--model", choices=("bundled", "7m", "smollm2"), default="bundled")
    parser.add_argument("--data", choices=("seed", "varied"), default="seed")
    parser.add_argument("--threads", type=int, default=0, help="torch threads in every arm (0: torch's default)")
    parser.add_argument("--worker", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--model-dir", help=argparse.SUPPRESS)
    parser.add_argument("--out", default="/tmp/oncoloop-train-throughput")
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(measure(args.worker, args.steps, args.batch, args.out, args.model_dir, args.data,
                                 args.threads)))
        return 0

    model_dir = MODEL
    if args.model == "7m":
        model_dir = Path(args.out) / "llama-7m"
        build_7m(model_dir)
    elif args.model == "smollm2":
        from finetune.base_model import converted_base

        model_dir = converted_base()
    variants = args.variants.split(",")
    results: dict[str, list[dict]] = {v: [] for v in variants}
    for round_ in range(args.rounds):
        for variant in variants if round_ % 2 == 0 else reversed(variants):
            r = run_worker(variant, args, model_dir)
            results[variant].append(r)
            print(f"round {round_ + 1} {variant:9s} {r['tokens_per_second']:8.0f} real tokens/s "
                  f"{r['tokens_per_cpu_second']:8.0f} per CPU-s ({r['tokens']} tokens in {r['seconds']:.2f}s), "
                  f"peak RSS {r['peak_rss_mib']:.0f} MiB", flush=True)
    print(f"\nLoRA on {args.model} model, {args.data} data, {args.steps} steps x batch {args.batch}, "
          f"torch threads {results[variants[0]][0]['threads']}, median of {args.rounds} rounds "
          f"(load average now {os.getloadavg()[0]:.1f}):")
    for key, unit in (("tokens_per_second", "real tokens/s"), ("tokens_per_cpu_second", "real tokens/CPU-s")):
        med = {v: statistics.median(r[key] for r in rs) for v, rs in results.items()}
        for v in variants:
            peak = max(r["peak_rss_mib"] for r in results[v])
            ratio = f"{med[v] / med['baseline']:.2f}x baseline" if "baseline" in med else ""
            print(f"  {v:9s} {med[v]:8.0f} {unit:17s} peak RSS {peak:5.0f} MiB  {ratio}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
