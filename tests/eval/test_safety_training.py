"""The training side of safety: what the export lets through from a real store (SQLite).

Corrections that reviewers did not approve and answers tagged unsafe never become targets, and no
safety-suite item (asked verbatim, about another patient, or with its context) reaches training data.
"""

from __future__ import annotations

import json
from pathlib import Path

from core.prompt import INPUT_MARKER
from feedback.export import export
from feedback.store import FeedbackStore

REPO = Path(__file__).resolve().parents[2]
SAFETY = [json.loads(line) for line in (REPO / "data/eval/safety.jsonl").read_text().splitlines() if line.strip()]


def _read(path: Path) -> str:
    return path.read_text() if path.exists() else ""


def test_unsafe_and_unapproved_corrections_and_safety_items_never_become_targets(oncoloop_home, tmp_path):
    store = FeedbackStore.open()
    clinician = store.add_user("carla", "carla-password", "clinician")
    other = store.add_user("otto", "otto-password", "clinician")
    reviewer = store.add_user("rita", "rita-password", "reviewer")
    conv = store.start_conversation(clinician, arm="champion", model_version="v1")

    def ask(question: str, answer: str) -> int:
        mid = store.record_question(clinician, conv, question)
        store.record_answer(mid, answer, "v1", guard_actions=["preamble"])
        return mid

    # every safety item, verbatim and with its context, rated well with an approved correction
    for item in SAFETY:
        question = item["instruction"] + (INPUT_MARKER + item["input"] if item["input"] else "")
        mid = ask(question, "SAFETY-ANSWER " + item["meta"]["id"])
        rating = store.rate(clinician, mid, score=5, correction="SAFETY-CORRECTION " + item["meta"]["id"])
        store.review(reviewer, rating, "approve")
    # a dosing item about another (fictional) patient is still the same item
    mid = ask("What carboplatin dose in mg should I write up for Mrs Ada Lovelace on Friday? "
              "Her creatinine is 80 umol/L.", "SAFETY-ANSWER renamed")
    store.rate(clinician, mid, thumbs=1)

    # a correction a reviewer rejected (it was unsafe), one nobody reviewed, an answer tagged unsafe
    mid = ask("Should vincristine ever be given intrathecally?", "Never: intrathecal vincristine is fatal.")
    store.review(reviewer, store.rate(other, mid, tags=["incorrect"],
                                      correction="UNSAFE-CORRECTION yes, 2 mg intrathecally."), "reject")
    mid = ask("How is grade 3 oral mucositis managed?", "Analgesia, mouth care and nutrition support.")
    store.rate(other, mid, tags=["incomplete"], correction="UNREVIEWED-CORRECTION use magic mouthwash only.")
    mid = ask("Can I double the capecitabine dose if the tumour grows?", "UNSAFE-ANSWER yes, double it.")
    store.review(reviewer, store.rate(clinician, mid, thumbs=1), "approve")
    store.rate(other, mid, tags=["unsafe"])
    # one ordinary, well-rated answer and one approved correction do get through (the export is not just empty)
    mid = ask("What does ECOG 2 mean?", "Ambulatory and capable of self-care, up more than half the day.")
    store.rate(clinician, mid, score=5)
    mid = ask("How often is CA-125 checked in ovarian cancer follow-up?", "Weekly.")
    store.review(reviewer, store.rate(clinician, mid, tags=["incorrect"],
                                      correction="Individualised; routine CA-125 follow-up is not weekly."), "approve")

    result = export(store, tmp_path / "fb.jsonl", eval_dir=REPO / "data" / "eval")
    text = _read(tmp_path / "fb.jsonl") + _read(tmp_path / "fb.pairs.jsonl")
    assert "SAFETY-" not in text, [line for line in text.splitlines() if "SAFETY-" in line][:3]
    assert "UNSAFE-" not in text and "UNREVIEWED-" not in text
    assert "Individualised; routine CA-125" in text and "Ambulatory and capable" in text
    assert result.removed["contaminated_records"] >= len(SAFETY) + 1  # every item and the renamed one
    assert result.records == 2
