"""Alpaca records → token ids with the loss on response tokens only, and batches with little padding.

Three ways to batch (``TrainConfig.grouping``):

- ``none``: random order, padded to the longest sequence in each batch (the plain baseline);
- ``length``: sequences of similar length share a batch (``LengthGroupedSampler``), so
  padding is a few tokens per row instead of hundreds;
- ``packing``: each batch is flattened into one row with ``position_ids`` restarting at
  every sequence (``transformers.DataCollatorWithFlattening``); attention stays within a
  sequence because transformers builds a block-causal mask from the position ids.
"""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

from core.data import load_jsonl
from core.errors import OncoLoopError
from core.prompt import context_message, format_prompt

IGNORE = -100  # label value the loss skips


def load_records(paths: list[str]) -> list[dict]:
    """All Alpaca records of the given JSONL files, validated.

    Raises:
        OncoLoopError: no file given, a file missing or malformed, or no record at all.
    """
    if not paths:
        raise OncoLoopError("no training data: set data=path/to/file.jsonl (Alpaca JSONL).")
    records: list[dict] = []
    for path in paths:
        records += load_jsonl(path, "alpaca")
    return records


def dataset_hash(paths: list[str]) -> str:
    """sha256 of the data files' bytes, in the order given (the run's dataset identity)."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(Path(path).read_bytes())
    return digest.hexdigest()


def mask_prompt(prompt_ids: list[int], response_ids: list[int], max_len: int) -> tuple[list[int], list[int]]:
    """Input ids and labels for one example: prompt labels masked, truncated to ``max_len``.

    >>> mask_prompt([1, 2, 3], [7, 8, 2], 5)
    ([1, 2, 3, 7, 8], [-100, -100, -100, 7, 8])
    """
    ids = (prompt_ids + response_ids)[:max_len]
    labels = ([IGNORE] * len(prompt_ids) + response_ids)[:max_len]
    return ids, labels


def system_messages(record: dict, preamble: str | None) -> list[str]:
    """The system messages a record's prompt carries: the guard's preamble, then its retrieved context.

    >>> system_messages({"context": [{"question": "Q?", "answer": "A."}]}, "Be careful.")[1].endswith("Answer: A.")
    True
    >>> system_messages({}, None)
    []
    """
    out = [preamble] if preamble else []
    context = record.get("context") or []
    if context:
        out.append(context_message([(c["question"], c["answer"]) for c in context]))
    return out


def encode_records(records: list[dict], tokenizer, max_len: int, preamble: str | None = None) -> list[dict]:
    """Tokenise Alpaca records with the project template; the loss sees response tokens only.

    Args:
        preamble: the system message the gateway sends first (the guard's), or None when it sends none.

    Records whose response is cut away entirely by ``max_len`` are dropped.

    Raises:
        OncoLoopError: no record keeps a single response token within ``max_len``.
    """
    eos = tokenizer.eos_token_id
    prompts = tokenizer([format_prompt(r["instruction"], r.get("input", ""), system_messages(r, preamble))
                         for r in records], add_special_tokens=False)["input_ids"]
    responses = tokenizer([r["output"] for r in records], add_special_tokens=False)["input_ids"]
    examples = []
    for prompt, response in zip(prompts, responses):
        ids, labels = mask_prompt(prompt, response + [eos], max_len)
        if any(label != IGNORE for label in labels):
            examples.append({"input_ids": ids, "labels": labels})
    if not examples:
        longest = min(len(p) for p in prompts) + 1
        raise OncoLoopError(
            f"no record keeps a response token within max_seq_len={max_len} (the shortest prompt alone is "
            f"{longest - 1} tokens): raise max_seq_len to at least {longest} or shorten the instructions."
        )
    return examples


def length_grouped_batches(lengths: list[int], batch_size: int, rng: random.Random) -> list[list[int]]:
    """Batches of indices of similar length, in random order, so little compute goes to padding.

    >>> length_grouped_batches([5, 1, 4, 2], 2, random.Random(0))
    [[1, 3], [2, 0]]
    """
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], rng.random()))
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    rng.shuffle(batches)
    return batches


def length_grouped_order(lengths: list[int], batch_size: int, seed: int) -> list[int]:
    """Indices sorted into batches of similar length, batches in random order.

    >>> length_grouped_order([5, 1, 4, 2], 2, 0)
    [1, 3, 2, 0]
    """
    return [i for batch in length_grouped_batches(lengths, batch_size, random.Random(seed)) for i in batch]


class LengthGroupedSampler:
    """A sampler whose consecutive ``batch_size`` indices have similar lengths; reshuffled each epoch.

    ``batch_size`` is the global batch (per-device batch x processes) so each process's share
    of a batch is length-matched too.
    """

    def __init__(self, lengths: list[int], batch_size: int, seed: int):
        self.lengths, self.batch_size, self.seed, self.epoch = lengths, batch_size, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self):
        order = length_grouped_order(self.lengths, self.batch_size, self.seed + self.epoch)
        self.epoch += 1
        return iter(order)


def make_collator(grouping: str, tokenizer):
    """The collator for a grouping: flattening with position ids for packing, padding otherwise.

    Padding is ``transformers.DataCollatorForSeq2Seq``: ids padded with the tokenizer's pad token
    (SmolLM2's is its EOS; the mask hides those), labels with -100 so the real EOS label of each
    response stays the only EOS the loss sees, always on the right for training.
    """
    if grouping == "packing":
        from transformers import DataCollatorWithFlattening

        return DataCollatorWithFlattening(return_position_ids=True, separator_id=IGNORE)
    import copy

    from transformers import DataCollatorForSeq2Seq

    if tokenizer.padding_side != "right":  # a base saved for batched generation pads left; training pads right
        tokenizer = copy.copy(tokenizer)
        tokenizer.padding_side = "right"
    return DataCollatorForSeq2Seq(tokenizer, padding="longest", label_pad_token_id=IGNORE, return_tensors="pt")


def real_tokens(examples: list[dict]) -> int:
    """Non-padding tokens in a list of examples.

    >>> real_tokens([{"input_ids": [1, 2]}, {"input_ids": [3]}])
    3
    """
    return sum(len(e["input_ids"]) for e in examples)
