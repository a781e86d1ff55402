"""Answer questions in process with a registered version (no gateway, no engine process).

Usage::

    python -m serve.ask "What are the warning signs of spinal cord compression?"
    python -m serve.ask --model <version> --input "58-year-old, ECOG 1" "Which regimen is usual?"

The question passes the same guard and retrieval as in the gateway (:mod:`serve.inprocess`). For quick
checks and for the bootstrap's own evaluation; clinicians use the chat UI.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from core.errors import cli_command
from core.prompt import to_messages

NOTICE = ("OncoLoop supports clinicians' decisions; it does not replace clinical judgement. "
          "Check every answer against current guidelines and the patient in front of you.")


def greedy_answers(model, tokenizer, chats: list[list[dict]], max_new_tokens: int, batch_size: int = 16) -> list[str]:
    """Greedy answers to OpenAI-style chats, each rendered by the tokenizer's chat template."""
    prompts = [tokenizer.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in chats]
    return generate_texts(model, tokenizer, prompts, max_new_tokens, batch_size)[0]


def generate_texts(model, tokenizer, prompts: list[str], max_new_tokens: int, batch_size: int = 16,
                   continuous: bool = True) -> tuple[list[str], list[bool], int]:
    """Greedy continuations of rendered prompts, many at a time.

    A plain transformers model generates with continuous batching (``generate_batch``, paged attention):
    a finished answer frees its slot at once, where a static batch keeps computing until its longest
    answer ends. Others (a peft prompt-learning model) generate in static batches of similar prompt length.

    Returns:
        The answers (stripped) in prompt order, whether each stopped at EOS (not at ``max_new_tokens``),
        and the number of tokens generated (EOS included, padding not).
    """
    ids = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    if continuous and batch_size > 1 and hasattr(model, "generate_batch") and not hasattr(model, "peft_config"):
        outputs = _continuous_batches(model, tokenizer, ids, max_new_tokens, batch_size)
    else:
        outputs = _static_batches(model, tokenizer, ids, max_new_tokens, batch_size)
    answers, finished, generated = [], [], 0
    for out in outputs:
        stop = out.index(tokenizer.eos_token_id) if tokenizer.eos_token_id in out else None
        finished.append(stop is not None)
        generated += (stop + 1) if stop is not None else len(out)
        answers.append(tokenizer.decode(out[:stop], skip_special_tokens=True).strip())
    return answers, finished, generated


def _continuous_batches(model, tokenizer, ids: list[list[int]], max_new_tokens: int, batch_size: int
                        ) -> list[list[int]]:
    from transformers import GenerationConfig
    from transformers.generation.configuration_utils import ContinuousBatchingConfig

    config = GenerationConfig(max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=tokenizer.eos_token_id,
                              pad_token_id=tokenizer.pad_token_id)
    # sized for a CPU: a few hundred MB of KV pages, ``batch_size`` answers in flight
    batching = ContinuousBatchingConfig(num_blocks=1024, page_size=32, max_batch_tokens=32 * batch_size,
                                        max_requests_per_batch=batch_size)
    # generate_batch switches the model to paged attention (sdpa) for the call and back
    results = model.generate_batch(ids, generation_config=config, continuous_batching_config=batching,
                                   warmup=False)
    return [list(results[f"req_{i}"].generated_tokens) for i in range(len(ids))]


def _static_batches(model, tokenizer, ids: list[list[int]], max_new_tokens: int, batch_size: int
                    ) -> list[list[int]]:
    """Left-padded static batches of similar prompt length (a finished row computes until its batch ends)."""
    import torch

    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    outputs: list[list[int]] = [[] for _ in ids]
    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size]
        width = max(len(ids[i]) for i in rows)
        input_ids = torch.tensor([[pad] * (width - len(ids[i])) + ids[i] for i in rows])
        mask = torch.tensor([[0] * (width - len(ids[i])) + [1] * len(ids[i]) for i in rows])
        with torch.no_grad():
            out = model.generate(input_ids=input_ids, attention_mask=mask, max_new_tokens=max_new_tokens,
                                 do_sample=False, eos_token_id=tokenizer.eos_token_id, pad_token_id=pad)
        for row, generated in zip(rows, out[:, width:].tolist()):
            outputs[row] = generated
    return outputs


def load(path: str | Path):
    """Tokenizer and model (fp32, eval mode) from a version directory, local path or hub id."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(path))
    model = AutoModelForCausalLM.from_pretrained(str(path), dtype="float32").eval()
    return tokenizer, model


def base_directory(registry, version) -> str:
    """The base model directory of an adapter version (``meta.json``'s base: a directory or a version id)."""
    return version.base if Path(version.base).is_dir() else registry.get(version.base).path


def load_version(registry, version):
    """Tokenizer and model of a registered version: a merged checkpoint, or an adapter (P-tuning) on its base."""
    if version.mergeable:
        return load(version.path)
    from serve.adapter_engine import load as load_adapter

    return load_adapter(base_directory(registry, version), version.path)


@cli_command
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m serve.ask", description=__doc__.splitlines()[0])
    parser.add_argument("question")
    parser.add_argument("--input", default="", help="clinical context (de-identified)")
    parser.add_argument("--model", default="champion", help="alias or version id (default: champion)")
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--guard", type=Path, help="a GuardConfig YAML (default: the built-in rules, as the gateway)")
    parser.add_argument("--no-retrieval", action="store_true", help="do not give the model approved answers")
    args = parser.parse_args(argv)
    if not args.question.strip():
        print("error: the question is empty; type an oncology question.", file=sys.stderr)
        return 2
    from feedback.db import open_store
    from serve.guard import load_guard
    from serve.inprocess import InProcessEngine
    from serve.registry import Registry
    from serve.retrieval import Retriever

    registry = Registry(open_store())
    engine = InProcessEngine(registry, registry.get(args.model), load_guard(args.guard),
                             None if args.no_retrieval else Retriever())
    [answer] = engine.answer([to_messages(args.question, args.input)], args.max_new_tokens)
    print(f"Q: {args.question}")
    print(f"A ({answer.version}): {answer.text}")
    if answer.context:
        print(f"(given {len(answer.context)} approved answer(s) as context: reviews "
              f"{', '.join(str(c['review']) for c in answer.context)})")
    print(f"\n{NOTICE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
