"""Scores and intervals checked against the independent `sacrebleu` command-line tool on the same files."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from eval import metrics
from eval.client import Answer
from eval.scoring import score_set
from eval.sets import load_set
from eval.stats import corpus_paired_bootstrap, paired_bootstrap

SACREBLEU = Path(sys.executable).parent / "sacrebleu"


def degrade(text: str, every: int, offset: int = 0) -> str:
    """Drop every ``every``-th word (a deterministic stand-in for a weaker system)."""
    words = text.split()
    return " ".join(w for i, w in enumerate(words) if (i + offset) % every != 0) or words[0]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Reference and two systems' hypotheses for the bundled general evaluation set, as plain text files."""
    root = tmp_path_factory.mktemp("sacrebleu")
    s = load_set("general")
    refs = [it.reference for it in s.items]
    sys_a = [degrade(r, 3) for r in refs]  # drops a third of the words
    sys_b = [degrade(r, 7, 1) for r in refs]  # drops a seventh: clearly better
    for name, lines in (("ref", refs), ("a", sys_a), ("b", sys_b)):
        (root / f"{name}.txt").write_text("\n".join(x.replace("\n", " ") for x in lines) + "\n", encoding="utf-8")
    return root, s, refs, sys_a, sys_b


def cli(*args: str) -> str:
    proc = subprocess.run([str(SACREBLEU), *args], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_report_corpus_scores_equal_the_sacrebleu_cli(files):
    root, s, refs, sys_a, sys_b = files
    answers = lambda texts: [Answer(t, "v") for t in texts]  # noqa: E731
    result = score_set(s, answers(sys_a), answers(sys_b), resamples=1000)
    import json

    for side, hyp in (("a", "a.txt"), ("b", "b.txt")):
        out = json.loads(cli(str(root / "ref.txt"), "-i", str(root / hyp), "-m", "bleu", "chrf", "-f", "json", "-w", "4"))
        by_name = {o["name"]: o for o in out}
        assert result.corpus["bleu"][side] == pytest.approx(float(by_name["BLEU"]["score"]), abs=1e-4)
        assert result.corpus["chrf"][side] == pytest.approx(float(by_name["chrF2"]["score"]), abs=1e-4)
        assert result.corpus["bleu"]["signature"] == by_name["BLEU"]["signature"]
        assert result.corpus["chrf"]["signature"] == by_name["chrF2"]["signature"]
    # the delta rows are consistent with the corpus rows
    assert result.deltas["bleu"]["delta"] == pytest.approx(result.corpus["bleu"]["b"] - result.corpus["bleu"]["a"])
    assert {"rougeL", "length", "relevance", "sentence_chrf"} <= set(result.deltas)


def test_paired_bootstrap_agrees_with_sacrebleu_paired_bs(files):
    """Our resamples (seed 0) against sacreBLEU's (seed 12345): means and interval widths within sampling noise."""
    root, _, refs, sys_a, sys_b = files
    table = cli(str(root / "ref.txt"), "-i", str(root / "a.txt"), str(root / "b.txt"), "-m", "bleu", "chrf",
                "--paired-bs", "-w", "3", "-f", "text")
    cells = re.findall(r"([\d.]+) \(([\d.]+) ± ([\d.]+)\)", table)
    pvals = [float(p) for p in re.findall(r"p = ([\d.]+)", table)]
    assert len(cells) == 4 and len(pvals) == 2, table  # baseline bleu, chrf; system bleu, chrf
    theirs = {"bleu": (cells[0], cells[2]), "chrf": (cells[1], cells[3])}
    for k, name in enumerate(("bleu", "chrf")):
        stats_a = metrics.sufficient_stats(name, sys_a, refs)
        stats_b = metrics.sufficient_stats(name, sys_b, refs)
        d = corpus_paired_bootstrap(stats_a, stats_b, lambda x, m=name: metrics.score_from_stats(m, x), 1000, seed=0)
        (a_score, _, _), (b_score, b_mean, b_ci) = [tuple(float(v) for v in c) for c in theirs[name]]
        assert d.a == pytest.approx(a_score, abs=1e-3) and d.b == pytest.approx(b_score, abs=1e-3)
        assert d.b_mean == pytest.approx(b_mean, abs=0.15 * b_ci)  # bootstrap means: noise << interval
        assert d.b_ci == pytest.approx(b_ci, rel=0.2)  # 95% half-widths from 1000 resamples: ~10% noise
        assert pvals[k] < 0.05 and d.p_value < 0.05 and d.lo > 0  # both call B significantly better
    # and on two systems that differ by little, both find nothing significant
    same = [degrade(r, 3, 1) for r in refs]
    (root / "c.txt").write_text("\n".join(same) + "\n", encoding="utf-8")
    table = cli(str(root / "ref.txt"), "-i", str(root / "a.txt"), str(root / "c.txt"), "-m", "chrf", "--paired-bs", "-f", "text")
    p_theirs = float(re.findall(r"p = ([\d.]+)", table)[0])
    d = corpus_paired_bootstrap(metrics.sufficient_stats("chrf", sys_a, refs), metrics.sufficient_stats("chrf", same, refs),
                                lambda x: metrics.score_from_stats("chrf", x), 1000, seed=0)
    assert (p_theirs < 0.05) == (d.p_value < 0.05)


def test_item_bootstrap_interval_covers_the_known_difference():
    a = [float(i % 10) for i in range(200)]
    b = [x + 2.0 + (0.5 if i % 2 else -0.5) for i, x in enumerate(a)]
    d = paired_bootstrap(a, b, resamples=2000, seed=1)
    assert d.lo < 2.0 < d.hi and d.hi - d.lo < 0.3 and d.n == 200
    assert paired_bootstrap(a, b, 1000, seed=3).lo == pytest.approx(d.lo, abs=0.05)  # another seed: same answer


def test_relevance_separates_answers_to_the_question_from_shuffled_ones():
    s = load_set("retention", limit=12)
    questions = [it.messages[0]["content"] for it in s.items]
    right = metrics.relevance(questions, [it.reference for it in s.items])
    wrong = metrics.relevance(questions, [it.reference for it in s.items[1:] + s.items[:1]])
    assert sum(right) / len(right) > sum(wrong) / len(wrong) + 10


def test_semantic_similarity_credits_a_paraphrase_of_the_reference_over_a_wrong_answer():
    """SemScore: an answer that says what the reference says in other words scores above one that answers
    another question (whose chrF against the reference can be as high); no reference gives NaN."""
    reference = ("Neutropenic sepsis is a medical emergency: give broad-spectrum intravenous antibiotics within "
                 "one hour of arrival, after taking blood cultures.")
    paraphrase = ("Treat a febrile neutropenic patient as an emergency: draw cultures, then start IV broad-spectrum "
                  "antibiotics inside the first hour.")
    wrong = "Neutropenic patients should avoid raw foods and keep the kitchen clean; sepsis is rare in clinic."
    scores = metrics.item_scores(["How fast must neutropenic sepsis be treated?"] * 3, [paraphrase, wrong, wrong],
                                 [reference, reference, None])
    assert scores["semantic"][0] > scores["semantic"][1] + 5
    assert scores["semantic"][2] != scores["semantic"][2]  # NaN without a reference
    assert metrics.semantic([reference], [reference])[0] > 99.0
