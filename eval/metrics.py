"""Scores of answers: sacreBLEU BLEU and chrF (corpus, with signatures, and per sentence), ROUGE-L, length,
relevance (cosine of question and answer under the offline MiniLM embedder; needs no reference) and
semantic similarity to the reference (cosine of answer and reference under the same embedder, the SemScore
of Aynetdinov & Akbik 2024: it credits an answer that says what the reference says in other words).

Corpus BLEU/chrF are computed from per-sentence sufficient statistics, as sacreBLEU itself does, so a
bootstrap resample is scored exactly like ``sacrebleu --paired-bs`` scores one.

>>> s = corpus_scores(["the cat sat on the mat"], ["the cat sat on the mat"])
>>> round(s["bleu"].score, 1), round(s["chrf"].score, 1)
(100.0, 100.0)
>>> s["bleu"].signature.startswith("nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:")
True
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

CORPUS_METRICS = ("bleu", "chrf")
ITEM_METRICS = ("sentence_bleu", "sentence_chrf", "rougeL", "length", "relevance", "semantic")


@dataclass
class CorpusScore:
    score: float
    signature: str


@lru_cache(maxsize=None)
def _metric(name: str):
    from sacrebleu.metrics import BLEU, CHRF

    # sentence-level BLEU needs effective_order; the corpus score (and the CLI) does not use it
    return {"bleu": lambda: BLEU(), "chrf": lambda: CHRF(),
            "sentence_bleu": lambda: BLEU(effective_order=True), "sentence_chrf": lambda: CHRF()}[name]()


def sufficient_stats(metric: str, hypotheses: list[str], references: list[str]) -> np.ndarray:
    """Per-sentence sufficient statistics (rows) of ``bleu`` or ``chrf``; their column sums score a corpus."""
    m = _metric(metric)
    # sacreBLEU's own route (what its --paired-bs does); no public per-sentence stats API (pinned <3 for it)
    return np.asarray(m._extract_corpus_statistics(hypotheses, [references]), dtype=np.float64)


def score_from_stats(metric: str, stats_sum: np.ndarray) -> float:
    """The corpus score of summed sufficient statistics."""
    m = _metric(metric)
    return float(m._compute_score_from_stats(list(stats_sum)).score)


def corpus_scores(hypotheses: list[str], references: list[str]) -> dict[str, CorpusScore]:
    """Corpus BLEU and chrF with their sacreBLEU signatures (what ``sacrebleu REF -i HYP -m bleu chrf`` prints)."""
    out = {}
    for name in CORPUS_METRICS:
        m = _metric(name)
        out[name] = CorpusScore(float(m.corpus_score(hypotheses, [references]).score), str(m.get_signature()))
    return out


@lru_cache(maxsize=1)
def _rouge():
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)


def rouge_l(hypothesis: str, reference: str) -> float:
    """ROUGE-L F-measure, 0-100.

    >>> rouge_l("the cat sat", "the cat sat")
    100.0
    """
    return 100.0 * _rouge().score(reference, hypothesis)["rougeL"].fmeasure


def length(text: str) -> float:
    """Answer length in whitespace-separated words.

    >>> length("Two words")
    2.0
    """
    return float(len(text.split()))


def relevance(questions: list[str], answers: list[str]) -> list[float]:
    """Cosine similarity (x100) of each question with its answer under the offline MiniLM embedder."""
    from core.embed import embed

    if not questions:
        return []
    q, a = embed(questions), embed([ans if ans.strip() else "(no answer)" for ans in answers])
    return [float(x) for x in 100.0 * (q * a).sum(1)]


def semantic(answers: list[str], references: list[str]) -> list[float]:
    """Cosine similarity (x100) of each answer with its reference under the offline MiniLM embedder."""
    from core.embed import embed

    if not answers:
        return []
    a = embed([ans if ans.strip() else "(no answer)" for ans in answers])
    return [float(x) for x in 100.0 * (a * embed(references)).sum(1)]


def item_scores(questions: list[str], answers: list[str], references: list[str | None]) -> dict[str, list[float]]:
    """Per-item scores; reference-based ones are NaN where an item has no reference."""
    nan = float("nan")
    out = {"sentence_bleu": [], "sentence_chrf": [], "rougeL": [], "length": [length(a) for a in answers],
           "relevance": relevance(questions, answers)}
    with_ref = [k for k, ref in enumerate(references) if ref is not None]
    sem = dict(zip(with_ref, semantic([answers[k] for k in with_ref], [references[k] for k in with_ref])))
    out["semantic"] = [sem.get(k, nan) for k in range(len(answers))]
    for answer, ref in zip(answers, references):
        if ref is None:
            out["sentence_bleu"].append(nan)
            out["sentence_chrf"].append(nan)
            out["rougeL"].append(nan)
            continue
        out["sentence_bleu"].append(float(_metric("sentence_bleu").sentence_score(answer, [ref]).score))
        out["sentence_chrf"].append(float(_metric("sentence_chrf").sentence_score(answer, [ref]).score))
        out["rougeL"].append(rouge_l(answer, ref))
    return out
