"""Batched generation gives the answers one-at-a-time generation gives, and says where each stopped."""

from __future__ import annotations

import pytest

from core.data import load_jsonl
from core.prompt import to_messages
from serve.ask import load
from serve import generation
from serve.generation import generate_texts
from serve.guard import DEFAULT_PREAMBLE
from tests.helpers.gateway import REPO

# the bundled tiny model answers these at EOS after different numbers of tokens (60-80); the last, with a long
# clinical context, is the longest prompt: it joins last, longer than the context of the answers in flight
_EVAL = load_jsonl(REPO / "data" / "eval" / "oncology_eval.jsonl", "alpaca")
QUESTIONS = [r["instruction"] for r in _EVAL[:7]] + [
    _EVAL[7]["instruction"] + "\n\nClinical context:\n" + " ".join(r["output"] for r in _EVAL[8:11])]


@pytest.fixture(scope="module")
def tiny(bundled_model):
    tokenizer, model = load(bundled_model)
    prompts = [tokenizer.apply_chat_template(to_messages(q), tokenize=False, add_generation_prompt=True)
               for q in QUESTIONS]
    return tokenizer, model, prompts


@pytest.fixture(scope="module")
def tiny_with_preamble(tiny):
    """The same questions after the guard's preamble: a long prefix every prompt shares."""
    tokenizer, model, _ = tiny
    prompts = [tokenizer.apply_chat_template(to_messages(q, system=DEFAULT_PREAMBLE), tokenize=False,
                                             add_generation_prompt=True) for q in QUESTIONS]
    return tokenizer, model, prompts


@pytest.mark.parametrize("chats,shared", [("tiny", False), ("tiny_with_preamble", True)])
def test_continuous_and_static_batches_match_one_at_a_time(request, chats, shared, monkeypatch):
    tokenizer, model, prompts = request.getfixturevalue(chats)
    one, one_finished, one_tokens = generate_texts(model, tokenizer, prompts, 12, batch_size=1)
    static = generate_texts(model, tokenizer, prompts, 12, batch_size=4, continuous=False)
    prefixes = []
    find = generation._shared_prefix
    monkeypatch.setattr(generation, "_shared_prefix", lambda *a: prefixes.append(find(*a)) or prefixes[-1])
    continuous = generate_texts(model, tokenizer, prompts, 12, batch_size=4, continuous=True)
    assert static == continuous == (one, one_finished, one_tokens)
    assert 0 < one_tokens <= 12 * len(prompts)
    assert (prefixes[0] is not None) == shared  # the preamble is computed once, then each prompt's own tokens


def test_answers_of_different_lengths_join_and_leave_the_running_batch(tiny, monkeypatch):
    """Long enough for answers to end at EOS at different steps, with fewer slots than prompts: finished answers
    leave, waiting prompts are prefilled and joined to answers already half written, padding columns are
    trimmed, and every answer is still the one generated alone."""
    tokenizer, model, prompts = tiny
    one = generate_texts(model, tokenizer, prompts, 80, batch_size=1)
    assert 1 < sum(one[1]) and len({len(tokenizer(a)["input_ids"]) for a in one[0]}) > 3  # EOS at different steps

    joins, trims = [], []
    join, drop = generation._join, generation._drop_finished

    def counting_join(flight, joining):
        joins.append(flight is not None)
        return join(flight, joining)

    def counting_drop(flight, keep):
        width = flight.mask.shape[1]
        kept = drop(flight, keep)
        trims.append(kept is not None and kept.mask.shape[1] < width)
        return kept

    monkeypatch.setattr(generation, "_join", counting_join)
    monkeypatch.setattr(generation, "_drop_finished", counting_drop)
    assert generate_texts(model, tokenizer, prompts, 80, batch_size=3) == one
    assert any(joins) and any(trims)  # prompts joined a running batch; columns only finished answers needed went


def test_no_tokens_asked_is_no_answer(tiny):
    tokenizer, model, prompts = tiny
    assert generate_texts(model, tokenizer, prompts[:2], 0, batch_size=2) == (["", ""], [False, False], 0)
