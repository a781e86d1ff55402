"""Experiment tracking: Weights & Biases (offline by default) or a null tracker, behind one protocol.

Offline runs are written under ``<run dir>/wandb/offline-run-*``; upload them later with
``wandb sync <run dir>/wandb/offline-run-*``. ``tracker=none`` gives the null tracker,
so the training code never asks whether tracking is on.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Protocol

from transformers import TrainerCallback

from finetune.train_config import TrainConfig


class Tracker(Protocol):
    def log(self, metrics: dict, step: int) -> None: ...
    def summary(self, metrics: dict) -> None: ...
    def finish(self) -> None: ...


class NullTracker:
    """Tracks nothing (``tracker=none``, and every process but rank 0)."""

    def log(self, metrics: dict, step: int) -> None:
        pass

    def summary(self, metrics: dict) -> None:
        pass

    def finish(self) -> None:
        pass


class WandbTracker:
    """A wandb run in ``run_dir``; resuming the training run resumes the same wandb run id."""

    def __init__(self, cfg: TrainConfig, run_dir: Path, run_id: str, config: dict):
        import wandb

        self.run = wandb.init(project=cfg.wandb_project, name=run_id, id=run_id, resume="allow",
                              dir=str(run_dir), mode=cfg.wandb_mode, config=config,
                              settings=wandb.Settings(silent=True, console="off"))

    def log(self, metrics: dict, step: int) -> None:
        self.run.log(metrics, step=step)

    def summary(self, metrics: dict) -> None:
        self.run.summary.update(metrics)

    def finish(self) -> None:
        self.run.finish()


def make_tracker(cfg: TrainConfig, run_dir: Path, run_id: str, config: dict, main_process: bool) -> Tracker:
    """The tracker the config asks for (wandb | none); a null tracker off the main process."""
    if cfg.tracker not in ("wandb", "none"):
        from core.errors import OncoLoopError

        raise OncoLoopError(f"unknown tracker {cfg.tracker!r}; use wandb or none.")
    if cfg.tracker == "none" or not main_process:
        return NullTracker()
    return WandbTracker(cfg, run_dir, run_id, config)


class TrackingCallback(TrainerCallback):
    """Forwards the Trainer's logs (loss, lr, grad norm) and adds real (non-padding) tokens/s.

    Token counts come from the Trainer's ``num_input_tokens_seen`` in ``non_padding`` mode
    (summed over processes), so tokens/s is what the model learned from, not padding.
    """

    def __init__(self, tracker: Tracker):
        self.tracker = tracker
        self.history: list[dict] = []
        self._last = (time.perf_counter(), 0)

    def on_train_begin(self, args, state, control, **kwargs):
        self._last = (time.perf_counter(), state.num_input_tokens_seen)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        now, tokens = time.perf_counter(), state.num_input_tokens_seen
        entry = {k: v for k, v in logs.items() if isinstance(v, (int, float))}
        if "loss" in entry and now > self._last[0]:
            entry["tokens_per_second"] = (tokens - self._last[1]) / (now - self._last[0])
            self._last = (now, tokens)
        entry["tokens_seen"] = tokens
        self.history.append({"step": state.global_step, **entry})
        self.tracker.log({f"train/{k}": v for k, v in entry.items()}, step=state.global_step)
