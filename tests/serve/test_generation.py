"""Batched generation gives the answers one-at-a-time generation gives, and says where each stopped."""

from __future__ import annotations

from core.prompt import to_messages
from serve.ask import generate_texts, load

QUESTIONS = ["What is neutropenia?", "Define ECOG performance status.", "How is tumour lysis syndrome prevented?",
             "Which virus is linked to nasopharyngeal carcinoma?", "What does BI-RADS 0 mean?"]


def test_continuous_and_static_batches_match_one_at_a_time(tiny_base):
    tokenizer, model = load(tiny_base)
    prompts = [tokenizer.apply_chat_template(to_messages(q), tokenize=False, add_generation_prompt=True)
               for q in QUESTIONS]
    one, one_finished, one_tokens = generate_texts(model, tokenizer, prompts, 12, batch_size=1)
    static = generate_texts(model, tokenizer, prompts, 12, batch_size=4, continuous=False)
    continuous = generate_texts(model, tokenizer, prompts, 12, batch_size=4, continuous=True)
    assert static == continuous == (one, one_finished, one_tokens)
    assert 0 < one_tokens <= 12 * len(prompts) and model.config._attn_implementation != "paged|sdpa"
