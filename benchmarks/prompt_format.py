"""Which prompt format should a model be trained, served and evaluated in? Measure both on the eval set.

    python benchmarks/prompt_format.py MODEL_DIR [--limit 0] [--max-new-tokens 160] [--batch-size 16]

Renders every question of ``data/eval/oncology_eval.jsonl`` (held out: never trained or tuned on) in
two formats, each with the guard's system preamble as the deployment sends it:

- ``alpaca``: the seed's ``### Instruction: / ### Response:`` text (the format the tiny fixture used);
- ``chatml``: the ``<|im_start|>role ... <|im_end|>`` turns that SmolLM2-Instruct was tuned on
  (``core.prompt.CHAT_TEMPLATE``, the project's format of record).

It generates greedy answers in static batches and prints sacreBLEU BLEU and chrF against the references,
the paired-bootstrap 95% interval of chatml - alpaca, the share of answers that stop at EOS, and the share
that invent a ``###`` section. Run it on a bare base and on a fine-tuned version.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

# The Alpaca rendering the project used before the measurement (kept here, where it is compared).
ALPACA_HEADER = ("Below is an instruction that describes a task. "
                 "Write a response that appropriately completes the request.\n\n")
ALPACA_HEADER_WITH_INPUT = ("Below is an instruction that describes a task, paired with an input that provides "
                            "further context. Write a response that appropriately completes the request.\n\n")


def alpaca_text(system: str, instruction: str, input: str = "") -> str:
    header = ALPACA_HEADER_WITH_INPUT if input else ALPACA_HEADER
    text = f"{system}\n\n{header}### Instruction:\n{instruction}\n\n"
    if input:
        text += f"### Input:\n{input}\n\n"
    return text + "### Response:\n"


def main(argv: list[str] | None = None) -> int:
    import torch

    from core.data import load_jsonl
    from core.prompt import to_messages
    from eval.metrics import corpus_scores, sufficient_stats, score_from_stats
    from eval.stats import corpus_paired_bootstrap
    from serve.ask import load
    from serve.generation import generate_texts
    from serve.guard import DEFAULT_PREAMBLE

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--data", default=str(REPO / "data" / "eval" / "oncology_eval.jsonl"))
    parser.add_argument("--limit", type=int, default=0)
    parser.add_argument("--max-new-tokens", type=int, default=160)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--out", type=Path, help="write answers and figures as JSON here")
    args = parser.parse_args(argv)

    torch.manual_seed(0)
    records = load_jsonl(Path(args.data), "alpaca")
    records = records[:args.limit] if args.limit else records
    refs = [r["output"] for r in records]
    tokenizer, model = load(args.model)
    prompts = {
        "alpaca": [alpaca_text(DEFAULT_PREAMBLE, r["instruction"], r.get("input", "")) for r in records],
        "chatml": [tokenizer.apply_chat_template(to_messages(r["instruction"], r.get("input", ""), DEFAULT_PREAMBLE),
                                                 tokenize=False, add_generation_prompt=True) for r in records],
    }
    results, stats = {}, {}
    for name, texts in prompts.items():
        start = time.monotonic()
        answers, finished, tokens = generate_texts(model, tokenizer, texts, args.max_new_tokens, args.batch_size)
        seconds = time.monotonic() - start
        scores = corpus_scores(answers, refs)
        stats[name] = {m: sufficient_stats(m, answers, refs) for m in ("bleu", "chrf")}
        results[name] = {
            "bleu": round(scores["bleu"].score, 2), "chrf": round(scores["chrf"].score, 2),
            "stops_at_eos": round(sum(finished) / len(finished), 3),
            "invents_sections": round(sum("###" in a for a in answers) / len(answers), 3),
            "mean_words": round(sum(len(a.split()) for a in answers) / len(answers), 1),
            "tokens_per_s": round(tokens / seconds, 1), "answers": answers,
        }
        print(f"{name:7s} BLEU {results[name]['bleu']:6.2f}  chrF {results[name]['chrf']:6.2f}  "
              f"stops at EOS {results[name]['stops_at_eos']:.0%}  invents ### {results[name]['invents_sections']:.0%}"
              f"  {results[name]['mean_words']} words  {results[name]['tokens_per_s']} tok/s", flush=True)
    for metric in ("bleu", "chrf"):
        d = corpus_paired_bootstrap(stats["alpaca"][metric], stats["chatml"][metric],
                                    lambda s, m=metric: score_from_stats(m, s), resamples=args.resamples)
        results[f"delta_{metric}"] = d.as_dict()
        print(f"chatml - alpaca {metric}: {d.delta:+.2f} [{d.lo:+.2f}, {d.hi:+.2f}] (paired bootstrap 95%, "
              f"n={d.n})")
    if args.out:
        args.out.write_text(json.dumps({"model": args.model, "items": len(records), **results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
