"""Real DeepSpeed on CPU: ZeRO 0-3, every optimizer, every launcher (two processes), and resume after kill -9.

Each run is a subprocess (as users launch it), so DeepSpeed's process group and ZeRO-3's
global state never leak between tests. DeepSpeed's CPU ops compile once into
~/.cache/oncoloop/torch_extensions/<environment>.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core.process import free_port
from finetune.distributed import EXTENSIONS_DIR

from .train_helpers import (REPO, fixed_batch_loss, initial_and_trained, overrides, read_meta, run_cli, small_data,
                            trainable_changed)

ENV = {"TORCH_EXTENSIONS_DIR": str(EXTENSIONS_DIR), "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1"}


def _check_trained(method, base, final, data):
    initial, trained, tokenizer = initial_and_trained(method, base, final)
    assert trainable_changed(initial, trained, method), "no trainable tensor changed"
    assert fixed_batch_loss(trained, tokenizer, data) < fixed_batch_loss(initial, tokenizer, data)


def _launcher(name: str) -> list[str] | None:
    """How a run is started: ``python -m`` (None), torchrun or DeepSpeed's launcher with 2 CPU ranks."""
    if name == "torchrun":
        return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
                "--master_port", str(free_port()), "-m"]
    if name == "deepspeed":  # `deepspeed --num_gpus 2 --module finetune.train ...` as the docs print it; on a CPU
        # machine DeepSpeed's launcher starts 2 CPU ranks (gloo + its shared-memory comm op)
        return [str(Path(sys.executable).parent / "deepspeed"), "--num_gpus", "2", "--master_port", str(free_port()),
                "--module"]
    return None


# One run per ZeRO stage; together they cover every optimizer and every way of launching (each launch path
# once: a second run through the same launcher proves nothing new). Lion on CPU gets optimizer offload added by
# the config layer (DeepSpeedCPULion); Lamb on CPU runs as pytorch_optimizer's Lamb handed to DeepSpeed, which
# has no CPU Lamb. Two ranks take 2 rows each: the same 4 rows per step as one process.
@pytest.mark.slow
@pytest.mark.parametrize("stage,optimizer,method,lr,launcher", [
    (0, "adam", "lora", 1e-2, "python"),
    (1, "lamb", "lora", 1e-2, "torchrun"),
    (2, "lion", "lora", 1e-3, "deepspeed"),
    (3, "adamw", "full", 3e-3, "python"),
])
def test_zero_stage_optimizer_and_launcher(tmp_path, tiny_base, stage, optimizer, method, lr, launcher):
    data = small_data(tmp_path / "data.jsonl")
    out = tmp_path / "run"
    ranks = 1 if launcher == "python" else 2
    args = ["--config", f"configs/{method}/tiny_cpu.yaml",
            *overrides(tiny_base, data, out, optimizer=optimizer, lr=lr, per_device_batch_size=4 // ranks,
                       deepspeed=f"configs/deepspeed/zero{stage}.json")]
    proc = run_cli(args, env=ENV, launcher=_launcher(launcher))
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    meta = read_meta(out / "final")
    assert meta["deepspeed"]["zero_optimization"]["stage"] == stage
    if optimizer == "lion":
        assert meta["deepspeed"]["zero_optimization"]["offload_optimizer"]["device"] == "cpu"
        assert meta["deepspeed"]["optimizer"]["type"] == "Lion"
    elif optimizer == "lamb":
        assert "optimizer" not in meta["deepspeed"]  # pytorch_optimizer's Lamb, handed to DeepSpeed
    else:
        assert meta["deepspeed"]["optimizer"]["type"] == {"adam": "Adam", "adamw": "AdamW"}[optimizer]
    assert meta["metrics"]["global_step"] == 4 and meta["metrics"]["world_size"] == ranks
    if ranks == 2:  # 2 processes x 2 rows per step: 4 steps saw 16 rows' worth of real tokens
        assert meta["metrics"]["real_tokens_seen"] > 8 * 100
    _check_trained(method, tiny_base, out / "final", data)


def test_shipped_hostfile_parses_with_deepspeeds_own_reader():
    """The multi-node example is read as DeepSpeed's launcher reads it (running it needs the nodes)."""
    from deepspeed.launcher.runner import fetch_hostfile

    hosts = fetch_hostfile(str(REPO / "configs" / "deepspeed" / "hostfile.example"))
    assert dict(hosts) == {"gpu-node-1": 8, "gpu-node-2": 8}


@pytest.mark.slow
def test_resume_after_kill_9(tmp_path, tiny_base):
    data = small_data(tmp_path / "data.jsonl")
    out = tmp_path / "run"
    args = ["--config", "configs/lora/tiny_cpu.yaml",
            *overrides(tiny_base, data, out, max_steps=24, save_steps=2, per_device_batch_size=2,
                       deepspeed="configs/deepspeed/zero1.json")]
    cmd = [sys.executable, "-m", "finetune.train", *args]
    env = {**os.environ, **ENV, "PYTHONPATH": str(REPO)}
    first = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True)
    try:
        deadline = time.time() + 300
        while not (out / "checkpoint-4" / "trainer_state.json").is_file():
            assert first.poll() is None, "the first run ended before it could be killed"
            assert time.time() < deadline, "no checkpoint-4 within 5 minutes"
            time.sleep(0.05)
        os.killpg(first.pid, signal.SIGKILL)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    assert not (out / "final").exists(), "the run finished before the kill"

    again = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resuming from" in again.stdout
    meta = read_meta(out / "final")
    resumed_at = int(meta["metrics"]["resumed_from"].rsplit("-", 1)[-1])
    assert resumed_at >= 4 and meta["metrics"]["global_step"] == 24
    # The log history runs on from before the kill: every step logged once, in order.
    steps = [entry["step"] for entry in meta["metrics"]["losses"]]
    assert steps == sorted(set(steps)) and steps[-1] == 24 and steps[0] == 1
