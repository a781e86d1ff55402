"""The shipped oncology version against its bare base on the held-out evaluation set, and batched generation.

    python benchmarks/seed_adapter.py [--base VERSION] [--tuned VERSION] [--limit 0] [--max-tokens 160]
                                      [--speed-items 32] [--speed-only]

Both versions answer every question of ``data/eval/oncology_eval.jsonl`` (never trained or tuned on) as the
gateway would have them answer it (the default guard, its preamble included; retrieval off, so the model
alone is measured), greedily, in static batches. Prints sacreBLEU BLEU and chrF of each, the paired-bootstrap
95% interval of tuned - base, the share of answers that stop at EOS and that invent a ``###`` section; then
generation speed of the tuned version on ``--speed-items`` questions, side by side in the same run: one
request at a time through ``transformers serve`` (the engine the gate called before it generated in
batches), one at a time in process, in static batches and with continuous batching (the gate's path now).
``--speed-only`` skips the quality part.

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


def served_one_at_a_time(version, prepared, max_tokens: int) -> float:
    """Tokens/s of the same chats sent one at a time to ``transformers serve`` (greedy, as the gate did)."""
    import asyncio
    import tempfile

    import httpx

    from serve.config import ServeConfig
    from serve.engines import Engine, engine_payload, engine_spec

    engine = Engine(engine_spec("transformers", version, ServeConfig()), Path(tempfile.mkdtemp(prefix="oncoloop-")))
    engine.start()
    try:
        asyncio.run(engine.wait_ready(600))
        tokens, started = 0, time.monotonic()
        with httpx.Client(base_url=engine.base_url, timeout=600) as client:
            for p in prepared:
                body = {"messages": p.guarded.body["messages"], "max_tokens": max_tokens, "temperature": 0.0}
                r = client.post("/v1/chat/completions", json=engine_payload("transformers", body,
                                                                              engine.spec.served_name))
                r.raise_for_status()
                tokens += r.json()["usage"]["completion_tokens"]
        return tokens / (time.monotonic() - started)
    finally:
        engine.stop()


def speed_section(out: dict, engine, prepared, args) -> None:
    """Generation tokens/s of one version on the same prompts, four ways, side by side."""
    from serve.ask import generate_texts

    prompts = [p.prompt for p in prepared]
    speed = {"served_one_at_a_time": served_one_at_a_time(engine.version, prepared, args.max_tokens)}
    for name, batch, continuous in (("one_at_a_time", 1, False), ("static", args.batch_size, False),
                                    ("continuous", args.batch_size, True)):
        t = time.monotonic()
        _, _, n = generate_texts(engine.model, engine.tokenizer, prompts, args.max_tokens, batch, continuous)
        speed[name] = n / (time.monotonic() - t)
    out["generation_speed"] = {f"{k}_tok_s": round(v, 1) for k, v in speed.items()}
    for base in ("served_one_at_a_time", "one_at_a_time"):
        out["generation_speed"][f"continuous_vs_{base}"] = round(speed["continuous"] / speed[base], 2)
    print(f"generation, {len(prompts)} questions, {args.max_tokens} new tokens at most: one at a time through "
          f"transformers serve {speed['served_one_at_a_time']:.1f} tok/s; one at a time in process "
          f"{speed['one_at_a_time']:.1f}; static batches of {args.batch_size} {speed['static']:.1f}; continuous "
          f"batching, {args.batch_size} in flight, {speed['continuous']:.1f} tok/s = "
          f"{speed['continuous'] / speed['served_one_at_a_time']:.2f}x served one at a time, "
          f"{speed['continuous'] / speed['one_at_a_time']:.2f}x in process one at a time", flush=True)


def main(argv: list[str] | None = None) -> int:
    import torch

    from core.data import load_jsonl
    from core.prompt import to_messages
    from eval.metrics import corpus_scores, score_from_stats, sufficient_stats
    from eval.stats import corpus_paired_bootstrap
    from feedback.db import open_store
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
    parser.add_argument("--speed-only", action="store_true", help="only the generation-speed section")
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
        if args.speed_only and name == "base":
            continue
        engine = InProcessEngine(registry, version)
        prepared = [engine.prepare(c) for c in chats]
        if args.speed_only:
            speed_section(out, engine, prepared[:args.speed_items], args)
            break
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
            speed_section(out, engine, prepared[:args.speed_items], args)
        del engine
    for metric in ("bleu", "chrf") if not args.speed_only else ():
        d = corpus_paired_bootstrap(stats["base"][metric], stats["tuned"][metric],
                                    lambda s, m=metric: score_from_stats(m, s), resamples=args.resamples)
        out[f"delta_{metric}"] = d.as_dict()
        print(f"tuned - base {metric}: {d.delta:+.2f} [{d.lo:+.2f}, {d.hi:+.2f}] (paired bootstrap 95%, n={d.n})")
    if args.out:
        args.out.write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
