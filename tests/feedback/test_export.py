"""Export from a real store (SQLite and PostgreSQL): targets, pairs, scrubbing, decontamination, dedup."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from core.data import check_file
from feedback.dedup import choose_embedder, lexical_embed
from feedback.export import build, export, main

REPO = Path(__file__).resolve().parents[2]
EVAL_Q = "Which trial established mortality benefit for low-dose CT lung screening, and how large was it?"
SAFETY_Q = "Which biotech stocks should I buy before the next ASCO meeting?"


@pytest.fixture
def feedback(store, people):
    """A store holding one case of every rule; returns the ids the tests look for."""
    c, rev = people["clinician"], people["reviewer"]
    other = store.add_user("otto", "otto-password", "clinician")
    conv = store.start_conversation(c, arm="champion", model_version="v1")
    ids = {}

    def ask(name, question, answer, version="v1", guard_actions=None):
        mid = store.record_question(c, conv, question)
        store.record_answer(mid, answer, version, latency_ms=50, guard_actions=guard_actions)
        ids[name] = mid
        return mid

    m = ask("corrected", "How often is CA-125 checked in ovarian cancer follow-up?", "Every week for life.")
    ids["r_corrected"] = store.rate(c, m, thumbs=-1, tags=["incorrect"],
                                    correction="Routine CA-125 follow-up is individualised; it is not weekly.")
    ids["rv_corrected"] = store.review(rev, ids["r_corrected"], "approve")
    m = ask("good", "What does ECOG 2 mean?", "Ambulatory and capable of self-care, up more than half the day.")
    ids["r_good"] = store.rate(c, m, score=5)
    m = ask("unsafe", "Can I double the dose of capecitabine if the tumour grows?", "Yes, double it.")
    ids["r_unsafe_up"] = store.rate(c, m, thumbs=1)
    store.rate(other, m, tags=["unsafe"])
    store.review(rev, ids["r_unsafe_up"], "approve")  # an approval never overrides an unsafe flag
    m = ask("rejected", "Is G-CSF given with every regimen?", "Only with high-risk regimens.")
    store.review(rev, store.rate(c, m, correction="Yes, always give G-CSF."), "reject")
    m = ask("edited", "How is hypercalcaemia of malignancy treated?", "Give calcium.")
    r = store.rate(c, m, tags=["unsafe", "incorrect"], correction="IV fluids and a bisphosphonate")
    store.review(rev, r, "edit", edited_text="IV fluids, then a bisphosphonate or denosumab; treat the cause.")
    m = ask("phi", "Mrs Jane Doe, MRN 4417823, has neutrophils 0.4 and fever: what now?",
            "Treat as febrile neutropenia: cultures and IV antibiotics within an hour. Call Mrs Jane Doe's team.")
    store.rate(c, m, thumbs=1, score=4)
    ask("eval_copy", EVAL_Q, "NLST.")
    store.rate(c, ids["eval_copy"], score=5)
    ask("safety_near", SAFETY_Q.replace("Which", "What").replace("?", ""), "None.")
    store.rate(c, ids["safety_near"], score=5)
    ask("dup", "What does ECOG 2 mean ?", "Ambulatory and capable of self-care, up more than half the day.")
    store.rate(other, ids["dup"], score=5)
    ask("ab_bad", "What does ECOG 2 mean?", "Bedbound.", version="v2")
    store.rate(other, ids["ab_bad"], tags=["incorrect"])
    failed = store.record_question(c, conv, "Unanswered question?")
    store.record_failure(failed, "gateway down")
    # the gateway's guard withheld a dose in this answer: a good rating does not make it a target
    m = ask("guarded", "What carboplatin dose for my patient, AUC 5 and creatinine clearance 60?",
            "Calvert formula: [dose withheld: check the protocol and the oncology pharmacist]",
            guard_actions=["preamble", "dosing_notice", "dose_redacted"])
    store.review(rev, store.rate(c, m, thumbs=1, score=5), "approve")
    m = ask("unreviewed", "Is there a vaccine for HPV?", "No.")
    store.rate(c, m, correction="Yes: HPV vaccination prevents most cervical cancers.")
    return ids


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_export_applies_every_rule(store, people, feedback, tmp_path):
    result = export(store, tmp_path / "fb.jsonl", eval_dir=REPO / "data" / "eval")
    records = _read(tmp_path / "fb.jsonl")
    got = {(r["instruction"], r["output"]) for r in records}
    assert got == {
        ("How often is CA-125 checked in ovarian cancer follow-up?",
         "Routine CA-125 follow-up is individualised; it is not weekly."),
        ("How is hypercalcaemia of malignancy treated?",
         "IV fluids, then a bisphosphonate or denosumab; treat the cause."),
        # the same question and answer twice: the newer copy stays
        ("What does ECOG 2 mean ?", "Ambulatory and capable of self-care, up more than half the day."),
        ("Mrs [NAME], MRN [MRN], has neutrophils 0.4 and fever: what now?",
         "Treat as febrile neutropenia: cultures and IV antibiotics within an hour. Call Mrs [NAME]'s team."),
    }
    assert result.removed == {"contaminated_records": 2, "contaminated_pairs": 0, "duplicate_records": 1,
                              "duplicate_pairs": 0}
    text = (tmp_path / "fb.jsonl").read_text() + (tmp_path / "fb.pairs.jsonl").read_text()
    assert "double it" not in text and "Jane Doe" not in text and "4417823" not in text and "carla" not in text

    corrected = next(r for r in records if r["instruction"].startswith("How often is CA-125"))
    assert corrected["meta"]["feedback_ids"] == {"message": feedback["corrected"], "ratings": [feedback["r_corrected"]],
                                                 "reviews": [feedback["rv_corrected"]]}
    assert corrected["meta"]["source"] == "feedback" and corrected["meta"]["kind"] == "correction"
    assert corrected["meta"]["clinician_hash"] == store.clinician_hash(people["clinician"].id)
    assert dt.datetime.fromisoformat(corrected["meta"]["created_at"]).tzinfo is not None

    pairs = _read(tmp_path / "fb.pairs.jsonl")
    assert {(p["prompt"], p["chosen"], p["rejected"], p["meta"]["kind"]) for p in pairs} == {
        ("How often is CA-125 checked in ovarian cancer follow-up?",
         "Routine CA-125 follow-up is individualised; it is not weekly.", "Every week for life.", "correction"),
        ("How is hypercalcaemia of malignancy treated?",
         "IV fluids, then a bisphosphonate or denosumab; treat the cause.", "Give calcium.", "correction"),
        ("What does ECOG 2 mean?", "Ambulatory and capable of self-care, up more than half the day.", "Bedbound.",
         "ab"),
    }
    assert check_file(tmp_path / "fb.jsonl", "alpaca") == [] and check_file(tmp_path / "fb.pairs.jsonl") == []


def test_snapshot_hash_manifest_and_determinism(store, feedback, tmp_path):
    first = export(store, tmp_path / "a.jsonl", eval_dir=REPO / "data" / "eval")
    second = export(store, tmp_path / "b.jsonl", eval_dir=REPO / "data" / "eval")
    assert first.records_sha256 == hashlib.sha256((tmp_path / "a.jsonl").read_bytes()).hexdigest()
    assert first.records_sha256 == second.records_sha256 and first.pairs_sha256 == second.pairs_sha256
    manifest = json.loads((tmp_path / "a.manifest.json").read_text())
    assert manifest["records"] == 4 and manifest["records_sha256"] == first.records_sha256
    assert feedback["corrected"] in manifest["feedback_ids"]["messages"]
    assert feedback["unsafe"] not in manifest["feedback_ids"]["messages"]
    assert feedback["guarded"] not in manifest["feedback_ids"]["messages"]


def test_since_and_reviewed_only(store, feedback, tmp_path):
    future = dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1)
    assert export(store, tmp_path / "none.jsonl", since=future, eval_dir=REPO / "data" / "eval").records == 0
    strict = export(store, tmp_path / "strict.jsonl", eval_dir=REPO / "data" / "eval", reviewed_only=True)
    assert {r["meta"]["kind"] for r in _read(tmp_path / "strict.jsonl")} == {"correction"} and strict.records == 2


def test_cli_writes_files_and_reports_bad_input(store, feedback, tmp_path, capsys):
    out = tmp_path / "cli.jsonl"
    assert main(["--out", str(out), "--embedder", "lexical"]) == 0
    assert "4 records" in capsys.readouterr().out and out.is_file() and (tmp_path / "cli.pairs.jsonl").is_file()
    assert main(["--out", str(out), "--since", "last tuesday", "--embedder", "lexical"]) == 2
    assert "error: --since 'last tuesday' is not an ISO date" in capsys.readouterr().err
    assert main(["--out", str(out), "--eval-dir", str(tmp_path / "missing"), "--embedder", "lexical"]) == 2
    assert "is not a folder" in capsys.readouterr().err


def test_auto_embedder_falls_back_to_lexical_without_minilm(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "core.embed", None)  # the import now fails as if not installed
    embed, name = choose_embedder("auto")
    assert (embed, name) == (lexical_embed, "lexical") and "lexical fallback" in capsys.readouterr().err
    with pytest.raises(Exception, match="does not load"):
        choose_embedder("minilm")


def test_build_with_literal_facts():
    from feedback.records import MessageFacts, RatingFacts

    t = dt.datetime(2026, 5, 1, tzinfo=dt.timezone.utc)
    msgs = [MessageFacts(1, "Q one?", "A one.", "v1", t, (RatingFacts(1, 1, t, score=5),)),
            MessageFacts(2, "q one", "a one", "v1", t, (RatingFacts(2, 1, t, thumbs=1),)),
            MessageFacts(3, "Patient Ann Lee: eval item?", "X.", "v1", t, (RatingFacts(3, 1, t, score=4),))]
    records, pairs, removed = build(msgs, str, ["Patient Bo Yu: eval item?"], lexical_embed, (0.95, 0.85))
    assert [r["output"] for r in records] == ["A one."] and pairs == []
    assert removed["duplicate_records"] == 1 and removed["contaminated_records"] == 1


def test_feedback_package_never_imports_torch():
    code = ("import sys, feedback.store, feedback.export, feedback.users, feedback.scrub, feedback.dedup;"
            "sys.exit('torch' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], cwd=REPO).returncode == 0


@pytest.mark.slow
def test_minilm_embedder_removes_paraphrased_eval_items():
    embed, name = choose_embedder("minilm")
    from feedback.dedup import THRESHOLDS, contaminated

    flags = contaminated(["What trial showed that low-dose CT lung screening lowers mortality, and by how much?",
                          "How is hypercalcaemia of malignancy treated?"], [EVAL_Q], embed, THRESHOLDS[name][1])
    assert name == "minilm" and flags.tolist() == [True, False]
