"""Merging LoRA into its base, copying full fine-tunes, and registering P-tuning as an unmergeable adapter."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from core.errors import OncoLoopError
from core.prompt import CHAT_TEMPLATE, to_messages
from core.settings import get_settings
from feedback.db import open_store
from finetune.bootstrap import install
from finetune.merge import create_version, main, read_run
from serve.registry import Registry

PROMPTS = ["What is neutropenic fever?", "How is tumour lysis syndrome prevented?", "Define ECOG 2."]
# As finetune.train writes it (plus feedback_ids, which the retrain job adds for feedback data).
TRAIN_META = {"method": "lora", "base": "champion", "config": {"method": "lora", "lr": 0.01, "max_steps": 3},
              "dataset": {"paths": ["data/oncology_seed.jsonl"], "sha256": "d" * 64, "records": 20},
              "deepspeed": None, "run_name": "lora-test", "feedback_ids": [11, 12], "metrics": {"train_loss": 1.23}}


def _train_peft(base: Path, peft_config, out: Path, method: str) -> Path:
    """A few Adam steps on a peft model of ``base`` (so LoRA B / prompt encoder move), saved like training does."""
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(str(base), dtype="float32"), peft_config)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    ids = torch.randint(4, 300, (2, 12))
    for _ in range(3):
        model(input_ids=ids, labels=ids).loss.backward()
        opt.step()
        opt.zero_grad()
    model.save_pretrained(str(out))
    AutoTokenizer.from_pretrained(str(base)).save_pretrained(str(out))
    (out / "train_meta.json").write_text(json.dumps({**TRAIN_META, "config": {**TRAIN_META["config"],
                                                                               "method": method}}))
    return out


@pytest.fixture(scope="module")
def lora_run(tiny_base, tmp_path_factory) -> Path:
    from peft import LoraConfig

    out = tmp_path_factory.mktemp("lora_run") / "final"
    cfg = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
                     task_type="CAUSAL_LM")
    _train_peft(tiny_base, cfg, out, "lora")
    from safetensors.torch import load_file

    b = [t for k, t in load_file(str(out / "adapter_model.safetensors")).items() if "lora_B" in k]
    assert b and all(t.abs().max() > 0 for t in b), "LoRA B matrices must be non-zero for the merge test to mean anything"
    return out


@pytest.fixture(scope="module")
def ptuning_run(tiny_base, tmp_path_factory) -> Path:
    from peft import PromptEncoderConfig

    out = tmp_path_factory.mktemp("pt_run") / "final"
    cfg = PromptEncoderConfig(num_virtual_tokens=4, encoder_hidden_size=16, task_type="CAUSAL_LM")
    return _train_peft(tiny_base, cfg, out, "ptuning")


@pytest.fixture
def base_version(tiny_base) -> str:
    """The tiny base installed and registered (champion) in this test's home."""
    return install(tiny_base)


def _logits(model, tokenizer, prompts=PROMPTS) -> list[torch.Tensor]:
    out = []
    for q in prompts:
        text = tokenizer.apply_chat_template(to_messages(q), tokenize=False, add_generation_prompt=True)
        ids = tokenizer(text, return_tensors="pt", add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            out.append(model(input_ids=ids).logits[0])
    return out


def test_lora_merge_gives_a_standalone_model_with_the_same_logits(lora_run, base_version, tiny_base):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target = create_version(lora_run, base=base_version, version="lora-test-1", register=True)

    assert target.parent.name == "models" and target.name == "lora-test-1"
    assert (target / "model.safetensors").is_file() and not (target / "adapter_config.json").exists()
    tokenizer = AutoTokenizer.from_pretrained(str(target))
    assert tokenizer.chat_template == CHAT_TEMPLATE
    merged = AutoModelForCausalLM.from_pretrained(str(target), dtype="float32").eval()
    assert not any("lora" in n for n, _ in merged.named_parameters())

    base = AutoModelForCausalLM.from_pretrained(str(tiny_base), dtype="float32").eval()
    base_logits = _logits(base, tokenizer)
    unmerged = PeftModel.from_pretrained(base, str(lora_run)).eval()
    for a, b, c in zip(_logits(unmerged, tokenizer), _logits(merged, tokenizer), base_logits):
        assert (a - b).abs().max().item() < 1e-4
        assert (b - c).abs().max().item() > 1e-3  # the adapter did change the model

    meta = json.loads((target / "meta.json").read_text())
    assert meta["method"] == "lora" and meta["mergeable"] is True
    assert meta["parent"] == base_version and meta["base"].endswith(f"models/{base_version}")
    assert meta["config"] == {"method": "lora", "lr": 0.01, "max_steps": 3}
    assert meta["dataset"]["sha256"] == "d" * 64 and meta["feedback_ids"] == [11, 12]
    assert meta["metrics"] == {"train_loss": 1.23} and meta["run_name"] == "lora-test"
    assert meta["adapter"]["r"] == 4 and meta["merge_check"]["probe_max_abs_logit_diff"] < 1e-4
    registry = Registry(open_store())
    row = registry.get("lora-test-1")
    assert row.parent == base_version and row.mergeable == 1 and row.method == "lora"
    assert registry.aliases() == {"champion": base_version}  # registering never moves an alias


def test_a_scaled_merge_adds_that_fraction_of_the_update(lora_run, base_version, tiny_base, capsys):
    from safetensors.torch import load_file

    full = create_version(lora_run, base=base_version, version="lora-full")
    assert main(["--adapter", str(lora_run), "--base", base_version, "--version", "lora-half", "--scale", "0.5"]) == 0
    half = get_settings().models_dir / "lora-half"
    base_w, full_w, half_w = (load_file(str(d / "model.safetensors")) for d in (tiny_base, full, half))
    moved = [k for k in base_w if (full_w[k] - base_w[k]).abs().max() > 1e-6]
    assert moved and all("proj" in k for k in moved)  # the LoRA targets, nothing else
    for k in base_w:
        assert torch.allclose(half_w[k], base_w[k] + 0.5 * (full_w[k] - base_w[k]), atol=1e-6), k
    meta = json.loads((half / "meta.json").read_text())
    assert meta["merge_scale"] == 0.5 and json.loads((full / "meta.json").read_text())["merge_scale"] == 1.0
    assert main(["--adapter", str(lora_run), "--version", "x", "--scale", "0"]) == 2
    assert "factor in (0, 4]" in capsys.readouterr().err


def test_versions_are_immutable_and_nothing_half_written(lora_run, tiny_base, capsys):
    args = ["--adapter", str(lora_run), "--base", str(tiny_base), "--version", "lora-x"]
    assert main(args) == 0
    assert "merge: lora-x: LoRA merged into its base" in capsys.readouterr().out
    models = get_settings().models_dir
    first = (models / "lora-x" / "model.safetensors").read_bytes()
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: version lora-x already exists") and "immutable" in err
    assert sorted(p.name for p in models.iterdir()) == ["lora-x"]  # no .tmp left behind
    assert (models / "lora-x" / "model.safetensors").read_bytes() == first
    assert json.loads((models / "lora-x" / "meta.json").read_text())["parent"] is None  # base outside the home


def test_ptuning_refuses_to_merge_but_registers_as_an_unmergeable_adapter(ptuning_run, base_version, capsys):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    assert read_run(ptuning_run).method == "ptuning"
    with pytest.raises(OncoLoopError, match="P-tuning cannot be merged.*--register"):
        create_version(ptuning_run, base=base_version)
    assert main(["--adapter", str(ptuning_run), "--base", base_version]) == 2
    assert "cannot be merged" in capsys.readouterr().err

    target = create_version(ptuning_run, base=base_version, version="pt-1", register=True)
    meta = json.loads((target / "meta.json").read_text())
    home_models = target.parent
    assert meta["mergeable"] is False and meta["method"] == "ptuning"
    assert meta["base"] == str(home_models / base_version) and meta["parent"] == base_version
    assert (target / "adapter_config.json").is_file() and (target / "adapter_model.safetensors").is_file()
    assert AutoTokenizer.from_pretrained(str(target)).chat_template == CHAT_TEMPLATE
    row = Registry(open_store()).get("pt-1")
    assert row.mergeable == 0 and row.parent == base_version
    # The registered adapter serves on its base exactly as the trained one does.
    tok = AutoTokenizer.from_pretrained(meta["base"])
    fresh = lambda: AutoModelForCausalLM.from_pretrained(meta["base"], dtype="float32").eval()  # noqa: E731
    a = _logits(PeftModel.from_pretrained(fresh(), str(target)).eval(), tok, PROMPTS[:1])[0]
    b = _logits(PeftModel.from_pretrained(fresh(), str(ptuning_run)).eval(), tok, PROMPTS[:1])[0]
    assert torch.equal(a, b)


def test_ptuning_needs_a_registered_base_version(ptuning_run, tiny_base):
    with pytest.raises(OncoLoopError, match="immutable base version"):
        create_version(ptuning_run, base=str(tiny_base), register=True)


def test_full_fine_tune_is_copied_as_a_standalone_version(tiny_base, base_version, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    final = tmp_path / "full" / "final"
    model = AutoModelForCausalLM.from_pretrained(str(tiny_base), dtype="float32")
    with torch.no_grad():
        model.model.norm.weight.mul_(1.5)
    model.save_pretrained(str(final))
    AutoTokenizer.from_pretrained(str(tiny_base)).save_pretrained(str(final))
    (final / "train_meta.json").write_text(json.dumps({**TRAIN_META, "config": {"method": "full",
                                                                                 "base": base_version}}))
    (final / "optimizer.pt").write_bytes(b"state")  # run state must not travel into the version

    target = create_version(final, register=True)
    meta = json.loads((target / "meta.json").read_text())
    assert meta["method"] == "full" and meta["parent"] == base_version and meta["mergeable"] is True
    assert not (target / "optimizer.pt").exists() and not (target / "train_meta.json").exists()
    copy = AutoModelForCausalLM.from_pretrained(str(target), dtype="float32")
    assert torch.equal(copy.model.norm.weight, model.model.norm.weight)
    assert Registry(open_store()).get(target.name).method == "full"


def test_bad_input_gets_clear_messages(lora_run, tmp_path, capsys):
    with pytest.raises(OncoLoopError, match="does not exist as a directory and is not a registered version"):
        create_version(lora_run, base=str(tmp_path / "no-such-base"))
    with pytest.raises(OncoLoopError, match="unknown model or version 'tiny-base-nope'"):
        create_version(lora_run, base="tiny-base-nope")
    assert main(["--adapter", str(tmp_path / "missing")]) == 2
    assert "does not exist; give the training run's final/ directory" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["--adapter", str(empty)]) == 2
    assert "neither a peft adapter" in capsys.readouterr().err
    half = tmp_path / "half"
    shutil.copytree(lora_run, half)
    (half / "adapter_model.safetensors").unlink()
    with pytest.raises(OncoLoopError, match="no adapter_model.safetensors"):
        create_version(half)


def test_adapter_on_the_wrong_base_is_refused(lora_run, tmp_path, tiny_base):
    from transformers import LlamaConfig, LlamaForCausalLM

    other = tmp_path / "wide"
    cfg = LlamaConfig(vocab_size=400, hidden_size=48, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=2)
    LlamaForCausalLM(cfg).save_pretrained(str(other))
    with pytest.raises(OncoLoopError, match="does not fit base"):
        create_version(lora_run, base=str(other))
