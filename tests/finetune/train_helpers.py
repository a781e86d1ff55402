"""Helpers for the training tests: small data, a fixed-batch loss, and what training changed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def small_data(path: Path, n: int = 32) -> Path:
    """The first ``n`` seed records as a JSONL file."""
    lines = (REPO / "data" / "oncology_seed.jsonl").read_text(encoding="utf-8").splitlines()[:n]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def overrides(base: Path, data: Path, out: Path, **extra) -> list[str]:
    """key=value overrides for a short CPU run of the tiny model."""
    values = dict(base=str(base), data=str(data), output_dir=str(out), max_steps=4, per_device_batch_size=4,
                  max_seq_len=160, warmup_ratio=0.0, logging_steps=1, save_steps=100, tracker="none", lr=1e-2,
                  guard="configs/guard/tiny_cpu.yaml")  # tiny models are served (and trained) without the preamble
    values.update(extra)
    return [f"{k}={v}" for k, v in values.items()]


def run_cli(args: list[str], env: dict | None = None, timeout: int = 600, launcher: list[str] | None = None):
    """``python -m finetune.train ARGS`` in a subprocess (own process group, real DeepSpeed)."""
    cmd = (launcher or [sys.executable, "-m"]) + ["finetune.train", *args]
    full_env = {**os.environ, **(env or {}), "PYTHONPATH": str(REPO)}
    return subprocess.run(cmd, cwd=REPO, env=full_env, capture_output=True, text=True, timeout=timeout)


def fixed_batch_loss(model, tokenizer, data: Path, n: int = 8, max_len: int = 160) -> float:
    """Mean response-token loss of ``model`` on the first ``n`` records (same batch every call)."""
    import torch

    from finetune.batching import encode_records, load_records, make_collator

    batch = make_collator("length", tokenizer)(encode_records(load_records([str(data)])[:n], tokenizer, max_len))
    model.eval()
    with torch.no_grad():
        return model(**batch).loss.item()


def initial_and_trained(method: str, base: Path, final: Path, seed: int = 42, **cfg_values):
    """(initial model, trained model, tokenizer): the initial one rebuilt exactly as training built it."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, set_seed

    from finetune.methods import apply_method, load_base
    from finetune.train_config import TrainConfig

    cfg = TrainConfig(base=str(base), method=method, seed=seed, **cfg_values)
    set_seed(seed)
    initial, tokenizer, _ = load_base(cfg)
    initial = apply_method(initial, cfg)
    if method == "full":
        trained = AutoModelForCausalLM.from_pretrained(final)
    else:
        trained = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), final)
    return initial, trained, tokenizer


def trainable_changed(initial, trained, method: str) -> list[str]:
    """Names of the saved trainable tensors that differ from their initial values."""
    import torch

    if method == "full":
        before, after = initial.state_dict(), trained.state_dict()
    else:
        from peft import get_peft_model_state_dict

        before, after = get_peft_model_state_dict(initial), get_peft_model_state_dict(trained)
    assert before.keys() == after.keys() and before, "saved weights do not match the trained model's"
    return [k for k in before if not torch.allclose(before[k].float(), after[k].float())]


def read_meta(final: Path) -> dict:
    return json.loads((final / "train_meta.json").read_text(encoding="utf-8"))
