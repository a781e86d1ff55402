"""The shipped oncology version against its bare base on the held-out evaluation set, and batched generation.

    python benchmarks/seed_adapter.py [--base VERSION] [--tuned VERSION] [--limit 0] [--max-tokens 160]
                                      [--speed-items 16]

Both versions answer every question of ``data/eval/oncology_eval.jsonl`` (never trained or tuned on) as the
gateway would have them answer it (the default guard, its preamble included; retrieval off, so the model
alone is measured), greedily, in static batches. Prints sacreBLEU BLEU and chrF of each, the paired-bootstrap
95% interval of tuned - base, the share of answers that stop at EOS and that invent a ``###`` section; then
generation speed of the tuned version on ``--speed-items`` questions one at a time, in static batches and
with continuous batching (the evaluation gate's path), side by side in the same run.

Defaults: the registry's SmolLM2 base and champion (``python -m finetune.bootstrap`` installs both).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def main(argv: list[str] | None = None) -> int:
    import torch

    from eval.metrics import corpus_scores, score_from_stats, sufficient_stats
    from eval.stats import corpus_paired_bootstrap
    from feedback.db import open_store
    from finetune.data import load_jsonl
    from finetune.prompt import to_messages
    from serve.inprocess import InProcessEngine
    from serve.registry import Registry

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", help="default: the champion's parent")
    parser.add_argument("--tuned", default="champion")
    parser.add_argument("--data", default=str(REPO / "data" / "eval" / "oncology_eval.jsonl"))
    parser.add_argument("--limit", type=int, default=0)
    parser.add_argument("--max-tokens", type=int, default=160)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--speed-items", type=int, default=32)
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)

    torch.manual_seed(0)
    registry = Registry(open_store())
    tuned = registry.get(args.tuned)
    base = registry.get(args.base or tuned.parent)
    records = load_jsonl(Path(args.data), "alpaca")
    records = records[:args.limit] if args.limit else records
    chats = [to_messages(r["instruction"], r.get("input", "")) for r in records]
    refs = [r["output"] for r in records]
    out: dict = {"base": base.id, "tuned": tuned.id, "items": len(records), "max_tokens": args.max_tokens}
    stats = {}
    for name, version in (("base", base), ("tuned", tuned)):
        engine = InProcessEngine(registry, version)
        prepared = [engine.prepare(c) for c in chats]
        started = time.monotonic()
        texts, finished, tokens = engine.generate([p.prompt for p in prepared], args.max_tokens, args.batch_size)
        seconds = time.monotonic() - started
        scores = corpus_scores(texts, refs)
        stats[name] = {m: sufficient_stats(m, texts, refs) for m in ("bleu", "chrf")}
        out[name] = {"bleu": round(scores["bleu"].score, 2), "chrf": round(scores["chrf"].score, 2),
                     "stops_at_eos": round(sum(finished) / len(finished), 3),
                     "invents_sections": round(sum("###" in t for t in texts) / len(texts), 3),
                     "mean_words": round(sum(len(t.split()) for t in texts) / len(texts), 1),
                     "tokens_per_s_batched": round(tokens / seconds, 1), "examples": texts[:3]}
        print(f"{name:5s} {version.id}: BLEU {out[name]['bleu']:.2f} chrF {out[name]['chrf']:.2f} "
              f"stops at EOS {out[name]['stops_at_eos']:.0%} invents ### {out[name]['invents_sections']:.0%} "
              f"{out[name]['mean_words']} words; {out[name]['tokens_per_s_batched']} tok/s", flush=True)
        if name == "tuned" and args.speed_items:
            from serve.ask import generate_texts

            prompts = [p.prompt for p in prepared[:args.speed_items]]
            speed = {}
            for name_, batch, continuous in (("one_at_a_time", 1, False), ("static", args.batch_size, False),
                                             ("continuous", args.batch_size, True)):
                t = time.monotonic()
                _, _, n = generate_texts(engine.model, engine.tokenizer, prompts, args.max_tokens, batch, continuous)
                speed[name_] = n / (time.monotonic() - t)
            out["generation_speed"] = {f"{k}_tok_s": round(v, 1) for k, v in speed.items()}
            out["generation_speed"]["continuous_vs_one_at_a_time"] = round(speed["continuous"] / speed["one_at_a_time"], 2)
            print(f"generation, {len(prompts)} questions: one at a time {speed['one_at_a_time']:.1f} tok/s; "
                  f"static batches of {args.batch_size} {speed['static']:.1f} tok/s "
                  f"({speed['static'] / speed['one_at_a_time']:.2f}x); continuous batching, {args.batch_size} in "
                  f"flight, {speed['continuous']:.1f} tok/s ({speed['continuous'] / speed['one_at_a_time']:.2f}x)")
        del engine
    for metric in ("bleu", "chrf"):
        d = corpus_paired_bootstrap(stats["base"][metric], stats["tuned"][metric],
                                    lambda s, m=metric: score_from_stats(m, s), resamples=args.resamples)
        out[f"delta_{metric}"] = d.as_dict()
        print(f"tuned - base {metric}: {d.delta:+.2f} [{d.lo:+.2f}, {d.hi:+.2f}] (paired bootstrap 95%, n={d.n})")
    if args.out:
        args.out.write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
