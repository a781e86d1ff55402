"""The response-only LM head (OncoTrainer's default) gives the same loss and gradients as
the model's own full-sequence loss, for every method and batching."""

from __future__ import annotations

import pytest

from finetune.batching import encode_records, load_records, make_collator

from .train_helpers import small_data


def _loss_and_grads(trainer, model, batch, num_items):
    model.zero_grad()
    loss = trainer.compute_loss(model, dict(batch), num_items_in_batch=num_items)
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad and p.grad is not None}
    return loss.detach(), grads


@pytest.mark.parametrize("method,grouping", [("lora", "length"), ("lora", "packing"), ("ptuning", "length"),
                                             ("full", "length")])
def test_response_only_head_equals_the_full_loss(tmp_path, tiny_base, method, grouping):
    import torch
    from transformers import TrainingArguments

    from finetune.methods import apply_method, load_base
    from finetune.train_config import TrainConfig
    from finetune.trainer import OncoTrainer

    cfg = TrainConfig(base=str(tiny_base), method=method, lora_dropout=0.0, grouping=grouping)
    torch.manual_seed(0)
    model, tok, _ = load_base(cfg)
    model = apply_method(model, cfg)
    with torch.no_grad():  # move LoRA's zero-initialised B away from zero so every gradient is non-trivial
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn_like(p))
    model.train()
    examples = encode_records(load_records([str(small_data(tmp_path / "d.jsonl", 6))]), tok, 160)
    collator = make_collator(grouping, tok)
    batch = collator(examples)
    args = TrainingArguments(output_dir=str(tmp_path / "out"), report_to="none", remove_unused_columns=False)
    results = {}
    for fast in (False, True):
        trainer = OncoTrainer(model=model, args=args, train_dataset=examples, data_collator=collator,
                              grouping=grouping, response_only_head=fast)
        for num_items in (None, torch.tensor(123)):  # per-batch mean, and normalised over accumulated batches
            results[fast, num_items is None] = _loss_and_grads(trainer, model, batch, num_items)
    for mean in (True, False):
        (slow_loss, slow_grads), (fast_loss, fast_grads) = results[False, mean], results[True, mean]
        assert slow_loss.item() > 0.1  # a real loss, not a memorised ~0
        torch.testing.assert_close(fast_loss, slow_loss, rtol=1e-5, atol=1e-6)
        assert fast_grads.keys() == slow_grads.keys() and fast_grads
        for name in slow_grads:
            torch.testing.assert_close(fast_grads[name], slow_grads[name], rtol=1e-4, atol=1e-6, msg=name)
