"""Training each method for a few steps on the tiny model: parameters change, loss goes down."""

from __future__ import annotations

import json

import pytest
import torch

from core.prompt import CHAT_TEMPLATE

from core.config import load_config
from finetune.train import main, train
from finetune.train_config import TrainConfig

from .train_helpers import (fixed_batch_loss, initial_and_trained, overrides, read_meta, small_data,
                            trainable_changed)


def _train(tmp_path, base, method, **extra):
    data = small_data(tmp_path / "data.jsonl")
    cfg = load_config(TrainConfig, None, overrides(base, data, tmp_path / "run", method=method, **extra))
    return train(cfg), data


@pytest.mark.slow
@pytest.mark.parametrize("method,extra", [
    ("lora", {"tracker": "wandb", "grouping": "length"}),
    ("ptuning", {"lr": 3e-2, "ptuning_virtual_tokens": 4, "ptuning_encoder_hidden_size": 16}),
    ("full", {"lr": 3e-3, "grouping": "packing", "gradient_checkpointing": True}),
])
def test_each_method_trains(tmp_path, tiny_base, method, extra):
    final, data = _train(tmp_path, tiny_base, method, **extra)
    initial, trained, tokenizer = initial_and_trained(method, tiny_base, final, **{
        k: v for k, v in extra.items() if k.startswith("ptuning_")})
    assert trainable_changed(initial, trained, method), "training left every trainable tensor unchanged"
    assert fixed_batch_loss(trained, tokenizer, data) < fixed_batch_loss(initial, tokenizer, data)

    meta = read_meta(final)
    assert meta["method"] == method and meta["mergeable"] == (method != "ptuning")
    assert meta["config"]["lr"] == extra.get("lr", 1e-2) and len(meta["dataset"]["sha256"]) == 64
    assert meta["metrics"]["global_step"] == 4 and len(meta["metrics"]["losses"]) == 4
    assert meta["metrics"]["tokens_per_second"] > 0 and meta["metrics"]["grad_norms"]
    assert (final / "tokenizer_config.json").is_file()
    from transformers import AutoTokenizer

    assert AutoTokenizer.from_pretrained(final).chat_template == CHAT_TEMPLATE
    wandb_runs = list((tmp_path / "run" / "wandb").glob("offline-run-*/run-*.wandb"))
    if extra.get("tracker") == "wandb":  # offline run files exist, with the dataset hash in the config
        assert wandb_runs, "no offline wandb run was written"
        record = wandb_runs[0].read_bytes()  # wandb's offline log: config and history records
        assert meta["dataset"]["sha256"].encode() in record and b"train/tokens_per_second" in record
    else:  # the null tracker writes nothing
        assert not (tmp_path / "run" / "wandb").exists()


@pytest.mark.slow
def test_rerun_of_a_finished_run_does_not_train_again(tmp_path, tiny_base, capsys):
    data = small_data(tmp_path / "data.jsonl")
    args = ["--config", "configs/lora/tiny_cpu.yaml", *overrides(tiny_base, data, tmp_path / "run", max_steps=1)]
    assert main(args) == 0
    stamp = (tmp_path / "run" / "final" / "train_meta.json").stat().st_mtime_ns
    assert main(args) == 0
    assert "already complete" in capsys.readouterr().out
    assert (tmp_path / "run" / "final" / "train_meta.json").stat().st_mtime_ns == stamp


@pytest.mark.slow
def test_the_seed_reproduces_a_run_and_another_seed_does_not(tmp_path, tiny_base):
    """The config's seed fixes everything random in a run, the method's initial weights included (LoRA's A is
    random): two runs with one seed give the same adapter, bit for bit; another seed gives another."""
    from safetensors.torch import load_file

    def adapter(name, seed):
        (tmp_path / name).mkdir()
        final, _ = _train(tmp_path / name, tiny_base, "lora", seed=seed, max_steps=2)
        return load_file(final / "adapter_model.safetensors")

    first, again, other = adapter("a", 0), adapter("b", 0), adapter("c", 1)
    assert first.keys() == again.keys() == other.keys() and first
    assert all(torch.equal(first[k], again[k]) for k in first), "one seed, two different adapters"
    assert not all(torch.equal(first[k], other[k]) for k in first)


def test_default_run_dir_is_named_by_config_and_data(tmp_path, oncoloop_home):
    from finetune.trainer import run_directory

    a, name = run_directory(TrainConfig(method="lora"), "a" * 64)
    b, _ = run_directory(TrainConfig(method="lora"), "a" * 64)
    c, _ = run_directory(TrainConfig(method="lora", lr=1.0), "a" * 64)
    d, _ = run_directory(TrainConfig(method="lora"), "b" * 64)
    assert a == b and len({a, c, d}) == 3 and a.parent == oncoloop_home / "runs" and name.startswith("lora-")
    assert json.loads(json.dumps(name)) == a.name
