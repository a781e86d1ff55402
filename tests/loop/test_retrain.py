"""``python -m finetune.retrain``: bad configs, the lock, nothing-to-do, dry runs, lineage, and kill -9.

The full loop through the UI and the gate is in test_closed_loop.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core.errors import OncoLoopError
from feedback.db import open_store
from feedback.store import FeedbackStore
from finetune.bootstrap import install
from finetune.retrain import main as retrain_main
from finetune.retrain_config import RetrainConfig
from finetune.retrain_steps import RetrainLock, UsedFeedback, check_config, used_feedback
from serve.registry import Registry
from serve.registry import main as registry_cli

REPO = Path(__file__).resolve().parents[2]
CORRECTIONS = Path(__file__).with_name("corrections.jsonl")


@pytest.fixture
def home(oncoloop_home, bundled_model):
    install(bundled_model)
    return oncoloop_home


def retrain(argv: list[str]) -> int:
    """``python -m finetune.retrain`` on the tiny fixture's recipe (the default config is the SmolLM2 one)."""
    return retrain_main(["--config", str(REPO / "configs" / "retrain" / "tiny_cpu.yaml"), *argv])


def retrain_summary(stdout: str) -> dict:
    """The JSON summary ``finetune.retrain`` prints (training logs around it hold other braces)."""
    start = stdout.index('{\n  "dataset"')
    return json.loads(stdout[start:stdout.index("\n}", start) + 2])


def _feedback(n: int, reviewed: bool = True) -> list[int]:
    """n clinician corrections through the store (as the UI records them); approved when ``reviewed``."""
    store = FeedbackStore.open()
    carla = store.add_user("carla", "carla-password-1", "clinician")
    rita = store.add_user("rita", "rita-password-1", "reviewer")
    records = [json.loads(x) for x in CORRECTIONS.read_text().splitlines()][:n]
    champion = _registry().resolve("champion")
    ids = []
    for r in records:
        conv = store.start_conversation(carla, model_version=champion)
        mid = store.record_question(carla, conv, r["instruction"])
        store.record_answer(mid, "Some unrelated text.", champion)
        rating = store.rate(carla, mid, thumbs=-1, tags=["incorrect"], correction=r["output"])
        if reviewed:
            store.review(rita, rating, "approve")
        ids.append(mid)
    return ids


def _registry() -> Registry:
    return Registry(open_store())


@pytest.mark.parametrize("override, message", [
    ("method=dpo", "unknown method"), ("new_share=1.5", "new_share"), ("gate_policy=nope.yaml", "does not exist"),
    ("min_new_records=-1", "cannot be negative"), ("seed_data=[missing.jsonl]", "does not exist"),
])
def test_bad_config_is_refused_before_anything_runs(home, capsys, override, message):
    assert retrain([override]) == 2
    assert message in capsys.readouterr().err
    assert not list((home / "runs").glob("retrain-*"))


def test_unknown_config_key_and_launcher_are_clear(home, capsys):
    assert retrain(["epochz=3"]) == 2
    assert "epochz" in capsys.readouterr().err
    from finetune.retrain_steps import launch_command

    with pytest.raises(OncoLoopError, match="torchrun or deepspeed"):
        launch_command("mpirun -n 2")


def test_nothing_to_do_below_min_new_records(home, capsys):
    _feedback(2)
    assert retrain(["--min-new-records", "3"]) == 0
    out = capsys.readouterr().out
    assert "2 new reviewed records" in out and "nothing to do" in out
    assert not list((home / "runs").glob("retrain-*")) and len(_registry().versions()) == 1


def test_unreviewed_corrections_are_not_training_data(home, capsys):
    _feedback(3, reviewed=False)
    assert retrain([]) == 0
    assert "0 new reviewed records" in capsys.readouterr().out


def test_dry_run_builds_the_snapshot_and_changes_nothing(home, capsys):
    ids = _feedback(4)
    before = (_registry().aliases(), len(_registry().history()))
    assert retrain(["--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "4 new reviewed records" in out and "dry run" in out
    snapshot = next((home / "datasets").glob("retrain-*"))
    manifest = json.loads((snapshot / "manifest.json").read_text())
    assert manifest["feedback_ids"]["messages"] == ids
    train = [json.loads(x) for x in (snapshot / "train.jsonl").read_text().splitlines()]
    new = [r for r in train if r["meta"].get("source") == "feedback"]
    assert len(new) == 4 * manifest["repeats"] and manifest["repeats"] > 1
    assert (_registry().aliases(), len(_registry().history())) == before
    # the same feedback gives the same snapshot (so a rerun resumes the same training run)
    assert retrain(["--dry-run"]) == 0
    assert len(list((home / "datasets").glob("retrain-*"))) == 1


def test_two_retrains_never_run_at_once(home, capsys):
    with RetrainLock(home / "retrain.lock"):
        assert retrain(["--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "another retrain is running" in err and f"pid {os.getpid()}" in err
    assert retrain(["--dry-run"]) == 0  # released


def _set_feedback_ids(version_id: str, feedback_ids) -> None:
    """Mark a version as trained on ``feedback_ids`` (as a retrain's merge records it)."""
    from feedback.db import ModelVersion

    with _registry().store.session.begin() as s:
        row = s.get(ModelVersion, version_id)
        row.meta = {**row.meta, "feedback_ids": feedback_ids}


def test_used_feedback_follows_the_lineage(home):
    reg = _registry()
    base = reg.get("champion")
    assert used_feedback(reg, base) == UsedFeedback(set(), set(), set())
    from tests.helpers.gateway import add_version

    add_version(home, Path(base.path), "child")
    with _registry().store.session.begin() as s:
        from feedback.db import ModelVersion

        s.get(ModelVersion, "child").parent = base.id
    _set_feedback_ids("child", {"messages": [3, 9]})  # older metadata: message ids only
    _set_feedback_ids(base.id, {"messages": [1], "ratings": [5], "reviews": [6]})
    reg2 = _registry()
    assert used_feedback(reg2, reg2.get("child")) == UsedFeedback({5}, {6}, {3, 9})
    assert reg2.trained_on(9) == ["child"] and reg2.trained_on(4) == []


def test_feedback_the_champion_learnt_is_left_out_before_deduplication(home, capsys):
    """A second correction of a learnt message is new; so is a new answer close to a learnt correction."""
    ids = _feedback(2)
    assert retrain(["--dry-run"]) == 0
    first = json.loads((next((home / "datasets").glob("retrain-*")) / "manifest.json").read_text())
    champion = _registry().resolve("champion")
    _set_feedback_ids(champion, first["feedback_ids"])  # as if the champion had been trained on both
    capsys.readouterr()

    store = FeedbackStore.open()
    carla, rita = store.authenticate("carla", "carla-password-1"), store.authenticate("rita", "rita-password-1")
    records = [json.loads(x) for x in CORRECTIONS.read_text().splitlines()][:2]
    again = store.rate(carla, ids[0], thumbs=-1, tags=["incomplete"], correction=records[0]["output"] + " Recheck it.")
    store.review(rita, again, "approve")
    conv = store.start_conversation(carla, model_version=champion)
    mid = store.record_question(carla, conv, records[1]["instruction"])
    store.record_answer(mid, records[1]["output"], champion)  # the model now answers as it was corrected
    store.review(rita, store.rate(carla, mid, thumbs=1, score=5), "approve")

    assert retrain(["--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "2 new reviewed records (2 already learnt" in out
    second = next(d for d in (home / "datasets").glob("retrain-*") if not d.name.endswith(first["sha256"][:12]))
    new = [json.loads(x) for x in (second / "new.jsonl").read_text().splitlines()]
    assert sorted(r["meta"]["feedback_ids"]["message"] for r in new) == sorted([ids[0], mid])
    assert {r["meta"]["kind"] for r in new} == {"correction", "rated_answer"}


def test_lineage_command_on_a_message_without_training(home, capsys):
    ids = _feedback(1)
    assert registry_cli(["lineage", "--message", str(ids[0])]) == 0
    out = capsys.readouterr().out
    champion = _registry().resolve("champion")
    assert f"message {ids[0]} was answered by {champion}" in out and f"{champion}  method=" in out
    assert "versions trained on its feedback: none yet" in out
    assert registry_cli(["lineage", "--message", "999"]) == 2
    assert "no stored message 999" in capsys.readouterr().err
    assert registry_cli(["lineage", "champion"]) == 0
    assert _registry().resolve("champion") in capsys.readouterr().out


def test_check_config_accepts_every_shipped_retrain_config():
    from core.config import load_config

    for path in sorted((REPO / "configs" / "retrain").glob("*.yaml")):
        cfg = load_config(RetrainConfig, path, [])
        if "gpu" in path.name:
            continue  # names a base under /models that only exists on a GPU machine; the rest is checked
        check_config(cfg)


@pytest.mark.slow
def test_kill_9_during_training_and_during_the_gate_then_rerun(home, tmp_path):
    """kill -9 mid-training, then mid-gate: no orphans, no alias move; each rerun resumes where it stopped."""
    _feedback(6)
    before = (_registry().aliases(), len(_registry().history()), len(_registry().versions()))
    env = {**os.environ, "ONCOLOOP_HOME": str(home)}
    args = [sys.executable, "-m", "finetune.retrain", "--config", "configs/retrain/tiny_cpu.yaml", "gate_policy=" + str(_quick_policy(tmp_path)),
            "replay_records=60", "merge_scale=0.5",
            "train_overrides=[epochs=3,save_steps=4,logging_steps=2,tracker=none]"]

    def start_and_kill(log: Path, ready) -> None:
        with open(log, "wb") as out:
            proc = subprocess.Popen(args, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 600
        while not ready():
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "the retrain never reached the point to kill it"
            time.sleep(0.3)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        # children get their parent-death signal (training: SIGKILL, gateway: SIGTERM) and are gone within seconds
        patterns = (f"output_dir={home}", f"versions=\\[{_registry().versions()[-1].id}", f"{home}/models/")
        deadline = time.monotonic() + 5.0
        while left := {p: pids for p in patterns if (pids := _pgrep(p))}:
            assert time.monotonic() < deadline, f"processes outlived the killed retrain: {left}"
            time.sleep(0.2)
        assert _registry().aliases() == before[0] and len(_registry().history()) == before[1]

    # 1. during training, once a checkpoint exists: nothing registered
    start_and_kill(tmp_path / "run1.log", lambda: list((home / "runs").glob("retrain-*/checkpoint-*/trainer_state.json")))
    assert len(_registry().versions()) == before[2]
    # 2. rerun: resumes training; killed during the gate (the candidate is registered, not promoted)
    log2 = tmp_path / "run2.log"
    start_and_kill(log2, lambda: "registered (parent" in (log2.read_text() if log2.exists() else ""))
    assert "resuming from" in log2.read_text()
    assert len(_registry().versions()) == before[2] + 1
    # 3. rerun: the same candidate goes straight to the gate
    done = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "gate PASSED" in done.stdout and "already complete" in done.stdout
    assert len(_registry().versions()) == before[2] + 1  # one candidate, however many runs it took
    assert _registry().resolve("champion") == _registry().versions()[-1].id
    assert _registry().get("champion").meta["merge_scale"] == 0.5  # the LoRA merged at half its update


def _pgrep(pattern: str) -> str:
    """The ids of the processes whose command line matches ``pattern`` (``pgrep -f``), or ""."""
    return subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True).stdout.strip()


def _quick_policy(tmp_path: Path) -> Path:
    """A gate that only checks that the candidate answers a few retention items (keeps this test short)."""
    policy = tmp_path / "quick_gate.yaml"
    policy.write_text("compare: {engine: transformers, max_tokens: 16, concurrency: 1, resamples: 1000, "
                      "retention_size: 4}\nlimits: {general: 2, safety: 2, retention: 4}\nrules:\n"
                      "  enough_retention_items: {kind: min_items, set: retention, min_items: 4}\n")
    return policy


@pytest.mark.slow
def test_a_ptuning_challenger_goes_through_the_gate_on_the_adapter_engine(home, tmp_path, capsys):
    """P-tuning cannot be merged: the candidate is an adapter version, and the gate's gateway serves it."""
    ids = _feedback(4)
    assert retrain(["--method", "ptuning", f"gate_policy={_quick_policy(tmp_path)}", "replay_records=40",
                    "train_overrides=[epochs=1,tracker=none]"]) == 0
    out = capsys.readouterr().out
    assert "gate PASSED" in out, out[-3000:]
    assert "ONCOLOOP_API_KEY" not in os.environ  # the gate's key does not leak into the caller's environment
    reg = _registry()
    champion = reg.get("champion")
    assert champion.method == "ptuning" and not champion.mergeable
    assert sorted(champion.meta["feedback_ids"]["messages"]) == ids
    summary = retrain_summary(out)
    decision = json.loads((Path(summary["report"]) / "decision.json").read_text())
    assert any("retention: 4 items evaluated" in r for r in decision["reasons"]), decision["reasons"]
