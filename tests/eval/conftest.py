"""An OncoLoop home for the evaluation tests: the bundled tiny model as champion, and two candidates made the
real way (a few LoRA steps with ``finetune.train``, merged and registered with ``finetune.merge``):
``good`` (trained on seed data) and ``shuffled`` (trained on seed answers shuffled among the questions)."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.gateway import Gateway, registry_at

REPO = Path(__file__).resolve().parents[2]
SEED = REPO / "data" / "oncology_seed.jsonl"


def run_module(home: Path, *args: str, timeout: int = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    """``python -m ARGS`` with ``$ONCOLOOP_HOME`` = ``home``; fails the test with its output on error."""
    proc = subprocess.run([sys.executable, "-m", *args], cwd=REPO, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "ONCOLOOP_HOME": str(home), "PYTHONPATH": str(REPO), **(env or {})})
    return proc


def make_candidate(home: Path, name: str, data: Path, steps: int, lr: float) -> str:
    """A LoRA run of ``steps`` steps on the champion (``finetune.train``), merged and registered as version
    ``name`` (``finetune.merge``). In process: two interpreter starts saved per candidate."""
    from core.config import load_config
    from finetune.merge import create_version
    from finetune.train import train
    from finetune.train_config import TrainConfig

    cfg = load_config(TrainConfig, REPO / "configs/lora/tiny_cpu.yaml", [
        f"data=[{data}]", f"output_dir={home / 'runs' / name}", f"max_steps={steps}", f"lr={lr}", "tracker=none",
        "per_device_batch_size=8", "max_seq_len=192", "save_steps=1000", "warmup_ratio=0",
        "lora_target_modules=[q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj]"])
    with pytest.MonkeyPatch.context() as mp:  # the champion and the registry of this home
        mp.setenv("ONCOLOOP_HOME", str(home))
        create_version(train(cfg), version=name, register=True)
    return name


def shuffled_seed(path: Path, seed: int = 7) -> Path:
    """The seed with its answers shuffled among the questions (a deliberately broken training set)."""
    records = [json.loads(line) for line in SEED.read_text(encoding="utf-8").splitlines() if line.strip()]
    outputs = [r["output"] for r in records]
    random.Random(seed).shuffle(outputs)
    path.write_text("".join(json.dumps({**r, "output": o}) + "\n" for r, o in zip(records, outputs)),
                    encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def eval_home(tmp_path_factory, bundled_model) -> Path:
    """A home whose champion is the bootstrap base, with candidates ``good`` and ``shuffled`` registered."""
    home = tmp_path_factory.mktemp("eval") / "home"
    proc = run_module(home, "finetune.bootstrap", "--tiny")
    assert proc.returncode == 0, proc.stderr[-3000:]
    make_candidate(home, "good", SEED, steps=2, lr=1e-4)
    # 12 steps at a high rate: recitation of the seed collapses (retention chrF ~50 -> ~15 at 32 tokens)
    make_candidate(home, "shuffled", shuffled_seed(home.parent / "shuffled.jsonl"), steps=12, lr=3e-2)
    return home


@pytest.fixture(scope="module")
def eval_gateway(eval_home):
    """A gateway over the eval home serving the champion and both candidates (pinned by id)."""
    gw = Gateway(eval_home, "--engine", "transformers", "--guard", str(REPO / "configs/guard/tiny_cpu.yaml"),
                 "challenger_share=0", "versions=[good,shuffled]", "poll_interval_s=1")
    try:
        gw.wait(lambda s: s.get("ready") and {"good", "shuffled"} <= set(s.get("engines", {}))
                and all(e["state"] == "ready" for e in s["engines"].values()))
        yield gw
    finally:
        gw.stop()


def champion_of(home: Path) -> str:
    return registry_at(home).resolve("champion")
