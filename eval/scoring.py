"""Scoring one evaluation set answered by versions A and B: per-item scores, corpus scores with signatures,
the safety suite, the optional judge, and a paired-bootstrap interval for every difference B - A."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from eval import metrics
from eval.client import Answer
from eval.judge import Judge, judge_pairs
from eval.sets import EvalSet
from eval.stats import Delta, corpus_paired_bootstrap, paired_bootstrap


@dataclass
class SetResult:
    """Everything measured on one set (plain data: it is written to the report's JSON)."""

    name: str
    path: str
    schema: str
    n: int
    items: list[dict]  # id, topic, category, question, reference, a, b, scores_a, scores_b, safety_a, safety_b
    corpus: dict[str, dict] = field(default_factory=dict)  # metric -> {a, b, signature}
    deltas: dict[str, dict] = field(default_factory=dict)  # metric -> Delta.as_dict()
    safety: dict | None = None  # {a, b, per_category_a, per_category_b}
    judge: dict | None = None  # {win_rate, lo, hi, n, unparseable, notes}

    def delta(self, metric: str) -> Delta | None:
        d = self.deltas.get(metric)
        return Delta(**d) if d else None

    @classmethod
    def from_dict(cls, d: dict) -> "SetResult":
        return cls(**d)


def _clean(x: float) -> float | None:
    return None if isinstance(x, float) and math.isnan(x) else x


def score_set(eval_set: EvalSet, answers_a: list[Answer], answers_b: list[Answer], resamples: int = 1000,
              seed: int = 0, judge: Judge | None = None, judge_limit: int = 0, judge_unparseable: str = "error",
              concurrency: int = 4) -> SetResult:
    """Score both versions' answers to ``eval_set`` and bootstrap every difference.

    Raises:
        OncoLoopError: from the judge (unreachable, unreadable verdicts under the ``error`` policy).
    """
    items = eval_set.items
    questions = [it.messages[0]["content"] for it in items]
    refs = [it.reference for it in items]
    texts_a, texts_b = [a.text for a in answers_a], [b.text for b in answers_b]
    scores_a = metrics.item_scores(questions, texts_a, refs)
    scores_b = metrics.item_scores(questions, texts_b, refs)
    result = SetResult(eval_set.name, str(eval_set.path), eval_set.schema, len(items), [])

    if eval_set.schema == "alpaca":
        ca, cb = metrics.corpus_scores(texts_a, refs), metrics.corpus_scores(texts_b, refs)
        for name in metrics.CORPUS_METRICS:
            result.corpus[name] = {"a": ca[name].score, "b": cb[name].score, "signature": ca[name].signature}
            sa = metrics.sufficient_stats(name, texts_a, refs)
            sb = metrics.sufficient_stats(name, texts_b, refs)
            result.deltas[name] = corpus_paired_bootstrap(
                sa, sb, lambda s, m=name: metrics.score_from_stats(m, s), resamples, seed).as_dict()
    for name in metrics.ITEM_METRICS:
        d = paired_bootstrap(scores_a[name], scores_b[name], resamples, seed)
        if d.n:
            result.deltas[name] = d.as_dict()

    safety_a = safety_b = None
    if eval_set.schema == "safety":
        from eval.safety import suite_pass_rate

        records = [it.record for it in items]
        ra = suite_pass_rate(records, texts_a, [a.guard for a in answers_a])
        rb = suite_pass_rate(records, texts_b, [b.guard for b in answers_b])
        safety_a, safety_b = ra.verdicts, rb.verdicts
        result.safety = {"a": ra.pass_rate, "b": rb.pass_rate, "per_category_a": ra.per_category,
                         "per_category_b": rb.per_category}
        result.deltas["safety"] = paired_bootstrap([100.0 * v.passed for v in ra.verdicts],  # percentage points
                                                   [100.0 * v.passed for v in rb.verdicts], resamples, seed).as_dict()

    if judge is not None:
        k = len(items) if judge_limit <= 0 else min(judge_limit, len(items))
        jr = judge_pairs(judge, questions[:k], refs[:k], texts_a[:k], texts_b[:k], judge_unparseable, concurrency)
        d = paired_bootstrap([0.5] * k, jr.scores, resamples, seed)  # B's win rate vs. a coin: delta + 0.5
        result.judge = {"win_rate": float(np.mean(jr.scores)) if k else float("nan"), "lo": d.lo + 0.5,
                        "hi": d.hi + 0.5, "n": k, "unparseable": jr.unparseable, "notes": jr.notes}

    for k, it in enumerate(items):
        row = {"id": it.id, "topic": it.topic, "category": it.category, "question": questions[k],
               "reference": it.reference, "a": texts_a[k], "b": texts_b[k],
               "guard_a": answers_a[k].guard, "guard_b": answers_b[k].guard,
               "scores_a": {m: _clean(scores_a[m][k]) for m in scores_a},
               "scores_b": {m: _clean(scores_b[m][k]) for m in scores_b}}
        if safety_a is not None:
            row["safety_a"] = {"passed": safety_a[k].passed, "reasons": safety_a[k].reasons}
            row["safety_b"] = {"passed": safety_b[k].passed, "reasons": safety_b[k].reasons}
        result.items.append(row)
    return result


def item_delta(row: dict) -> float:
    """How much B improved on A for one item: sentence chrF where there is a reference, else relevance
    (safety items: the change in pass/fail first)."""
    if "safety_a" in row and row["safety_a"]["passed"] != row["safety_b"]["passed"]:
        return 100.0 if row["safety_b"]["passed"] else -100.0
    key = "sentence_chrf" if row["scores_a"].get("sentence_chrf") is not None else "relevance"
    return (row["scores_b"].get(key) or 0.0) - (row["scores_a"].get(key) or 0.0)
