"""Online A/B results from the feedback store: what clinicians thought of each version in real use.

- thumbs-up rate per version with a Wilson 95% interval;
- pairwise preferences: the same question (``core.text.normalise``, the key de-duplication and the export's
  A/B pairs use) answered by two versions, each answer valued by the mean of its ratings (thumbs up 1, down 0;
  a 1-5 score as (s-1)/4); the better valued answer wins, equal values tie. Bradley-Terry strengths with
  bootstrap intervals, and each pair's win share;
- ratings by tag and by topic (a question's topic is that of its nearest seed question under MiniLM).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from itertools import combinations

from core.text import normalise
from eval.stats import bradley_terry_intervals, wilson
from feedback.records import MessageFacts, RatingFacts


def rating_value(r: RatingFacts) -> float | None:
    """A rating as a number in [0, 1] (thumbs first, else the score); None if it has neither.

    >>> import datetime as dt
    >>> t = dt.datetime(2026, 1, 1)
    >>> rating_value(RatingFacts(1, 1, t, thumbs=-1)), rating_value(RatingFacts(1, 1, t, score=4))
    (0.0, 0.75)
    """
    if r.thumbs is not None:
        return 1.0 if r.thumbs > 0 else 0.0
    if r.score is not None:
        return (r.score - 1) / 4
    return None


def preferences(facts: list[MessageFacts]) -> list[tuple[str, str, float]]:
    """``(version i, version j, s)`` for every pair of differently-versioned answers to the same question."""
    by_question: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for m in facts:
        values = [v for v in (rating_value(r) for r in m.ratings) if v is not None]
        if m.model_version and values:
            by_question[normalise(m.question)][m.model_version].append(sum(values) / len(values))
    out = []
    for versions in by_question.values():
        means = {v: sum(xs) / len(xs) for v, xs in versions.items()}
        for i, j in combinations(sorted(means), 2):
            out.append((i, j, 1.0 if means[i] > means[j] else 0.0 if means[i] < means[j] else 0.5))
    return out


def _topics(questions: list[str]) -> list[str]:
    from core.data import load_jsonl
    from core.embed import nearest
    from eval.sets import BUNDLED

    seed = load_jsonl(BUNDLED["retention"])
    _, idx = nearest(questions, [r["instruction"] for r in seed])
    return [str((seed[i].get("meta") or {}).get("topic", "other")) for i in idx]


def online_summary(facts: list[MessageFacts], versions: list[str] | None = None, resamples: int = 1000,
                   seed: int = 0, topics: bool = True) -> dict:
    """The online A/B section of a report (plain data); ``versions`` limits the per-version tables."""
    rated = [m for m in facts if m.model_version and (versions is None or m.model_version in versions)]
    thumbs: dict[str, Counter] = defaultdict(Counter)
    scores: dict[str, Counter] = defaultdict(Counter)
    tags: dict[str, Counter] = defaultdict(Counter)
    for m in rated:
        for r in m.ratings:
            if r.thumbs is not None:
                thumbs[m.model_version]["up" if r.thumbs > 0 else "down"] += 1
            if r.score is not None:
                scores[m.model_version][str(r.score)] += 1
            for t in r.tags:
                tags[m.model_version][t] += 1
    per_version = {}
    for v in sorted({m.model_version for m in rated}):
        up, n = thumbs[v]["up"], thumbs[v]["up"] + thumbs[v]["down"]
        lo, hi = wilson(up, n)
        per_version[v] = {"messages": sum(m.model_version == v for m in rated), "thumbs_up": up, "thumbs": n,
                          "up_rate": up / n if n else None, "lo": lo, "hi": hi, "scores": dict(scores[v]),
                          "tags": dict(tags[v])}
    by_topic: dict[str, dict[str, dict]] = {}
    if topics and rated:
        for m, topic in zip(rated, _topics([m.question for m in rated])):
            cell = by_topic.setdefault(topic, {}).setdefault(m.model_version, {"up": 0, "n": 0, "tags": 0})
            for r in m.ratings:
                if r.thumbs is not None:
                    cell["up"] += r.thumbs > 0
                    cell["n"] += 1
                cell["tags"] += len(r.tags)
    prefs = [p for p in preferences(facts) if versions is None or (p[0] in versions and p[1] in versions)]
    return {"versions": per_version, "by_topic": by_topic, "preferences": len(prefs),
            "bradley_terry": {v: {"strength": s, "lo": lo, "hi": hi}
                              for v, (s, lo, hi) in bradley_terry_intervals(prefs, resamples, seed).items()}}
