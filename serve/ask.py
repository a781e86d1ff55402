"""Answer questions in process with a registered version (no gateway, no engine process).

Usage::

    python -m serve.ask "What are the warning signs of spinal cord compression?"
    python -m serve.ask --model <version> --input "58-year-old, ECOG 1" "Which regimen is usual?"

For quick checks and for the bootstrap's own evaluation; clinicians use the chat UI.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from feedback.errors import cli_command
from finetune.prompt import to_messages

NOTICE = ("OncoLoop supports clinicians' decisions; it does not replace clinical judgement. "
          "Check every answer against current guidelines and the patient in front of you.")


def greedy_answers(model, tokenizer, chats: list[list[dict]], max_new_tokens: int, batch_size: int = 16) -> list[str]:
    """Greedy answers to OpenAI-style chats, each rendered by the tokenizer's chat template."""
    import torch

    tokenizer.padding_side = "left"
    answers: list[str] = []
    for start in range(0, len(chats), batch_size):
        prompts = [tokenizer.apply_chat_template(c, tokenize=False, add_generation_prompt=True)
                   for c in chats[start:start + batch_size]]
        enc = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.no_grad():
            out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                                 eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
        answers += tokenizer.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
    return [a.strip() for a in answers]


def load(path: str | Path):
    """Tokenizer and model (fp32, eval mode) from a version directory, local path or hub id."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(path))
    model = AutoModelForCausalLM.from_pretrained(str(path), dtype="float32").eval()
    return tokenizer, model


@cli_command
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m serve.ask", description=__doc__.splitlines()[0])
    parser.add_argument("question")
    parser.add_argument("--input", default="", help="clinical context (de-identified)")
    parser.add_argument("--model", default="champion", help="alias or version id (default: champion)")
    parser.add_argument("--max-new-tokens", type=int, default=200)
    args = parser.parse_args(argv)
    if not args.question.strip():
        print("error: the question is empty; type an oncology question.", file=sys.stderr)
        return 2
    from feedback.db import open_store
    from serve.registry import Registry

    version = Registry(open_store()).get(args.model)
    tokenizer, model = load(version.path)
    [answer] = greedy_answers(model, tokenizer, [to_messages(args.question, args.input)], args.max_new_tokens)
    print(f"Q: {args.question}")
    print(f"A ({version.id}): {answer}")
    print(f"\n{NOTICE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
