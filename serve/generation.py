"""Greedy generation in process, many answers at a time (evaluation, the gate, ``serve.ask``, the bootstrap).

One request at a time a CPU reads every weight for each token of one answer; batched, it reads them once for
``batch_size`` answers. Two batched paths:

- **Continuous** (plain models, the default): ``batch_size`` answers in flight in one dense, left-padded KV
  cache. A finished answer leaves the batch at once, and when a quarter of the slots are free the next
  prompts (shortest first) are prefilled and joined to the running batch. A prefix every prompt shares (the
  guard's preamble) is computed once and copied into each prefill. Attention costs each answer its own
  context. transformers' own continuous batching (``generate_batch``) packs every answer in flight into one
  sequence and masks it, so on a CPU (no varlen kernel) each answer attends over the contexts of all the
  others: the cost grows with the square of the batch (``benchmarks/seed_adapter.py`` measures both side by
  side; ``benchmarks/README.md``, "Batched generation").
- **Static** (peft prompt learning, whose virtual tokens this cache layout does not hold, and sliding-window
  attention): left-padded batches of similar prompt length; a finished answer computes until its batch's
  longest ends.

Both are greedy and give the answers one at a time gives (``tests/serve/test_generation.py``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

# answers in flight by default: on 2 CPU cores, 32 gave 4.5x the tokens/s of one at a time, 16 gave 3.9x
# (benchmarks/README.md, "Batched generation"); the dense cache of 32 SmolLM2 answers is under 100 MB
BATCH_SIZE = 32
# a prefix every prompt shares (the guard's preamble: 88 of ~109 tokens) is computed once when this long
MIN_SHARED_PREFIX = 16


def generate_texts(model, tokenizer, prompts: list[str], max_new_tokens: int, batch_size: int = BATCH_SIZE,
                   continuous: bool = True) -> tuple[list[str], list[bool], int]:
    """Greedy continuations of rendered prompts, ``batch_size`` at a time.

    Returns:
        The answers (stripped) in prompt order, whether each stopped at EOS (not at ``max_new_tokens``),
        and the number of tokens generated (EOS included, padding not).
    """
    ids = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    if max_new_tokens < 1 or not ids:
        return [""] * len(ids), [False] * len(ids), 0
    if continuous and batch_size > 1 and _dense_cache_fits(model):
        outputs = continuous_batches(model, tokenizer, ids, max_new_tokens, batch_size)
    else:
        outputs = static_batches(model, tokenizer, ids, max_new_tokens, batch_size)
    return decode_outputs(tokenizer, outputs)


def greedy_answers(model, tokenizer, chats: list[list[dict]], max_new_tokens: int,
                   batch_size: int = BATCH_SIZE) -> list[str]:
    """Greedy answers to OpenAI-style chats, each rendered by the tokenizer's chat template."""
    prompts = [tokenizer.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in chats]
    return generate_texts(model, tokenizer, prompts, max_new_tokens, batch_size)[0]


def decode_outputs(tokenizer, outputs: list[list[int]]) -> tuple[list[str], list[bool], int]:
    """Generated token lists -> (answers cut at EOS, stopped-at-EOS flags, tokens generated up to EOS)."""
    answers, finished, generated = [], [], 0
    for out in outputs:
        stop = out.index(tokenizer.eos_token_id) if tokenizer.eos_token_id in out else None
        finished.append(stop is not None)
        generated += (stop + 1) if stop is not None else len(out)
        answers.append(tokenizer.decode(out[:stop], skip_special_tokens=True).strip())
    return answers, finished, generated


def _dense_cache_fits(model) -> bool:
    """Whether :func:`continuous_batches` can hold this model's cache: full attention in every layer (a sliding
    window trims keys as it goes) and no peft prompt learning (virtual tokens ahead of the prompt)."""
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicLayer

    if hasattr(model, "peft_config"):
        return False
    return all(type(layer) is DynamicLayer for layer in DynamicCache(config=model.config).layers)


def _pad_id(tokenizer) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


def _left_padded(ids: list[list[int]], rows: list[int], pad: int):
    """Input ids and attention mask of ``rows``, left padded to the longest."""
    import torch

    width = max(len(ids[i]) for i in rows)
    input_ids = torch.tensor([[pad] * (width - len(ids[i])) + ids[i] for i in rows])
    mask = torch.tensor([[0] * (width - len(ids[i])) + [1] * len(ids[i]) for i in rows])
    return input_ids, mask


def static_batches(model, tokenizer, ids: list[list[int]], max_new_tokens: int, batch_size: int
                   ) -> list[list[int]]:
    """Left-padded static batches of similar prompt length (a finished row computes until its batch ends)."""
    import torch

    pad = _pad_id(tokenizer)
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    outputs: list[list[int]] = [[] for _ in ids]
    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size]
        input_ids, mask = _left_padded(ids, rows, pad)
        with torch.no_grad():
            out = model.generate(input_ids=input_ids, attention_mask=mask, max_new_tokens=max_new_tokens,
                                 do_sample=False, eos_token_id=tokenizer.eos_token_id, pad_token_id=pad)
        for row, generated in zip(rows, out[:, input_ids.shape[1]:].tolist()):
            outputs[row] = generated
    return outputs


@dataclass
class _InFlight:
    """The answers being generated: request indices, their dense KV cache and attention mask (left padded to
    the longest context in flight), the position and last token of each."""

    rows: list
    cache: object  # transformers.DynamicCache, batch dimension = rows
    mask: object  # LongTensor [len(rows), cache length]
    positions: object  # LongTensor [len(rows)]: the position of each row's next token
    last: object  # LongTensor [len(rows)]: each row's newest token, the next step's input


def continuous_batches(model, tokenizer, ids: list[list[int]], max_new_tokens: int, batch_size: int
                       ) -> list[list[int]]:
    """Greedy continuations with ``batch_size`` answers in flight in one dense KV cache (module docstring)."""
    import torch

    pad, eos = _pad_id(tokenizer), tokenizer.eos_token_id
    waiting = sorted(range(len(ids)), key=lambda i: len(ids[i]), reverse=True)  # pop() takes the shortest
    outputs: list[list[int]] = [[] for _ in ids]
    refill_at = max(1, batch_size // 4)  # free slots that make a prefill worth its call
    flight: _InFlight | None = None
    shared = _shared_prefix(model, ids)

    def done(row: int) -> bool:
        return outputs[row][-1] == eos or len(outputs[row]) >= max_new_tokens

    with torch.no_grad():
        while waiting or flight is not None:
            free = batch_size - (len(flight.rows) if flight else 0)
            if waiting and (flight is None or free >= refill_at):
                joining = [waiting.pop() for _ in range(min(free, len(waiting)))]
                flight = _join(flight, _prefill(model, ids, joining, pad, outputs, shared))
            else:
                _step(model, flight, outputs)
            flight = _drop_finished(flight, [not done(r) for r in flight.rows]) if flight else None
    return outputs


def _shared_prefix(model, ids: list[list[int]]) -> list | None:
    """The KV cache (per layer: keys, values, batch 1) of the prefix all prompts share, leaving each at least
    one token of its own; None when that prefix is shorter than ``MIN_SHARED_PREFIX``."""
    import torch
    from transformers import DynamicCache

    length = min(len(os.path.commonprefix(ids)), min(len(i) for i in ids) - 1)
    if length < MIN_SHARED_PREFIX:
        return None
    cache = DynamicCache(config=model.config)
    with torch.no_grad():
        model(input_ids=torch.tensor([ids[0][:length]]), past_key_values=cache, use_cache=True, logits_to_keep=1)
    return [(layer.keys, layer.values) for layer in cache.layers]


def _prefill(model, ids: list[list[int]], rows: list[int], pad: int, outputs: list[list[int]],
             shared: list | None = None) -> _InFlight:
    """Run the prompts of ``rows`` through the model, left padded; record each one's first token. With a
    ``shared`` prefix cache only the rest of each prompt is run, after the prefix: ``[prefix][pad][rest]``."""
    import torch
    from transformers import DynamicCache

    cache = DynamicCache(config=model.config)
    if shared is None:
        input_ids, mask = _left_padded(ids, rows, pad)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
    else:
        prefix = shared[0][0].shape[2]
        input_ids, rest = _left_padded([ids[r][prefix:] for r in rows], list(range(len(rows))), pad)
        for layer, (keys, values) in enumerate(shared):
            cache.update(keys.expand(len(rows), -1, -1, -1), values.expand(len(rows), -1, -1, -1), layer)
        mask = torch.cat([rest.new_ones(len(rows), prefix), rest], dim=1)
        positions = (prefix + rest.cumsum(-1) - 1).clamp(min=prefix)
    logits = model(input_ids=input_ids, attention_mask=mask, position_ids=positions, past_key_values=cache,
                   use_cache=True, logits_to_keep=1).logits
    last = logits[:, -1].argmax(-1)
    for row, token in zip(rows, last.tolist()):
        outputs[row].append(token)
    return _InFlight(list(rows), cache, mask, mask.sum(-1), last)


def _step(model, flight: _InFlight, outputs: list[list[int]]) -> None:
    """One greedy token for every answer in flight."""
    import torch

    flight.mask = torch.cat([flight.mask, flight.mask.new_ones(len(flight.rows), 1)], dim=1)
    logits = model(input_ids=flight.last[:, None], attention_mask=flight.mask, position_ids=flight.positions[:, None],
                   past_key_values=flight.cache, use_cache=True).logits
    flight.last = logits[:, -1].argmax(-1)
    flight.positions = flight.positions + 1
    for row, token in zip(flight.rows, flight.last.tolist()):
        outputs[row].append(token)


def _join(flight: _InFlight | None, joining: _InFlight) -> _InFlight:
    """One batch of the answers in flight and the newly prefilled ones: caches and masks left padded to the
    longer of the two, then stacked."""
    import torch
    import torch.nn.functional as F

    if flight is None:
        return joining
    width = max(flight.mask.shape[1], joining.mask.shape[1])
    for mine, theirs in zip(flight.cache.layers, joining.cache.layers):
        for name in ("keys", "values"):
            a, b = getattr(mine, name), getattr(theirs, name)  # [batch, kv heads, length, head dim]
            setattr(mine, name, torch.cat([F.pad(a, (0, 0, width - a.shape[2], 0)),
                                           F.pad(b, (0, 0, width - b.shape[2], 0))]))
    flight.mask = torch.cat([F.pad(flight.mask, (width - flight.mask.shape[1], 0)),
                             F.pad(joining.mask, (width - joining.mask.shape[1], 0))])
    flight.rows += joining.rows
    flight.positions = torch.cat([flight.positions, joining.positions])
    flight.last = torch.cat([flight.last, joining.last])
    return flight


def _drop_finished(flight: _InFlight, keep: list[bool]) -> _InFlight | None:
    """The batch without its finished answers, and without the cache columns only they still needed."""
    import torch

    if all(keep):
        return flight
    if not any(keep):
        return None
    index = torch.tensor([i for i, k in enumerate(keep) if k])
    flight.cache.batch_select_indices(index)
    flight.rows = [r for r, k in zip(flight.rows, keep) if k]
    flight.mask, flight.positions, flight.last = flight.mask[index], flight.positions[index], flight.last[index]
    start = int(flight.mask.any(0).nonzero()[0])  # columns left of this are padding for every remaining row
    if start:
        for layer in flight.cache.layers:
            layer.keys, layer.values = layer.keys[:, :, start:], layer.values[:, :, start:]
        flight.mask = flight.mask[:, start:]
    return flight
