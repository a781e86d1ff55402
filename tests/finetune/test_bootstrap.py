"""The tiny test fixture: deterministic build, installation into the registry, and recognisable answers."""

import json
import os
import subprocess
import sys

import pytest

from core.data import load_jsonl
from core.errors import OncoLoopError
from feedback.db import open_store
from finetune.bootstrap import BootstrapConfig, build, install, seed_bleu
from serve.ask import load
from serve.registry import Registry
from tests.conftest import REPO

SEED = REPO / "data" / "oncology_seed.jsonl"


def tiny_config(tmp_path, **overrides) -> BootstrapConfig:
    data = tmp_path / "seed20.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in load_jsonl(SEED)[:20]))
    fields = dict(data=str(data), vocab_size=400, hidden_size=32, intermediate_size=64, num_layers=1,
                  num_heads=2, num_kv_heads=2, max_steps=3, batch_size=4, eval_questions=2, max_new_tokens=4,
                  eval_every_epochs=0)
    return BootstrapConfig(**{**fields, **overrides})


def test_build_is_deterministic_for_a_seed(tmp_path):
    a = build(tiny_config(tmp_path), tmp_path / "a")
    b = build(tiny_config(tmp_path), tmp_path / "b")
    c = build(tiny_config(tmp_path, seed=7), tmp_path / "c")
    assert a["weights_sha256"] == b["weights_sha256"] != c["weights_sha256"]
    assert (tmp_path / "a" / "tokenizer.json").read_bytes() == (tmp_path / "b" / "tokenizer.json").read_bytes()
    assert a["train"]["epoch_losses"][-1] < 10
    meta = json.loads((tmp_path / "a" / "meta.json").read_text())
    assert meta["config"]["seed"] == 1234 and meta["method"] == "bootstrap"


def test_build_refuses_empty_data_and_writes_nothing(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(OncoLoopError, match="empty.jsonl"):
        build(tiny_config(tmp_path, data=str(empty)), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_install_registers_champion_once(bundled_model, oncoloop_home):
    version = install(bundled_model)
    registry = Registry(open_store())
    assert registry.resolve("champion") == version
    assert (oncoloop_home / "models" / version / "model.safetensors").is_file()
    assert install(bundled_model) == version  # idempotent
    assert len(registry.history("champion")) == 1


@pytest.mark.slow
def test_bundled_model_answers_seed_questions_recognisably(bundled_model):
    tokenizer, model = load(bundled_model)
    cfg = BootstrapConfig()
    score = seed_bleu(model, tokenizer, load_jsonl(SEED), 50, cfg.max_new_tokens)
    print(f"\nbootstrap base: sacreBLEU of greedy answers to 50 seed questions = {score:.1f}")
    assert score >= 30


@pytest.mark.slow
def test_first_run_commands_answer_a_question(oncoloop_home):
    env = {**os.environ, "ONCOLOOP_HOME": str(oncoloop_home)}
    run = lambda *args: subprocess.run([sys.executable, "-m", *args], env=env, capture_output=True, text=True,
                                       cwd=REPO, timeout=300)
    installed = run("finetune.bootstrap", "--tiny")
    assert installed.returncode == 0, installed.stderr
    asked = run("serve.ask", "What are the warning signs of malignant spinal cord compression?")
    assert asked.returncode == 0, asked.stderr
    assert "A (tiny-base-" in asked.stdout and "does not replace clinical judgement" in asked.stdout
    empty = run("serve.ask", "  ")
    assert empty.returncode == 2 and "question is empty" in empty.stderr
