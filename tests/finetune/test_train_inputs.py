"""Bad input stops before training with a message that says what to do; batching is correct."""

from __future__ import annotations

import json

import pytest

from finetune.batching import IGNORE, encode_records, length_grouped_order, make_collator
from finetune.train import main

from .train_helpers import overrides, small_data


def _run(tmp_path, base, capsys, data=None, **extra):
    data = data or small_data(tmp_path / "data.jsonl")
    code = main(["--config", "configs/lora/tiny_cpu.yaml", *overrides(base, data, tmp_path / "run", **extra)])
    err = capsys.readouterr().err
    assert not (tmp_path / "run" / "checkpoint-1").exists() and not (tmp_path / "run" / "final").exists()
    return code, err


@pytest.mark.parametrize("content,message", [
    ("", "empty file"),
    ('{"instruction": "q", "output": "a"}\nnot json\n', ".jsonl:2: invalid JSON"),
    ('{"instruction": "q", "output": ""}\n', "field 'output' must be a non-empty string"),
])
def test_bad_data_is_refused(tmp_path, tiny_base, capsys, content, message):
    data = tmp_path / "bad.jsonl"
    data.write_text(content)
    code, err = _run(tmp_path, tiny_base, capsys, data=data)
    assert code == 2 and err.startswith("error: ") and message in err and "Traceback" not in err


def test_missing_data_file_and_base_are_refused(tmp_path, tiny_base, capsys):
    code, err = _run(tmp_path, tiny_base, capsys, data=tmp_path / "nope.jsonl")
    assert code == 2 and "file not found" in err
    code, err = _run(tmp_path, tmp_path / "no-such-model", capsys)
    assert code == 2 and "neither an existing directory nor a registered version" in err
    code, err = _run(tmp_path, "champion", capsys)
    assert code == 2 and "python -m finetune.bootstrap" in err  # empty registry says how to get a base


@pytest.mark.parametrize("extra,message", [
    ({"method": "rlhf"}, "unknown method 'rlhf'"),
    ({"optimizer": "sgd"}, "unknown optimizer 'sgd'"),
    ({"precision": "fp16"}, "fp16 needs a CUDA GPU"),
    ({"method": "full", "fsdp": "true"}, "fsdp=true needs CUDA GPUs"),
    ({"deepspeed": "configs/deepspeed/zero7.json"}, "not found"),
    ({"max_seq_len": 20}, "no record keeps a response token within max_seq_len=20"),
    ({"lora_target_modules": "qkv"}, "lora_target_modules qkv are not modules of this model"),
])
def test_bad_config_is_refused_before_training(tmp_path, tiny_base, capsys, extra, message):
    code, err = _run(tmp_path, tiny_base, capsys, **extra)
    assert code == 2 and message in err, err


def test_loss_is_on_response_tokens_only(tiny_base):
    from transformers import AutoTokenizer

    from core.prompt import format_prompt

    tok = AutoTokenizer.from_pretrained(tiny_base)
    record = {"instruction": "Define neutropenia.", "input": "ANC 0.4", "output": "A low neutrophil count."}
    (example,) = encode_records([record], tok, 512)
    prompt_len = len(tok(format_prompt(record["instruction"], record["input"]), add_special_tokens=False)["input_ids"])
    assert example["labels"][:prompt_len] == [IGNORE] * prompt_len
    response = example["labels"][prompt_len:]
    assert tok.decode(response[:-1]) == record["output"] and response[-1] == tok.eos_token_id
    assert example["input_ids"][prompt_len:] == response


def test_training_prompts_carry_the_guards_preamble_and_retrieved_context(tiny_base):
    from transformers import AutoTokenizer

    from core.prompt import CONTEXT_HEADER
    from finetune.methods import training_preamble
    from finetune.train_config import TrainConfig
    from serve.guard import DEFAULT_PREAMBLE

    assert training_preamble(TrainConfig()) == DEFAULT_PREAMBLE  # what the gateway sends by default
    assert training_preamble(TrainConfig(guard="configs/guard/tiny_cpu.yaml")) is None  # send_preamble: false
    tok = AutoTokenizer.from_pretrained(tiny_base)
    record = {"instruction": "First-line for HCL?", "input": "", "output": "Cladribine.",
              "context": [{"question": "Usual first drug in hairy cell leukaemia?", "answer": "Cladribine."}]}
    (example,) = encode_records([record], tok, 2048, preamble=DEFAULT_PREAMBLE)
    prompt = tok.decode([i for i, label in zip(example["input_ids"], example["labels"]) if label == IGNORE])
    assert prompt.index("decision-support assistant") < prompt.index(CONTEXT_HEADER[:30]) < prompt.index("First-line")
    assert "Usual first drug in hairy cell leukaemia?" in prompt
    assert tok.decode([label for label in example["labels"] if label != IGNORE][:-1]) == "Cladribine."


@pytest.mark.slow
def test_a_share_of_records_gets_its_own_answer_and_a_neighbours_as_context():
    from finetune.context import add_context

    records = [{"instruction": q, "output": a} for q, a in [
        ("What is the first-line treatment for hairy cell leukaemia?", "Cladribine."),
        ("Which drug starts treatment of a new HCL?", "Cladribine, a purine analogue."),
        ("How is tumour lysis syndrome prevented?", "Hydration and allopurinol or rasburicase."),
        ("What does ECOG 2 mean?", "Ambulatory, self-caring, up more than half the day.")]]
    out = add_context(records, 1.0, seed=0)
    assert [r.get("context") is not None for r in out] == [True] * 4 and "context" not in records[0]
    for r in out:
        answers = [c["answer"] for c in r["context"]]
        assert r["output"] in answers and len(set(answers)) == 2
    assert out[0]["context"][1 - [c["answer"] for c in out[0]["context"]].index("Cladribine.")]["question"] == \
        records[1]["instruction"]  # the nearest other question is the neighbour
    assert add_context(records, 0.5, seed=0) == add_context(records, 0.5, seed=0)  # fixed by the seed
    assert sum("context" in r for r in add_context(records, 0.0, seed=0)) == 0


def test_length_grouping_puts_similar_lengths_together():
    lengths = [50, 3, 48, 4, 20, 22, 5, 49]
    order = length_grouped_order(lengths, 2, seed=1)
    batches = [sorted(lengths[i] for i in order[k:k + 2]) for k in range(0, len(order), 2)]
    assert sorted(order) == list(range(8))
    assert sorted(batches) == [[3, 4], [5, 20], [22, 48], [49, 50]]


def test_padding_is_right_sided_and_keeps_the_eos_label_when_pad_is_eos(tiny_base):
    """SmolLM2's pad token is its EOS: padded ids may be EOS, but only the real EOS carries a label."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_base)
    tok.pad_token, tok.padding_side = tok.eos_token, "left"  # as SmolLM2's, saved for batched generation
    eos = tok.eos_token_id
    examples = [{"input_ids": [5, 6, 7, eos], "labels": [IGNORE, IGNORE, 7, eos]},
                {"input_ids": [8, 9], "labels": [IGNORE, eos]}]
    batch = make_collator("length", tok)(examples)
    assert batch["input_ids"].tolist() == [[5, 6, 7, eos], [8, 9, eos, eos]]
    assert batch["labels"].tolist() == [[IGNORE, IGNORE, 7, eos], [IGNORE, eos, IGNORE, IGNORE]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1], [1, 1, 0, 0]]
    assert tok.padding_side == "left"  # the tokenizer saved with the checkpoint is left as it was


def test_packing_gives_the_same_loss_as_padding(tiny_base):
    """Packed rows (position ids restarting per sequence) must not attend across sequences."""
    import torch

    from finetune.methods import load_base
    from finetune.train_config import TrainConfig

    model, tok, _ = load_base(TrainConfig(base=str(tiny_base)))  # as training loads it: use_cache=False
    model.eval()
    records = [json.loads(line) for line in (small_data(tiny_base.parent / "pack.jsonl", 3)).read_text().splitlines()]
    examples = encode_records(records, tok, 160)
    padded = make_collator("length", tok)(examples)
    packed = make_collator("packing", tok)(examples)
    assert packed["input_ids"].shape[0] == 1 and (packed["position_ids"] == 0).sum() == 3
    with torch.no_grad():
        loss_padded = model(**padded).loss
        loss_packed = model(**packed).loss
    assert torch.allclose(loss_padded, loss_packed, atol=1e-5)
