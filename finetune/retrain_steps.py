"""The steps of ``python -m finetune.retrain``, each resumable: the same inputs give the same names.

The snapshot directory, the training run and the candidate version are all named after the content of
the training set, so a rerun after a crash finds what the killed run left and continues from there.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import random
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from core.config import load_config
from core.data import load_jsonl, write_jsonl
from core.errors import OncoLoopError
from core.process import die_with_parent
from core.settings import Settings, get_settings
from finetune.retrain_config import RetrainConfig
from finetune.train_config import METHODS, TrainConfig

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Snapshot:
    """A training set for one retrain: ``train.jsonl`` (what is trained) and ``new.jsonl`` (the new feedback)."""

    dir: Path
    sha256: str  # of train.jsonl
    method: str
    train_examples: int
    replay: int  # seed records replayed
    new_records: int
    repeats: int  # how often each new record appears
    feedback_ids: dict  # messages / ratings / reviews behind the new records

    @property
    def train_path(self) -> Path:
        return self.dir / "train.jsonl"

    @property
    def new_path(self) -> Path:
        return self.dir / "new.jsonl"

    @property
    def run_name(self) -> str:
        return f"retrain-{self.method}-{self.sha256[:12]}"

    @property
    def version(self) -> str:
        return f"{self.method}-{self.sha256[:12]}"


class RetrainLock:
    """An exclusive lock file: two retrains never run at once; the OS drops it when the holder dies."""

    def __init__(self, path: Path):
        self.path = path
        self._fd: int | None = None

    def __enter__(self) -> "RetrainLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 200).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise OncoLoopError(f"another retrain is running ({holder}); wait for it to finish, or stop it "
                                f"and run again (its lock is {self.path}).") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()}, started {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M:%S} UTC".encode())
        self._fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing releases the flock
            self._fd = None


def check_config(cfg: RetrainConfig) -> None:
    """Refuse a bad retrain config before anything is exported or trained."""
    if cfg.method and cfg.method not in METHODS:
        raise OncoLoopError(f"unknown method {cfg.method!r}; use one of {', '.join(METHODS)}.")
    if not 0.0 <= cfg.new_share < 1.0:
        raise OncoLoopError(f"new_share must lie in [0, 1), not {cfg.new_share}.")
    if cfg.min_new_records < 0 or cfg.replay_records < 0:
        raise OncoLoopError("min_new_records and replay_records cannot be negative.")
    for name in ("train_config", "gate_policy", "deepspeed"):
        value = getattr(cfg, name)
        if value and not _path(value).is_file():
            raise OncoLoopError(f"{name}={value} does not exist; give a file (shipped ones are under configs/).")
    for path in cfg.seed_data:
        if not _path(path).is_file():
            raise OncoLoopError(f"seed_data file {path} does not exist.")


def _path(p: str) -> Path:
    """Relative paths in configs mean the current directory first, then the repository."""
    path = Path(p)
    return path if path.is_absolute() or path.exists() else ROOT / path


@dataclass
class UsedFeedback:
    """The feedback a version's lineage was trained on.

    A record counts as used when every rating and review behind it was used, so a correction approved
    after the champion was trained is new even on a message the champion learnt from. Versions that
    recorded only message ids (older metadata) exclude their messages whole.
    """

    ratings: set[int]
    reviews: set[int]
    messages: set[int]  # from versions without rating ids

    def covers(self, record: dict) -> bool:
        """
        >>> used = UsedFeedback({1, 2}, {5}, {9})
        >>> [used.covers({"meta": {"feedback_ids": f}}) for f in ({"message": 3, "ratings": [1], "reviews": [5]},
        ...     {"message": 3, "ratings": [1, 4], "reviews": [5]}, {"message": 9, "ratings": [7], "reviews": []})]
        [True, False, True]
        """
        ids = (record.get("meta") or {}).get("feedback_ids") or {}
        messages = ids.get("messages") or [ids.get("message")]
        if any(m in self.messages for m in messages):
            return True
        ratings, reviews = set(ids.get("ratings") or []), set(ids.get("reviews") or [])
        return bool(ratings) and ratings <= self.ratings and reviews <= self.reviews


def used_feedback(registry, version) -> UsedFeedback:
    """What every version in ``version``'s lineage was trained on."""
    used = UsedFeedback(set(), set(), set())
    seen = set()
    while version is not None and version.id not in seen:
        seen.add(version.id)
        ids = (version.meta or {}).get("feedback_ids") or {}
        if isinstance(ids, dict) and "ratings" in ids:
            used.ratings.update(ids["ratings"])
            used.reviews.update(ids.get("reviews", []))
        else:
            used.messages.update(ids.get("messages", []) if isinstance(ids, dict) else ids)
        version = registry.get(version.parent) if version.parent else None
    return used


def record_message(record: dict) -> int | None:
    """The message id a feedback record came from.

    >>> record_message({"meta": {"feedback_ids": {"message": 7, "ratings": [3], "reviews": [4]}}})
    7
    """
    return ((record.get("meta") or {}).get("feedback_ids") or {}).get("message")


def export_new_feedback(cfg: RetrainConfig, registry, champion, settings: Settings) -> tuple[list[dict], dict]:
    """Export the reviewed feedback the champion's lineage has not learnt (scrubbed, decontaminated, de-duplicated).

    Used feedback is left out before de-duplication, so a new correction close to one the champion already
    learnt is kept rather than removed as its duplicate.
    """
    from feedback.dedup import choose_embedder
    from feedback.export import export
    from feedback.store import FeedbackStore

    embed, embedder = choose_embedder(cfg.embedder)
    used = used_feedback(registry, champion)
    with tempfile.TemporaryDirectory(dir=settings.datasets_dir) as tmp:
        result = export(FeedbackStore.open(settings), Path(tmp) / "feedback.jsonl", embed=embed, embedder=embedder,
                        reviewed_only=cfg.reviewed_only, skip=used.covers)
        new = load_jsonl(Path(tmp) / "feedback.jsonl") if result.records else []
    return new, {"already_used": result.removed["already_used_records"], "embedder": embedder,
                 "removed": result.removed}


def repeats_for(share: float, replay: int, new: int) -> int:
    """How often to repeat each new record so that new records make up about ``share`` of the examples.

    >>> repeats_for(0.3, 533, 20), repeats_for(0.0, 533, 20), repeats_for(0.3, 0, 20)
    (11, 1, 1)
    """
    if new == 0 or share <= 0 or replay == 0:
        return 1
    return max(1, round(share * replay / ((1 - share) * new)))


def training_set(seed: list[dict], new: list[dict], share: float, replay: int, rng_seed: int) -> tuple[list[dict], int, int]:
    """Seed replay plus repeated new records, shuffled; returns (records, replayed, repeats).

    >>> recs, n, k = training_set([{"meta": {"id": f"s{i}"}} for i in range(6)], [{"meta": {"id": "f"}}], 0.5, 4, 0)
    >>> n, k, sorted(r["meta"]["id"] for r in recs if r["meta"]["id"].startswith("f"))
    (4, 4, ['f', 'f#2', 'f#3', 'f#4'])
    """
    rng = random.Random(rng_seed)
    kept = rng.sample(seed, replay) if 0 < replay < len(seed) else list(seed)
    k = repeats_for(share, len(kept), len(new))
    copies = [r if i == 0 else {**r, "meta": {**r.get("meta", {}), "id": f"{r['meta']['id']}#{i + 1}"}}
              for i in range(k) for r in new]
    records = kept + copies
    rng.shuffle(records)
    return records, len(kept), k


def build_snapshot(cfg: RetrainConfig, new: list[dict], champion, export_info: dict, settings: Settings) -> Snapshot:
    """Write the training set under ``$ONCOLOOP_HOME/datasets/retrain-<sha>/`` (reused when it exists)."""
    method = cfg.method or load_config(TrainConfig, _path(cfg.train_config), []).method
    seed = [r for path in cfg.seed_data for r in load_jsonl(_path(path))]
    records, replayed, repeats = training_set(seed, new, cfg.new_share, cfg.replay_records, cfg.seed)
    ids = {"messages": sorted({record_message(r) for r in new}),
           "ratings": sorted({i for r in new for i in r["meta"]["feedback_ids"].get("ratings", [])}),
           "reviews": sorted({i for r in new for i in r["meta"]["feedback_ids"].get("reviews", [])})}
    tmp = Path(tempfile.mkdtemp(dir=settings.datasets_dir, prefix=".snapshot-"))
    try:
        sha = write_jsonl(records, tmp / "train.jsonl")
        write_jsonl(new, tmp / "new.jsonl")
        snap = Snapshot(settings.datasets_dir / f"retrain-{sha[:12]}", sha, method, len(records), replayed,
                        len(new), repeats, ids)
        manifest = {"sha256": sha, "method": method, "champion": champion.id, "train_examples": len(records),
                    "replayed_seed": replayed, "new_records": len(new), "repeats": repeats, "feedback_ids": ids,
                    "export": export_info, "seed_data": cfg.seed_data,
                    "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str) + "\n", encoding="utf-8")
        if not snap.dir.exists():
            tmp.rename(snap.dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return snap


def launch_command(launcher: str) -> list[str]:
    """The command that starts ``finetune.train``: this Python, or a distributed launcher.

    >>> launch_command("torchrun --nproc_per_node 8")
    ['torchrun', '--nproc_per_node', '8', '-m', 'finetune.train']
    >>> launch_command("deepspeed --num_gpus 8 --hostfile hosts")[-2:]
    ['--module', 'finetune.train']
    """
    if not launcher.strip():
        return [sys.executable, "-m", "finetune.train"]
    words = shlex.split(launcher)
    name = Path(words[0]).name
    if name == "torchrun":
        return words + ["-m", "finetune.train"]
    if name == "deepspeed":
        return words + ["--module", "finetune.train"]
    raise OncoLoopError(f"launcher {words[0]!r} is not supported; use torchrun or deepspeed (or leave it empty).")


def train_candidate(cfg: RetrainConfig, snap: Snapshot, champion) -> Path:
    """Train from the champion in a child process; a rerun resumes the same run from its last checkpoint."""
    run_dir = get_settings().runs_dir / snap.run_name
    final = run_dir / "final"
    base = champion.path if champion.mergeable else champion.base  # a P-tuning champion: its base model
    overrides = [f"method={snap.method}", f"base={base}", f"data=[{snap.train_path}]", f"run_name={snap.run_name}",
                 f"output_dir={run_dir}", f"seed={cfg.seed}", f"deepspeed={_path(cfg.deepspeed) if cfg.deepspeed else ''}",
                 *cfg.train_overrides]
    command = launch_command(cfg.launcher) + ["--config", str(_path(cfg.train_config)), *overrides]
    print("retrain: " + " ".join(command), flush=True)
    # SIGKILL to the child when this process dies: a killed retrain never leaves training running
    code = subprocess.call(command, preexec_fn=die_with_parent(signal.SIGKILL), cwd=ROOT)
    if code != 0 or not (final / "train_meta.json").is_file():
        raise OncoLoopError(f"training failed (exit {code}); its output is above and its run is {run_dir}. Fix "
                            "the cause and run the same command again: it resumes from the last checkpoint.")
    return final


def candidate_version(final: Path, snap: Snapshot, champion, registry, retrain_config: dict) -> str:
    """Merge (LoRA), copy (full) or keep (P-tuning) the run as a version with its lineage; register it once."""
    from finetune.merge import create_version, read_run

    try:
        return registry.get(snap.version).id  # a rerun after a crash in the gate
    except OncoLoopError:
        pass
    target = get_settings().models_dir / snap.version
    if (target / "meta.json").is_file():  # merged, then killed before registering
        registry.register(target)
        return snap.version
    parent = champion.id if champion.mergeable else champion.parent
    lineage = {"feedback_ids": snap.feedback_ids, "retrain": retrain_config,
               "dataset": {"sha256": snap.sha256, "path": str(snap.train_path), "snapshot": str(snap.dir),
                           "examples": snap.train_examples, "new_records": snap.new_records,
                           "replayed_seed": snap.replay, "repeats": snap.repeats}}
    scale = float(retrain_config.get("merge_scale", 1.0)) if read_run(final).method == "lora" else 1.0
    create_version(final, base=parent, version=snap.version, register=True, extra_meta=lineage, scale=scale)
    return snap.version
