"""Pure transforms from stored feedback to training data: Alpaca records and preference pairs.

The rules (the export applies them; the reviewer tab and README describe them):

- an approved correction becomes (question, correction); an ``edit`` review makes
  the reviewer's text the target instead; rejected or unreviewed corrections never
  become targets;
- an answer becomes (question, answer) when at least one clinician rated it well
  (thumbs up or score >= 4) or a reviewer approved it, and nobody flagged it: no
  tag (incorrect, unsafe, outdated, incomplete, hallucinated), no thumbs down, no
  score <= 2, no correction, no rejection. So an answer tagged ``unsafe`` is never
  a target, whatever else happened to it. Nor is an answer the gateway's guard wrote
  into (a redacted identifier or dose, an urgent or dosing notice): that text is the
  guard's, and a model trained on it would learn placeholders and notices; a
  clinician's correction of such an answer still counts;
- a preference pair is (question, approved correction, original answer), or an
  A/B pair: the same question answered by two model versions, one well rated and
  unflagged, the other flagged.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

GOOD_SCORE = 4  # a score at or above this is a good rating
BAD_SCORE = 2  # a score at or below this flags the answer
# ``oncoloop.guard`` actions (serve/guard.py) that change the answer's text as stored
GUARD_EDITS = ("identifier_redacted:", "dose_redacted", "urgent_notice:", "dosing_notice")


@dataclass(frozen=True)
class RatingFacts:
    """One rating with its latest review (``decision`` None while unreviewed)."""

    id: int
    user_id: int
    created_at: dt.datetime
    thumbs: int | None = None
    score: int | None = None
    tags: tuple[str, ...] = ()
    correction: str | None = None
    review_id: int | None = None
    decision: str | None = None
    edited_text: str | None = None


@dataclass(frozen=True)
class MessageFacts:
    """One answered question and every rating of it."""

    id: int
    question: str
    answer: str
    model_version: str | None
    created_at: dt.datetime
    ratings: tuple[RatingFacts, ...] = field(default_factory=tuple)
    guard_actions: tuple[str, ...] = ()  # what the gateway's guard did to this answer


def flags_answer(r: RatingFacts) -> bool:
    """Whether this rating says the answer should not be learnt as it is.

    >>> t = dt.datetime(2026, 1, 1)
    >>> flags_answer(RatingFacts(1, 1, t, score=5)), flags_answer(RatingFacts(1, 1, t, score=5, tags=("unsafe",)))
    (False, True)
    >>> flags_answer(RatingFacts(1, 1, t, thumbs=1, correction="Better text")), flags_answer(RatingFacts(1, 1, t, score=2))
    (True, True)
    """
    return criticises(r) or bool(r.correction) or r.decision == "reject"


def criticises(r: RatingFacts) -> bool:
    """Whether the rater said outright that the answer is bad (tag, thumbs down, low score).

    >>> t = dt.datetime(2026, 1, 1)
    >>> criticises(RatingFacts(1, 1, t, thumbs=-1)), criticises(RatingFacts(1, 1, t, correction="x"))
    (True, False)
    """
    return bool(r.tags) or r.thumbs == -1 or (r.score is not None and r.score <= BAD_SCORE)


def endorses_answer(r: RatingFacts) -> bool:
    """Whether this rating (or its review) vouches for the answer as it is.

    >>> t = dt.datetime(2026, 1, 1)
    >>> endorses_answer(RatingFacts(1, 1, t, thumbs=1)), endorses_answer(RatingFacts(1, 1, t, score=3))
    (True, False)
    >>> endorses_answer(RatingFacts(1, 1, t, score=3, review_id=9, decision="approve"))
    True
    """
    return (r.thumbs == 1 or (r.score is not None and r.score >= GOOD_SCORE) or r.decision == "approve") \
        and not flags_answer(r)


def approved_target(r: RatingFacts) -> str | None:
    """The text a reviewer approved for training from this rating, if any.

    >>> t = dt.datetime(2026, 1, 1)
    >>> approved_target(RatingFacts(1, 1, t, correction="Use G-CSF.", review_id=2, decision="approve"))
    'Use G-CSF.'
    >>> approved_target(RatingFacts(1, 1, t, correction="x", review_id=2, decision="edit", edited_text="Edited."))
    'Edited.'
    >>> approved_target(RatingFacts(1, 1, t, correction="x", review_id=2, decision="reject")) is None
    True
    """
    if r.decision == "edit":
        return r.edited_text or None
    if r.decision == "approve":
        return r.correction or None
    return None


def _meta(kind: str, m: MessageFacts, ratings: list[RatingFacts], hash_of) -> dict:
    first = ratings[0]
    return {
        "source": "feedback",
        "id": f"feedback-{kind}-m{m.id}" + "".join(f"-r{r.id}" for r in ratings),
        "kind": kind,
        "feedback_ids": {"message": m.id, "ratings": [r.id for r in ratings],
                         "reviews": [r.review_id for r in ratings if r.review_id is not None]},
        "clinician_hash": hash_of(first.user_id),
        "created_at": iso(first.created_at),
        "model_version": m.model_version,
    }


def iso(t: dt.datetime) -> str:
    """UTC ISO-8601; naive times (SQLite returns them) are UTC.

    >>> iso(dt.datetime(2026, 3, 1, 12, 30))
    '2026-03-01T12:30:00+00:00'
    """
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.timezone.utc)
    return t.astimezone(dt.timezone.utc).isoformat()


def message_records(m: MessageFacts, hash_of, reviewed_only: bool = False) -> tuple[list[dict], list[dict]]:
    """Alpaca records and correction pairs from one message.

    Args:
        m: the message and its ratings.
        hash_of: user id -> pseudonymous clinician hash.
        reviewed_only: an answer needs a reviewer's approval, not just a good rating.

    >>> t = dt.datetime(2026, 1, 1)
    >>> m = MessageFacts(7, "Q?", "old", "v1", t, (
    ...     RatingFacts(3, 5, t, thumbs=-1, tags=("outdated",), correction="new", review_id=4, decision="approve"),))
    >>> recs, pairs = message_records(m, lambda uid: f"h{uid}")
    >>> [(r["instruction"], r["output"], r["meta"]["feedback_ids"]) for r in recs]
    [('Q?', 'new', {'message': 7, 'ratings': [3], 'reviews': [4]})]
    >>> [(p["prompt"], p["chosen"], p["rejected"]) for p in pairs]
    [('Q?', 'new', 'old')]
    """
    records, pairs = [], []
    for r in m.ratings:
        target = approved_target(r)
        if target is None:
            continue  # unreviewed, rejected, or an approval of the answer itself (below)
        meta = _meta("correction", m, [r], hash_of)
        records.append({"instruction": m.question, "input": "", "output": target, "meta": meta})
        if target.strip() != m.answer.strip():
            pairs.append({"prompt": m.question, "chosen": target, "rejected": m.answer,
                          "meta": {**meta, "id": meta["id"].replace("correction", "pair", 1)}})
    if answer_is_target(m, reviewed_only):
        endorsing = [r for r in m.ratings if endorses_answer(r)]
        records.append({"instruction": m.question, "input": "", "output": m.answer,
                        "meta": _meta("rated_answer", m, endorsing, hash_of)})
    return records, pairs


def answer_is_target(m: MessageFacts, reviewed_only: bool = False) -> bool:
    """Whether the model's own answer may be learnt: endorsed by someone, flagged by nobody.

    >>> t = dt.datetime(2026, 1, 1)
    >>> good, unsafe = RatingFacts(1, 1, t, score=5), RatingFacts(2, 2, t, thumbs=1, tags=("unsafe",))
    >>> answer_is_target(MessageFacts(1, "q", "a", None, t, (good,)))
    True
    >>> answer_is_target(MessageFacts(1, "q", "a", None, t, (good, unsafe)))
    False
    >>> answer_is_target(MessageFacts(1, "q", "a", None, t, (good,)), reviewed_only=True)
    False
    >>> answer_is_target(MessageFacts(1, "q", "a [dose withheld]", None, t, (good,), ("preamble", "dose_redacted")))
    False
    """
    if not m.answer.strip() or any(flags_answer(r) for r in m.ratings):
        return False
    if any(a.startswith(GUARD_EDITS) for a in m.guard_actions):
        return False
    endorsing = [r for r in m.ratings if endorses_answer(r)]
    if reviewed_only:
        endorsing = [r for r in endorsing if r.decision == "approve"]
    return bool(endorsing)


def ab_pairs(messages: list[MessageFacts], key, hash_of) -> list[dict]:
    """Preference pairs from A/B traffic: one question, two versions, one answer endorsed, one flagged.

    Args:
        key: question -> grouping key (e.g. ``dedup.dedup_key`` of the scrubbed question).

    >>> t = dt.datetime(2026, 1, 1)
    >>> a = MessageFacts(1, "Q", "good", "v1", t, (RatingFacts(1, 1, t, score=5),))
    >>> b = MessageFacts(2, "Q", "bad", "v2", t, (RatingFacts(2, 2, t, tags=("incorrect",)),))
    >>> [(p["chosen"], p["rejected"], p["meta"]["feedback_ids"]["messages"]) for p in ab_pairs([a, b], str, str)]
    [('good', 'bad', [1, 2])]
    """
    groups: dict[str, list[MessageFacts]] = {}
    for m in messages:
        groups.setdefault(key(m.question), []).append(m)
    pairs = []
    for group in groups.values():
        good = [m for m in group if answer_is_target(m)]
        bad = [m for m in group if any(criticises(r) for r in m.ratings)]
        for g in good[:1]:  # one pair per flagged answer is enough signal and keeps groups from exploding
            for b in bad:
                if g.model_version == b.model_version or g.answer.strip() == b.answer.strip():
                    continue
                rating = next(r for r in b.ratings if criticises(r))
                pairs.append({"prompt": g.question, "chosen": g.answer, "rejected": b.answer, "meta": {
                    "source": "feedback", "id": f"feedback-ab-m{g.id}-m{b.id}", "kind": "ab",
                    "feedback_ids": {"messages": [g.id, b.id],
                                     "ratings": [r.id for r in g.ratings + b.ratings],
                                     "reviews": [r.review_id for r in g.ratings + b.ratings if r.review_id]},
                    "clinician_hash": hash_of(rating.user_id), "created_at": iso(rating.created_at),
                    "model_versions": {"chosen": g.model_version, "rejected": b.model_version},
                }})
    return pairs
