"""Online A/B from a real store: thumbs-up rates with Wilson intervals, Bradley-Terry from same-question pairs,
ratings by tag and topic."""

from __future__ import annotations

import pytest

from eval.online import online_summary, preferences
from eval.stats import bradley_terry, bradley_terry_intervals, wilson
from feedback.store import FeedbackStore

QUESTIONS = ["What is the usual screening interval for mammography in average-risk women aged 50-74?",
             "What does ECOG performance status 2 mean?",
             "Which antiemetics prevent highly emetogenic chemotherapy nausea?",
             "How is febrile neutropenia defined?"]


def fill(store: FeedbackStore) -> None:
    """v1 answers everything and is mostly thumbed down; v2 answers the same questions and is mostly liked."""
    doc = store.add_user("doc", "password123", "clinician")
    for version, thumbs, tags in (("v1", [-1, -1, 1, -1], ["incorrect"]), ("v2", [1, 1, 1, -1], [])):
        conv = store.start_conversation(doc, arm="champion" if version == "v1" else "challenger", model_version=version)
        for q, t in zip(QUESTIONS, thumbs):
            mid = store.record_question(doc, conv, q)
            store.record_answer(mid, f"answer from {version}", version)
            store.rate(doc, mid, thumbs=t, tags=tags if t < 0 else ())


def test_online_summary_from_the_store(oncoloop_home):
    store = FeedbackStore.open()
    fill(store)
    facts = store.feedback_facts()
    summary = online_summary(facts, ["v1", "v2"], resamples=1000)
    v1, v2 = summary["versions"]["v1"], summary["versions"]["v2"]
    assert (v1["thumbs_up"], v1["thumbs"], v2["thumbs_up"], v2["thumbs"]) == (1, 4, 3, 4)
    assert (v2["lo"], v2["hi"]) == pytest.approx(wilson(3, 4)) and v1["tags"] == {"incorrect": 3}
    # same question, two versions: v2 better on 3, tie on 1 (both down)
    assert sorted(preferences(facts)) == sorted([("v1", "v2", 0.0)] * 2 + [("v1", "v2", 0.5)] * 2)
    assert summary["preferences"] == 4
    bt = summary["bradley_terry"]
    assert bt["v2"]["strength"] > bt["v1"]["strength"] and bt["v2"]["lo"] <= bt["v2"]["strength"] <= bt["v2"]["hi"]
    topics = summary["by_topic"]
    assert topics["screening"]["v2"] == {"up": 1, "n": 1, "tags": 0}
    assert sum(cell["n"] for cells in topics.values() for cell in cells.values()) == 8


def test_bradley_terry_recovers_known_strengths():
    import math
    import random

    rng = random.Random(0)
    true = {"a": 0.0, "b": 1.0, "c": -1.0}
    games = []
    for _ in range(3000):
        i, j = rng.sample(sorted(true), 2)
        p = 1 / (1 + math.exp(true[j] - true[i]))
        games.append((i, j, 1.0 if rng.random() < p else 0.0))
    fit = bradley_terry(games, prior=0.0)
    assert fit["b"] - fit["a"] == pytest.approx(1.0, abs=0.15) and fit["a"] - fit["c"] == pytest.approx(1.0, abs=0.15)
    ci = bradley_terry_intervals(games[:300], resamples=1000)
    assert all(lo < s < hi for s, lo, hi in ci.values())


def test_online_pairing_and_export_group_questions_alike():
    """One normaliser: the online A/B and the export's A/B pairs count "ECOG-1?" and "ecog 1" as one question.

    The online comparison used to drop punctuation ("ecog1") where de-duplication splits on it ("ecog 1"),
    so these two answers were never compared online although the export paired them."""
    import datetime as dt

    from core.text import normalise
    from feedback.records import MessageFacts, RatingFacts, ab_pairs

    t = dt.datetime(2026, 1, 1)
    a = MessageFacts(1, "What is ECOG-1?", "Restricted in strenuous activity.", "v1", t,
                     (RatingFacts(1, 1, t, thumbs=1),))
    b = MessageFacts(2, "what is  ECOG 1", "Bedbound.", "v2", t, (RatingFacts(2, 2, t, thumbs=-1, tags=("incorrect",)),))
    assert preferences([a, b]) == [("v1", "v2", 1.0)]
    assert [p["meta"]["model_versions"] for p in ab_pairs([a, b], normalise, str)] == [{"chosen": "v1", "rejected": "v2"}]
