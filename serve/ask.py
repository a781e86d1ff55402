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
