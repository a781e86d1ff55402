"""The closed loop on realistic corrections, in four arms: neither, retrieval only, fine-tune only, both.

    python benchmarks/closed_loop.py [--home DIR] [--n 20] [--max-tokens 200] [retrain overrides key=value ...]

1. A fresh home with the embedded default as champion (``python -m finetune.bootstrap``), the gateway
   (``python -m serve``, default guard, retrieval on) and the chat UI (``python -m ui``) running.
2. Two simulated clinicians ask ``--n`` questions of ``benchmarks/data/closed_loop_corrections.jsonl`` in the
   UI (its API, as the browser does) and correct every answer with a senior oncologist's 80-150-word answer;
   a reviewer approves them all in the Review tab's API.
3. ``python -m finetune.retrain`` with its defaults (plus any overrides given here); the gate decides; on a
   pass the running gateway hot-swaps (checked with one request through it).
4. Every arm answers the same questions and the reworded ones (different words, same expected answer; never
   in training) in process, greedily, as the gateway would (guard on; retrieval on or off):
   neither = old champion without retrieval; retrieval = old champion with the approved corrections as
   context; fine-tune = the retrained candidate without retrieval; both = the candidate with retrieval
   (the candidate whether or not the gate promoted it; the summary says which).
   Prints sacreBLEU BLEU and chrF against the corrections, each arm's paired-bootstrap 95% interval against
   "neither", and the wall time of each step. ``--out FILE`` writes everything as JSON.

The correction set was written for this benchmark by someone outside the evaluation sets; tune the retrain
defaults with it, never with ``data/eval``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
CORRECTIONS = REPO / "benchmarks" / "data" / "closed_loop_corrections.jsonl"


def run(home: Path, *args: str, timeout: float = 3600) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", *args], cwd=REPO, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "ONCOLOOP_HOME": str(home)})
    if done.returncode not in (0, 1):
        sys.exit(f"closed_loop: `python -m {' '.join(args)}` failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return done


def arm_answers(registry, version: str, questions: list[str], retrieval: bool, max_tokens: int) -> list[str]:
    """Guarded greedy answers of ``version`` in process (batched), with or without retrieval."""
    from core.prompt import to_messages
    from serve.inprocess import InProcessEngine
    from serve.retrieval import Retriever

    engine = InProcessEngine(registry, registry.get(version), retriever=Retriever() if retrieval else None)
    return [a.text for a in engine.answer([to_messages(q) for q in questions], max_tokens)]


def scores(answers: dict[str, list[str]], refs: list[str], resamples: int = 1000) -> dict:
    """Corpus BLEU/chrF per arm and the paired-bootstrap delta of each arm against ``neither``."""
    from eval.metrics import corpus_scores, score_from_stats, sufficient_stats
    from eval.stats import corpus_paired_bootstrap

    out = {}
    stats = {arm: {m: sufficient_stats(m, texts, refs) for m in ("bleu", "chrf")} for arm, texts in answers.items()}
    for arm, texts in answers.items():
        c = corpus_scores(texts, refs)
        out[arm] = {"bleu": round(c["bleu"].score, 2), "chrf": round(c["chrf"].score, 2)}
        if arm != "neither":
            for m in ("bleu", "chrf"):
                d = corpus_paired_bootstrap(stats["neither"][m], stats[arm][m], lambda s, m=m: score_from_stats(m, s),
                                            resamples=resamples)
                out[arm][f"delta_{m}"] = [round(d.delta, 2), round(d.lo, 2), round(d.hi, 2)]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, help="default: a new temporary directory")
    parser.add_argument("--n", type=int, default=20, help="questions corrected")
    parser.add_argument("--max-tokens", type=int, default=200)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--no-arms", action="store_true",
                        help="time the loop only (the four arms take ~10 min more and depend only on the candidate)")
    parser.add_argument("overrides", nargs="*", help="retrain key=value overrides (tuning)")
    args = parser.parse_args(argv)
    home = args.home or Path(tempfile.mkdtemp(prefix="oncoloop-loop-"))
    os.environ["ONCOLOOP_HOME"] = str(home)
    from feedback.db import open_store
    from feedback.store import FeedbackStore
    from serve.registry import Registry
    from tests.helpers.clinician import SimulatedClinician, SimulatedReviewer, UIServer
    from tests.helpers.gateway import Gateway

    records = [json.loads(x) for x in CORRECTIONS.read_text(encoding="utf-8").splitlines() if x.strip()][:args.n]
    questions, reworded = [r["question"] for r in records], [r["reworded"] for r in records]
    refs = [r["correction"] for r in records]
    times: dict[str, float] = {}
    t0 = time.monotonic()

    def step(name: str, since: float) -> float:
        times[name] = round(time.monotonic() - since, 1)
        print(f"closed_loop: {name}: {times[name]} s", flush=True)
        return time.monotonic()

    run(home, "finetune.bootstrap")
    store = FeedbackStore.open()
    for name, role in (("carla", "clinician"), ("dan", "clinician"), ("rita", "reviewer")):
        store.add_user(name, f"{name}-benchmark-pw", role)
    registry = Registry(open_store())
    champion = registry.resolve("champion")
    gateway = Gateway(home, "--engine", "transformers", "challenger_share=0", "poll_interval_s=1")
    ui = None
    try:
        gateway.wait(lambda s: s.get("ready"), timeout=600)
        ui = UIServer(home, gateway.url, f"max_tokens={args.max_tokens}").wait()
        t = step("setup: bootstrap, gateway and UI ready", t0)
        carla = SimulatedClinician(ui.url, "carla", "carla-benchmark-pw")
        dan = SimulatedClinician(ui.url, "dan", "dan-benchmark-pw")
        for i, (q, ref) in enumerate(zip(questions, refs)):
            who = carla if i % 2 == 0 else dan
            who.new_conversation()
            asked = who.ask(q)
            who.rate(asked["message_id"], thumbs="down", score=2, tags=("incorrect",), correction=ref)
        rita = SimulatedReviewer(ui.url, "rita", "rita-benchmark-pw")
        for item in rita.queue():
            rita.approve(item["rating_id"])
        t = step(f"clinicians: {len(questions)} questions asked and corrected in the UI, reviewer approved", t)
        retrain = run(home, "finetune.retrain", *args.overrides)
        print(retrain.stdout[-3000:])
        t = step("retrain: export, training, merge, gate", t)
        start = retrain.stdout.index('{\n  "dataset"')  # the summary; training logs around it hold other braces
        candidate = json.loads(retrain.stdout[start:retrain.stdout.index("\n}", start) + 2])["candidate"]
        new = Registry(open_store()).resolve("champion")
        promoted = new == candidate
        if promoted:
            gateway.wait(lambda s: (s.get("routes") or {}).get("champion") == new, timeout=600,
                         what="the hot-swap to the new champion")
            import openai

            client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=gateway.key)
            served = client.chat.completions.create(model="champion", messages=[{"role": "user", "content": questions[0]}],
                                                    max_tokens=8).model
            assert served == new, f"the gateway answered with {served}, not the new champion {new}"
        t = step("hot-swap: the running gateway serves the new champion" if promoted else "no promotion", t)
    finally:
        if ui is not None:
            ui.stop()
        gateway.stop()
    loop_s = round(time.monotonic() - t0, 1)
    if args.no_arms:
        print(f"\ngate {'PASSED: promoted ' + new if promoted else 'REJECTED ' + candidate}; loop (setup, clinicians, "
              f"retrain, swap) {loop_s / 60:.1f} min; steps {times}")
        return 0
    # the fine-tuned arms use the candidate whether or not the gate promoted it (the summary says which)
    arms = {"neither": (champion, False), "retrieval": (champion, True), "fine_tune": (candidate, False),
            "both": (candidate, True)}
    results = {}
    for label, qs in (("same", questions), ("reworded", reworded)):
        answers = {arm: arm_answers(registry, v, qs, r, args.max_tokens) for arm, (v, r) in arms.items()}
        results[label] = scores(answers, refs)
        results[label]["examples"] = {arm: a[0] for arm, a in answers.items()}
    step("measurement: four arms on the same and the reworded questions", t)
    summary = {"home": str(home), "questions": len(questions), "champion_before": champion, "candidate": candidate,
               "champion_after": new, "promoted": promoted, "loop_seconds": loop_s, "step_seconds": times, "results": results,
               "retrain_overrides": args.overrides}
    print("\narm        questions   BLEU   chrF   BLEU vs neither [95% CI]     chrF vs neither [95% CI]")
    for label in ("same", "reworded"):
        for arm in arms:
            r = results[label][arm]
            db = r.get("delta_bleu")
            dc = r.get("delta_chrf")
            print(f"{arm:10s} {label:9s} {r['bleu']:6.2f} {r['chrf']:6.2f}   "
                  + (f"{db[0]:+6.2f} [{db[1]:+.2f}, {db[2]:+.2f}]   {dc[0]:+6.2f} [{dc[1]:+.2f}, {dc[2]:+.2f}]"
                     if db else "-"))
    print(f"\ngate {'PASSED: promoted ' + new if promoted else 'REJECTED ' + candidate + ': champion stays ' + champion}; "
          f"loop (setup, clinicians, retrain, swap) {loop_s / 60:.1f} min")
    if args.out:
        args.out.write_text(json.dumps(summary, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
