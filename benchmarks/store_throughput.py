"""Store throughput: concurrent rating writes, and a 100,000-row export.

Usage::

    python benchmarks/store_throughput.py [--writers 8] [--ratings 16000] [--rows 100000] [--database-url URL]

1. ``--writers`` threads each call ``FeedbackStore.rate`` (one transaction per rating,
   as the UI does) until ``--ratings`` ratings are stored; prints ratings per second
   (target: >= 1,000/s on SQLite) and checks that every one was stored.
2. ``--rows`` synthetic answered questions with ratings (corrections, reviews, PHI,
   exact and near duplicates) are bulk-inserted, then ``feedback.export.export``
   runs with the lexical embedder: scrubbing, decontamination and faiss
   de-duplication included. Prints the export time (target: <= 60 s).

The database is a fresh SQLite file in a temporary folder unless ``--database-url`` is given.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import insert  # noqa: E402

from core.settings import get_settings  # noqa: E402
from feedback.db import Message, Rating, Review, utcnow  # noqa: E402
from feedback.export import export  # noqa: E402
from feedback.store import FeedbackStore  # noqa: E402

TOPICS = ["febrile neutropenia", "tumour lysis syndrome", "spinal cord compression", "hypercalcaemia",
          "cardiotoxicity", "peripheral neuropathy", "mucositis", "hand-foot syndrome", "immune colitis",
          "pneumonitis", "nausea and vomiting", "extravasation", "hyponatraemia", "fatigue"]
DRUGS = ["carboplatin", "cisplatin", "oxaliplatin", "5-FU", "capecitabine", "docetaxel", "paclitaxel",
         "pembrolizumab", "nivolumab", "trastuzumab", "rituximab", "doxorubicin", "gemcitabine", "olaparib"]
CANCERS = ["breast", "colon", "rectal", "lung", "ovarian", "prostate", "pancreatic", "gastric", "bladder", "head and neck"]
NAMES = ["Mrs Jane Doe", "Mr John Smith", "Ms Priya Patel", "Mr Ahmed Khan", "Mrs Rose Miller"]


def bench_writes(store: FeedbackStore, writers: int, total: int) -> tuple[float, float]:
    """Ratings per second from ``writers`` threads, one transaction per rating, and CPU seconds per rating."""
    user = store.add_user("bench.writer", "bench-password", "clinician")
    conv = store.start_conversation(user)
    message_ids = []
    for i in range(64):
        mid = store.record_question(user, conv, f"Benchmark question {i}?")
        store.record_answer(mid, f"Benchmark answer {i}.", "bench-v1", latency_ms=10)
        message_ids.append(mid)
    before = store.counts()["ratings"]
    per_writer = total // writers
    errors: list[BaseException] = []
    start_gate = threading.Barrier(writers + 1)

    def work(seed: int) -> None:
        rng = random.Random(seed)
        start_gate.wait()
        try:
            for _ in range(per_writer):
                store.rate(user, rng.choice(message_ids), thumbs=rng.choice((1, -1)), score=rng.randint(1, 5),
                           tags=rng.sample(["incorrect", "outdated", "incomplete"], rng.randint(0, 1)))
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(writers)]
    for t in threads:
        t.start()
    start_gate.wait()
    t0, cpu0 = time.perf_counter(), time.process_time()
    for t in threads:
        t.join()
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    stored = store.counts()["ratings"] - before
    if errors or stored != per_writer * writers:
        raise SystemExit(f"lost writes: stored {stored} of {per_writer * writers}; errors: {errors[:3]}")
    return stored / elapsed, cpu / stored


QUESTIONS = ["How should {t} be managed in {c} cancer during cycle {n} of {d}?",
             "What is the first step when {t} appears after {d} for {c} cancer?",
             "Is {d} continued if grade {n} {t} develops in {c} cancer?",
             "Which tests are needed before restarting {d} after {t}?",
             "When should {t} on {d} prompt admission?",
             "What supportive care prevents {t} with {d} in {c} cancer?"]
SENTENCES = ["Assess severity with CTCAE grading and check vital signs.", "Hold {d} until recovery to grade 1 or less.",
             "Reduce the next dose of {d} by one level as the protocol says.", "Check full blood count, renal and liver function.",
             "Give supportive care for {t} and review within 24 hours.", "Discuss with the oncology pharmacist before re-challenge.",
             "Admit if there is sepsis, dehydration or uncontrolled symptoms.", "Document the event and report it if unexpected.",
             "Consider growth factor support for the next cycles.", "Explain warning signs and the 24-hour hotline to the patient.",
             "Rule out infection, progression and other drugs as causes.", "Steroids are first line for immune-related {t}.",
             "Stop {d} permanently for grade 4 {t}.", "Recheck after each cycle and adjust the plan with the team.",
             "Palliative care input helps when {t} persists.", "Follow the local regimen protocol for {c} cancer."]


def synthetic_rows(store: FeedbackStore, rows: int, seed: int = 0) -> None:
    """Bulk-insert ``rows`` answered, rated questions: ~15% exact and ~10% near duplicates, 10% with PHI."""
    rng = random.Random(seed)
    clinician = store.add_user("bench.clinician", "bench-password", "clinician")
    reviewer = store.add_user("bench.reviewer", "bench-password", "reviewer")
    conv = store.start_conversation(clinician, arm="champion", model_version="bench-v1")
    now = utcnow()
    messages, ratings, reviews = [], [], []
    with store.session() as s:
        first_id = (s.query(Message.id).order_by(Message.id.desc()).limit(1).scalar() or 0) + 1
        first_rating = (s.query(Rating.id).order_by(Rating.id.desc()).limit(1).scalar() or 0) + 1
    for i in range(rows):
        roll = rng.random()
        if roll < 0.15 and messages:  # exact duplicate of an earlier question and answer
            earlier = messages[rng.randrange(len(messages))]
            q, a = earlier["question"], earlier["answer"]
        elif roll < 0.25 and messages:  # near duplicate: one word changed
            earlier = messages[rng.randrange(len(messages))]
            q, a = earlier["question"].replace("?", " now?"), earlier["answer"].replace("the", "a", 1)
        else:
            fill = {"t": rng.choice(TOPICS), "d": rng.choice(DRUGS), "c": rng.choice(CANCERS), "n": rng.randint(1, 6)}
            q = rng.choice(QUESTIONS).format(**fill)
            if rng.random() < 0.1:
                q = f"{rng.choice(NAMES)}, MRN {rng.randint(1000000, 9999999)}, DOB 0{fill['n']}/03/19{rng.randint(40, 79)}: {q}"
            a = " ".join(x.format(**fill) for x in rng.sample(SENTENCES, rng.randint(3, 6)))
        messages.append({"id": first_id + i, "conversation_id": conv, "question": q, "answer": a,
                         "model_version": rng.choice(("bench-v1", "bench-v2")), "latency_ms": 100,
                         "guard_actions": [], "created_at": now, "answered_at": now})
        rid = first_rating + i
        kind = rng.random()
        if kind < 0.2:  # a correction, reviewed
            ratings.append(_rating(rid, first_id + i, clinician.id, -1, 2, ["incomplete"],
                                   a + " " + rng.choice(SENTENCES).format(t="toxicity", d="the drug", c="this"), now))
            reviews.append({"rating_id": rid, "reviewer_id": reviewer.id, "decision": rng.choice(("approve", "edit", "reject")),
                            "edited_text": "Reviewed: " + a, "note": None, "created_at": now})
        elif kind < 0.3:
            ratings.append(_rating(rid, first_id + i, clinician.id, -1, 1, ["unsafe"], None, now))
        else:
            ratings.append(_rating(rid, first_id + i, clinician.id, 1, rng.choice((4, 5)), [], None, now))
    with store.session.begin() as s:
        for table, values in ((Message, messages), (Rating, ratings), (Review, reviews)):
            for start in range(0, len(values), 5000):
                s.execute(insert(table), values[start:start + 5000])


def _rating(rid, mid, uid, thumbs, score, tags, correction, now) -> dict:
    return {"id": rid, "message_id": mid, "user_id": uid, "thumbs": thumbs, "score": score, "tags": tags,
            "correction": correction, "created_at": now}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writers", type=int, default=8)
    parser.add_argument("--ratings", type=int, default=16_000)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--database-url", help="default: a fresh SQLite file in a temporary folder")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        os.environ["ONCOLOOP_HOME"] = tmp
        if args.database_url:
            os.environ["ONCOLOOP_DATABASE_URL"] = args.database_url
        settings = get_settings()
        store = FeedbackStore.open(settings)
        backend = store.store.engine.dialect.name
        print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start "
              "(other work on the machine slows every figure below)")
        rate, cpu_per_rating = bench_writes(store, args.writers, args.ratings)
        print(f"writes: {args.writers} writers, {args.ratings} ratings on {backend}: {rate:,.0f} ratings/s "
              f"(target >= 1,000/s: {rate / 1000:.2f}x); CPU {cpu_per_rating * 1000:.2f} ms per rating, "
              f"i.e. {1 / cpu_per_rating:,.0f}/s per free core")

        t0 = time.perf_counter()
        synthetic_rows(store, args.rows)
        print(f"setup: {args.rows:,} synthetic rated answers inserted in {time.perf_counter() - t0:.1f} s")
        t0, cpu0 = time.perf_counter(), time.process_time()
        result = export(store, Path(tmp) / "export.jsonl")
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        print(f"export: {args.rows:,} rows -> {result.records:,} records + {result.pairs:,} pairs in {elapsed:.1f} s "
              f"(target <= 60 s: {60 / elapsed:.2f}x headroom; CPU {cpu:.1f} s); removed {result.removed}")
        print(f"load average at the end: {os.getloadavg()[0]:.1f}")
        store.store.engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
