"""The closed loop end to end on the tiny model: clinicians correct answers in the running UI, a reviewer
approves, ``python -m finetune.retrain`` trains and gates a challenger, and the running gateway serves it.

Scenario 1: genuine corrections are learnt, pass the gate and are served without restarting the gateway.
Scenario 2: nonsense corrections (right answers shuffled among the questions) are rejected by the gate, and the
running gateway stays on the champion. The UI's part of the loop is scenario 1's; here the same corrections and
approvals go into the store directly, so only the retrain, the gate and the gateway are exercised again.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sacrebleu

from core.settings import get_settings
from feedback.db import open_store
from feedback.store import FeedbackStore
from serve.registry import Registry
from tests.loop.test_retrain import retrain_summary
from tests.helpers.clinician import SimulatedClinician, SimulatedReviewer, UIServer
from tests.helpers.gateway import REPO, Gateway

CORRECTIONS = Path(__file__).with_name("corrections.jsonl")
pytestmark = pytest.mark.slow


def _records() -> list[dict]:
    return [json.loads(line) for line in CORRECTIONS.read_text(encoding="utf-8").splitlines() if line.strip()]


def _settings(home: Path):
    return get_settings({"ONCOLOOP_HOME": str(home)})


class Loop:
    """A home with the bundled model as champion, a running gateway and (with ``ui``) UI, and three accounts."""

    def __init__(self, home: Path, ui: bool = True):
        self.home = home
        env = {"ONCOLOOP_HOME": str(home)}
        subprocess.run([sys.executable, "-m", "finetune.bootstrap", "--tiny"], cwd=REPO, check=True,
                       env={**os.environ, **env}, capture_output=True)
        store = FeedbackStore.open(_settings(home))
        for name, role in (("carla", "clinician"), ("dan", "clinician"), ("rita", "reviewer")):
            store.add_user(name, f"{name}-password-1", role)
        self.registry = Registry(open_store(_settings(home)))
        self.base = self.registry.resolve("champion")
        self.gateway = Gateway(home, "--engine", "transformers", "--guard", str(REPO / "configs/guard/tiny_cpu.yaml"),
                               "challenger_share=0", "poll_interval_s=1", "retrieval=false")
        self.gateway.wait(lambda s: s.get("ready"), timeout=300)
        self.ui = UIServer(home, self.gateway.url, "max_tokens=96", "embedder=lexical").wait() if ui else None

    def ask_all(self, who: SimulatedClinician, questions: list[str]) -> list[dict]:
        answers = []
        for q in questions:
            who.new_conversation()
            answers.append(who.ask(q))
        return answers

    def retrain(self) -> tuple[subprocess.CompletedProcess, float]:
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "finetune.retrain", "--config", "configs/retrain/tiny_cpu.yaml"], cwd=REPO, capture_output=True, text=True,
                              env={**os.environ, "ONCOLOOP_HOME": str(self.home)}, timeout=1500)
        return done, time.perf_counter() - started

    def stop(self) -> None:
        if self.ui is not None:
            self.ui.stop()
        self.gateway.stop()


def _bleu(answers: list[dict], references: list[str]) -> float:
    return sacrebleu.corpus_bleu([a["answer"] for a in answers], [references]).score


def _give_corrections(loop: Loop, corrections: list[str]) -> tuple[list[int], float]:
    """Two clinicians ask the 20 questions in the UI and correct every answer; the reviewer approves all."""
    records = _records()
    questions = [r["instruction"] for r in records]
    carla = SimulatedClinician(loop.ui.url, "carla", "carla-password-1")
    dan = SimulatedClinician(loop.ui.url, "dan", "dan-password-1")
    answers = []
    for i, (question, correction) in enumerate(zip(questions, corrections)):
        who = carla if i < 10 else dan
        who.new_conversation()
        answers.append(who.ask(question))  # a clinician rates an answer in the chat where it was given
        who.rate(answers[-1]["message_id"], thumbs="down", score=2, tags=("incorrect",), correction=correction)
    assert {a["version"] for a in answers} <= {loop.base, None}
    rita = SimulatedReviewer(loop.ui.url, "rita", "rita-password-1")
    queue = rita.queue()
    assert len(queue) == 20
    for item in queue:
        rita.approve(item["rating_id"])
    return [a["message_id"] for a in answers], _bleu(answers, corrections)


def _store_corrections(loop: Loop, corrections: list[str]) -> list[int]:
    """The feedback of :func:`_give_corrections` (two clinicians correct 20 answers, the reviewer approves all),
    written through the store as the UI writes it."""
    store = FeedbackStore.open(_settings(loop.home))
    carla, dan, rita = (store.authenticate(name, f"{name}-password-1") for name in ("carla", "dan", "rita"))
    message_ids = []
    for i, (record, correction) in enumerate(zip(_records(), corrections)):
        who = carla if i < 10 else dan
        conv = store.start_conversation(who, model_version=loop.base)
        mid = store.record_question(who, conv, record["instruction"])
        store.record_answer(mid, "An answer to be corrected.", loop.base)
        rating = store.rate(who, mid, thumbs=-1, score=2, tags=["incorrect"], correction=correction)
        store.review(rita, rating, "approve")
        message_ids.append(mid)
    assert not store.review_queue(rita)
    return message_ids


def _running(home: Path, ui: bool):
    started = time.perf_counter()
    running = Loop(home, ui=ui)
    running.started = started
    yield running
    running.stop()


@pytest.fixture
def loop(tmp_path):
    yield from _running(tmp_path / "home", ui=True)


@pytest.fixture
def loop_without_ui(tmp_path):
    yield from _running(tmp_path / "home", ui=False)


def test_corrections_are_learnt_gated_promoted_and_served(loop):
    records = _records()
    corrections = [r["output"] for r in records]
    message_ids, bleu_before = _give_corrections(loop, corrections)
    pid = loop.gateway.proc.pid

    done, seconds = loop.retrain()
    print(done.stdout[-4000:], done.stderr[-2000:], sep="\n")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "gate PASSED" in done.stdout
    new = loop.registry.resolve("champion")
    assert new != loop.base

    # served by the same gateway process, hot-swapped
    loop.gateway.wait(lambda s: s.get("routes", {}).get("champion") == new, timeout=300, what="the hot-swap")
    assert loop.gateway.proc.pid == pid and loop.gateway.proc.poll() is None
    again = loop.ask_all(SimulatedClinician(loop.ui.url, "carla", "carla-password-1"),
                         [r["instruction"] for r in records])
    assert {a["version"] for a in again} <= {new, None}
    bleu_after = _bleu(again, corrections)
    print(f"sacreBLEU against the corrections: {bleu_before:.1f} -> {bleu_after:.1f}")
    assert bleu_after >= bleu_before + 10

    # no significant regression on the general evaluation set: the gate's own rule passed
    summary = retrain_summary(done.stdout)
    decision = json.loads((Path(summary["report"]) / "decision.json").read_text())
    general = [r for r in decision["reasons"] if "— general " in r]
    assert general and all(": PASS" in r for r in general), decision["reasons"]

    # lineage: the new version knows exactly the feedback rows behind it, and they know it
    meta = loop.registry.get(new).meta
    assert sorted(meta["feedback_ids"]["messages"]) == sorted(message_ids)
    assert meta["parent"] == loop.base
    assert all(loop.registry.trained_on(m) == [new] for m in message_ids)
    print(f"closed loop (UI, 20 questions, corrections, review, retrain, hot-swap, re-ask): "
          f"{(time.perf_counter() - loop.started) / 60:.1f} min; retrain {seconds / 60:.1f} min")


def test_shuffled_corrections_are_rejected_and_champion_unchanged(loop_without_ui):
    loop = loop_without_ui
    records = _records()
    corrections = [r["output"] for r in records]
    shuffled = corrections[7:] + corrections[:7]  # every question gets another question's answer
    _store_corrections(loop, shuffled)
    moves = len(loop.registry.history())

    done, seconds = loop.retrain()
    print(done.stdout[-4000:], done.stderr[-2000:], sep="\n")
    assert done.returncode == 0, done.stderr[-3000:]  # a clean rejection is not an error
    assert "gate REJECTED" in done.stdout
    assert loop.registry.resolve("champion") == loop.base
    assert len(loop.registry.history()) == moves
    state = loop.gateway.wait(lambda s: s.get("ready"), timeout=60)
    assert state["routes"]["champion"] == loop.base
    print(f"rejection loop: {(time.perf_counter() - loop.started) / 60:.1f} min; retrain {seconds / 60:.1f} min")
