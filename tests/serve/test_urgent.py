"""The learned urgent-care detector: it must generalise (cross-validated on dev), name conditions, be fast
enough, and fail these tests if replaced by one that flags nothing or everything."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from core.errors import OncoLoopError
from serve.guard import Guard, urgent_eval
import serve.guard as guard_mod
from serve.urgent import CONDITIONS, UrgentDetector, default_detector, read_labelled

REPO = Path(__file__).resolve().parents[2]
DEV = REPO / "data/eval/detectors/urgent_dev.jsonl"


@pytest.fixture(scope="session")
def detector() -> UrgentDetector:
    """The process-wide detector, fitted once for the session (MiniLM + logistic regression)."""
    d = default_detector()
    d.warm()
    return d


@pytest.fixture(scope="session")
def dev_items() -> list[dict]:
    return read_labelled(DEV)


def _sample(items: list[dict], every: int = 3) -> list[dict]:
    return items[::every]


def test_flags_urgent_dev_messages_and_spares_the_hard_negatives(detector, dev_items):
    """On a sample of dev (the training split: a floor, not the measure): a detector that flags nothing or
    everything fails here."""
    sample = _sample(dev_items)
    flagged = [bool(guard_mod.detect_urgent(i["text"])) for i in sample]
    urgent = [f for f, i in zip(flagged, sample) if i["urgent"]]
    negatives = [f for f, i in zip(flagged, sample) if not i["urgent"]]
    assert len(urgent) >= 25 and len(negatives) >= 25
    assert sum(urgent) / len(urgent) >= 0.95
    assert sum(negatives) / len(negatives) <= 0.05


def test_generalises_to_messages_it_was_not_trained_on(detector, dev_items):
    """5-fold cross-validation on dev with the detector's own classifier settings: held-out recall and false
    alarms stay near the targets (the embeddings are computed once)."""
    from sklearn.model_selection import StratifiedKFold

    read = detector._model_input([i["text"] for i in dev_items])  # what the models see (alarm values in words)
    x = detector._embedder()(read)
    y = np.array([i["urgent"] for i in dev_items])
    flagged = np.zeros(len(y), dtype=bool)
    for train, held in StratifiedKFold(5, shuffle=True, random_state=0).split(x, y):
        fold = UrgentDetector(embed=lambda texts, _x=x, _t=read: _x[[_t.index(t) for t in texts]],
                              threshold=detector.threshold)
        fold.fit([dev_items[k] for k in train])
        flagged[held] = [bool(c) for c in fold.detect_many([dev_items[k]["text"] for k in held])]
    assert flagged[y].mean() >= 0.9, "held-out recall"
    assert flagged[~y].mean() <= 0.12, "held-out false alarms"


@pytest.mark.parametrize("text,condition", [
    ("my husband had chemo on monday and now hes burning up, 38.9 and shaking under the duvet", "neutropenic_sepsis"),
    ("on nivolumab and I've been on the toilet 10 times today with blood and cramps", "immune_colitis"),
    ("sudden chest pain and can't catch my breath, one calf swollen, on chemo for pancreatic cancer", "pe_vte"),
    ("Pt on bevacizumab: BP 220/125, severe headache and blurred vision.", "hypertensive_crisis"),
])
def test_urgent_messages_get_the_notice_with_the_condition_named(detector, text, condition):
    guarded = Guard().prepare({"model": "champion", "messages": [{"role": "user", "content": text}]}, {})
    assert any(a.startswith("urgent_notice:") for a in guarded.actions)
    assert f"urgent_notice:{condition}" in guarded.actions
    assert guarded.prefix.startswith("URGENT:") and CONDITIONS[condition] in guarded.prefix


@pytest.mark.parametrize("text", [
    "What is the difference between febrile neutropenia and neutropenic sepsis?",
    "I had a blood clot two years ago during chemo; it has gone. Can I stop my stockings?",
    "Is mild tiredness normal in the second week of radiotherapy?",
    "How do I book a wig fitting before chemotherapy starts?",
])
def test_education_past_events_and_routine_questions_do_not_fire(detector, text):
    assert guard_mod.detect_urgent(text) == []


def test_empty_and_huge_messages(detector):
    assert detector.detect("") == [] and detector.detect("   ") == []
    huge = "temperature 38.9 and shaking, had chemo 6 days ago. " + "background " * 50_000
    assert detector.detect(huge)  # judged on its start; no error on a very long message


def test_training_is_deterministic(detector, dev_items):
    again = UrgentDetector(embed=detector._embedder(), threshold=detector.threshold).fit()
    assert again.data_hash == detector.data_hash
    texts = [i["text"] for i in dev_items[:20]]
    assert np.allclose(again.scores(texts)[0], detector.scores(texts)[0])


def test_eval_reports_recall_false_alarms_and_latency(detector, dev_items, tmp_path, capsys):
    r = urgent_eval(_sample(dev_items, 4), detector)
    assert r["recall"] >= 0.95 and r["false_alarm_rate"] <= 0.05
    # the 20 ms target is measured by the CLI on a quiet machine (benchmarks/README.md); on a busy CI machine
    # this only catches a detector gone pathological (a fit or an embedder load per message: seconds)
    assert 0 < r["ms_per_message"] < 1000
    subset = tmp_path / "urgent.jsonl"
    subset.write_text("".join(json.dumps(i) + "\n" for i in dev_items[:12]))
    assert guard_mod.main(["--eval", str(subset)]) == 0
    out = capsys.readouterr().out
    assert "recall:" in out and "false alarms:" in out and "ms per message" in out and "recall per condition" in out


def test_cross_validation_reports_held_out_figures(dev_items, capsys):
    """``cross_validate`` on a stand-in embedder (fast): figures per threshold and condition; a bad --cv says why."""
    from sklearn.feature_extraction.text import HashingVectorizer

    from serve.urgent import cross_validate

    hashing = HashingVectorizer(n_features=256, alternate_sign=False, norm="l2")
    r = cross_validate(dev_items, 3, thresholds=(0.5,), embed=lambda t: hashing.transform(t).toarray())
    assert set(r) == {0.5} and 0.5 <= r[0.5]["recall"] <= 1 and 0 <= r[0.5]["false_alarms"] <= 0.5
    assert sum(n for _, n in r[0.5]["per_condition"].values()) == sum(i["urgent"] for i in dev_items)
    assert guard_mod.main(["--cv", "one"]) == 2
    assert "--cv takes a number of folds" in capsys.readouterr().err


def test_eval_says_what_to_do_with_a_malformed_file(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fever", "urgent": "yes"}\n')
    assert guard_mod.main(["--eval", str(bad)]) == 2
    assert "needs a string 'text' and a boolean 'urgent'" in capsys.readouterr().err
    bad.write_text("{not json\n")
    assert guard_mod.main(["--eval", str(bad)]) == 2
    assert "is not valid JSON" in capsys.readouterr().err
    with pytest.raises(OncoLoopError, match="cannot read"):
        read_labelled(tmp_path / "missing.jsonl")


# ---- third round: alarm values read as numbers, the third training file, the cache key ----------------------

@pytest.mark.parametrize("text,conditions", [
    ("K 6.9, PO4 2.6, oliguric", ["tumour_lysis"]),
    ("sodium came back at 113 this morning", ["hyponatraemia"]),
    ("Corrected calcium 14.2 mg/dL, confused", ["hypercalcaemia"]),  # US units
    ("home bp 215/125 and the worst headache", ["hypertensive_crisis"]),
    ("ALT 12x ULN, jaundiced", ["immune_hepatitis"]),
    ("troponin I 3.2 ng/mL on nivo", ["immune_myocarditis"]),
    ("Hb 68 from 95, frank haematuria", ["major_bleeding"]),
    ("creatinine 4.6 mg/dL, was 1.0 last week", ["acute_kidney_injury"]),
    ("glucose HI on the meter, ketones 5.1", ["immune_endocrine_crisis"]),
    ("K 4.1, Ca 2.38, Na 138, creat 72, BP 128/80. All ok for C4?", []),  # normal values
    ("At what potassium level, e.g. K 6.5, do you start rasburicase?", []),  # a question about a threshold
    ("Breast ca 5 years ago, now on letrozole; lung ca 12 months on", []),  # "ca" as cancer, not calcium
])
def test_alarm_values_are_read_as_numbers(text, conditions):
    from serve.urgent_values import value_conditions

    assert value_conditions(text) == conditions


def test_alarm_values_reach_both_models_in_words(detector):
    assert detector.values and detector.value_rule
    read = detector._model_input(["K+ 6.8 post first cycle of R-CHOP", "K 4.2 before cycle 2"])
    assert read[0].endswith("[dangerously high potassium]") and read[1] == "K 4.2 before cycle 2"
    assert UrgentDetector(values=False)._model_input(["K+ 6.8"]) == ["K+ 6.8"]


@pytest.mark.parametrize("text,condition", [
    # shorthand whose words alone the classifier trained on the same messages misses (checked without the values)
    ("potassium 7.1 on the gas", "tumour_lysis"),
    ("K+ 6.8 post first cycle of R-CHOP", "tumour_lysis"),
    ("BP 238/142 on the pharmacy machine", "hypertensive_crisis"),
    ("eGFR 12, was 65 in March", "acute_kidney_injury"),
    ("platelets 4 and gums oozing", "major_bleeding"),
])
def test_shorthand_with_alarm_values_is_flagged(detector, text, condition):
    assert condition in detector.detect(text)


@pytest.mark.parametrize("text", [
    "K 4.2, Na 139, Ca 2.35, creat 80: fine for cycle 2?",
    "Hb 112 and platelets 240 before cycle 3, all fine?",
    "What sodium threshold defines severe hyponatraemia, 125?",
    "ALT 48 on pembro, ULN 40, feeling well",
])
def test_normal_values_and_threshold_questions_do_not_fire(detector, text):
    assert detector.detect(text) == []


def test_trained_on_the_third_round_messages(detector):
    names = [f.name for f in detector.files]
    assert "urgent_dev_extra3.jsonl" in names
    extra3 = read_labelled(REPO / "data/eval/detectors/urgent_dev_extra3.jsonl")
    assert sum(i["urgent"] for i in extra3) >= 80 and sum(not i["urgent"] for i in extra3) >= 50
    assert len({i["condition"] for i in extra3 if i["urgent"]}) == len(CONDITIONS)
    assert len(detector.training_items()) == 380 + len(extra3)


def test_cache_key_changes_with_the_data_and_the_features(dev_items):
    from serve.urgent import MODEL_VERSION

    key = UrgentDetector().cache_key(dev_items)
    assert f"v{MODEL_VERSION}-" in key
    assert UrgentDetector(values=False).cache_key(dev_items) != key
    assert UrgentDetector(combine="max").cache_key(dev_items) != key
    assert UrgentDetector().cache_key(dev_items[:-1]) != key
