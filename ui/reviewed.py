"""The "Reviewed answers" panel: approved answers to questions like the one being asked (faiss).

An approved correction helps colleagues at once, before any retraining. The index holds the
questions of every approved answer; it is built once, rebuilt at once after an approval in this
process, and checked every ``refresh_s`` seconds for approvals made elsewhere (other replicas).
Embeddings are cached per question, so a rebuild embeds only new questions.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import numpy as np

from feedback.dedup import Embedder
from feedback.store import ApprovedAnswer, FeedbackStore


@dataclass(frozen=True)
class Similar:
    answer: ApprovedAnswer
    similarity: float


class ReviewedAnswers:
    """A faiss inner-product index over approved answers' questions."""

    def __init__(self, store: FeedbackStore, embed: Embedder, k: int = 3, min_similarity: float = 0.3,
                 refresh_s: float = 10.0):
        self.store, self.embed, self.k = store, embed, k
        self.min_similarity, self.refresh_s = min_similarity, refresh_s
        self._lock = threading.Lock()
        self._vectors: dict[str, np.ndarray] = {}
        self._answers: list[ApprovedAnswer] = []
        self._index = None
        self._checked = -1e9
        self.refresh()

    def refresh(self) -> int:
        """Rebuild the index from the store's approved answers; returns how many it holds."""
        import faiss

        answers = self.store.approved_answers()
        with self._lock:
            new = sorted({a.question for a in answers} - set(self._vectors))
            if new:
                for q, v in zip(new, self.embed(new)):
                    self._vectors[q] = np.asarray(v, np.float32)
            index = None
            if answers:
                matrix = np.stack([self._vectors[a.question] for a in answers])
                index = faiss.IndexFlatIP(matrix.shape[1])
                index.add(np.ascontiguousarray(matrix))
            self._answers, self._index, self._checked = answers, index, time.monotonic()
        return len(answers)

    def _maybe_refresh(self) -> None:
        with self._lock:  # one thread refreshes; the others keep using the current index meanwhile
            due = time.monotonic() - self._checked >= self.refresh_s
            if due:
                self._checked = time.monotonic()
        if due:
            self.refresh()

    def similar(self, question: str) -> list[Similar]:
        """Up to ``k`` approved answers whose question is most like ``question``, most similar first."""
        self._maybe_refresh()
        with self._lock:
            index, answers = self._index, self._answers
        if index is None or not question.strip():
            return []
        query = np.ascontiguousarray(self.embed([question]), dtype=np.float32)
        scores, ids = index.search(query, min(self.k * 3, len(answers)))
        out, seen = [], set()
        for score, i in zip(scores[0], ids[0]):
            if i < 0 or score < self.min_similarity:
                continue
            a = answers[i]
            if (a.question, a.answer) in seen:  # the same approved text twice (two reviews) shows once
                continue
            seen.add((a.question, a.answer))
            out.append(Similar(a, float(score)))
            if len(out) == self.k:
                break
        return out


def render(similar: list[Similar]) -> str:
    """The panel's Markdown.

    >>> import datetime as dt
    >>> a = ApprovedAnswer("What is ECOG 1?", "Restricted in strenuous activity.", 1, 2, 3, dt.datetime(2026, 1, 1))
    >>> print(render([Similar(a, 0.91)]))
    **Reviewed answers** (approved by a reviewer)
    <BLANKLINE>
    1. *What is ECOG 1?* (similarity 0.91)
    <BLANKLINE>
       Restricted in strenuous activity.
    """
    if not similar:
        return "**Reviewed answers**: none approved yet for questions like this one."
    lines = ["**Reviewed answers** (approved by a reviewer)", ""]
    for n, s in enumerate(similar, 1):
        answer = s.answer.answer.strip().replace("\n", "\n   ")
        lines += [f"{n}. *{s.answer.question.strip()}* (similarity {s.similarity:.2f})", "", f"   {answer}"]
    return "\n".join(lines)
