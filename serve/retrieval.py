"""Approved knowledge at once: the approved answers closest to a question, given to the model as context.

A reviewer's approval helps the next clinician before any retraining: the gateway finds the approved
answers whose questions are most like the one asked (MiniLM embeddings, a faiss inner-product index) and,
above a similarity threshold, puts the best ones in a system message after the guard's preamble, in the
project's one prompt format (``core.prompt.context_message``). Training prompts carry the same message
(``finetune.context``), so fine-tuned versions learn to use it. Every answer records which approved
answers it was given (``oncoloop.context``: review ids), and the store keeps them with the message.

Only scrubbed text enters the index: approved questions and answers pass ``feedback.scrub.scrub`` first,
so no identifier in a stored conversation reaches another clinician's prompt. The index is rebuilt when
the store's approvals change (checked every ``refresh_s`` seconds), embedding only new questions.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from core.prompt import context_message
from feedback.scrub import scrub
from feedback.store import ApprovedAnswer, FeedbackStore

Embedder = Callable[[list[str]], np.ndarray]


@dataclass(frozen=True)
class Similar:
    """An approved answer (scrubbed) and the cosine similarity of its question to the one asked."""

    answer: ApprovedAnswer
    similarity: float


def scrubbed(a: ApprovedAnswer) -> ApprovedAnswer:
    """The approved answer with identifiers replaced in question and answer."""
    return ApprovedAnswer(scrub(a.question), scrub(a.answer), a.message_id, a.rating_id, a.review_id, a.reviewed_at)


class ApprovedIndex:
    """A faiss inner-product index over approved answers' (scrubbed) questions; thread-safe."""

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

        answers = [scrubbed(a) for a in self.store.approved_answers()]
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
        query = np.ascontiguousarray(self.embed([scrub(question)]), dtype=np.float32)
        scores, ids = index.search(query, min(self.k * 3, len(answers)))
        out, seen = [], set()
        for score, i in zip(scores[0], ids[0]):
            if i < 0 or score < self.min_similarity:
                continue
            a = answers[i]
            if (a.question, a.answer) in seen:  # the same approved text twice (two reviews) counts once
                continue
            seen.add((a.question, a.answer))
            out.append(Similar(a, float(score)))
            if len(out) == self.k:
                break
        return out


def last_question(messages: list[dict]) -> str:
    """The text of the last user message (what retrieval searches with).

    >>> last_question([{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
    ...                {"role": "user", "content": "c"}])
    'c'
    """
    for m in reversed(messages):
        if m.get("role") == "user" and isinstance(m.get("content"), str):
            return m["content"]
    return ""


def with_context(messages: list[dict], hits: list[Similar]) -> list[dict]:
    """``messages`` with the approved answers as a system message after the leading system messages.

    >>> a = ApprovedAnswer("Q?", "A.", 1, 2, 3, None)
    >>> [m["role"] for m in with_context([{"role": "system", "content": "p"}, {"role": "user", "content": "q"}],
    ...                                  [Similar(a, 0.9)])]
    ['system', 'system', 'user']
    """
    if not hits:
        return messages
    lead = 0
    while lead < len(messages) and messages[lead].get("role") == "system":
        lead += 1
    note = {"role": "system", "content": context_message([(h.answer.question, h.answer.answer) for h in hits])}
    return [*messages[:lead], note, *messages[lead:]]


def context_record(hits: list[Similar]) -> list[dict]:
    """What an answer reports of its context: review ids and similarities (``oncoloop.context``).

    >>> context_record([Similar(ApprovedAnswer("Q", "A", 1, 2, 3, None), 0.912)])
    [{'review': 3, 'similarity': 0.912}]
    """
    return [{"review": h.answer.review_id, "similarity": round(h.similarity, 3)} for h in hits]


class Retriever:
    """The gateway's retrieval step: store and embedder opened on first use (torch loads lazily)."""

    def __init__(self, k: int = 2, min_similarity: float = 0.5, refresh_s: float = 10.0,
                 store: FeedbackStore | None = None, embed: Embedder | None = None):
        self.k, self.min_similarity, self.refresh_s = k, min_similarity, refresh_s
        self._store, self._embed = store, embed
        self._index: ApprovedIndex | None = None
        self._lock = threading.Lock()

    def index(self) -> ApprovedIndex:
        with self._lock:
            if self._index is None:
                if self._embed is None:
                    from core.embed import embed

                    self._embed = embed
                store = self._store or FeedbackStore.open()
                self._index = ApprovedIndex(store, self._embed, self.k, self.min_similarity, self.refresh_s)
            return self._index

    def search(self, messages: list[dict]) -> list[Similar]:
        """The approved answers to give the model for this chat (blocking: run it off the event loop)."""
        return self.index().similar(last_question(messages))

    def add_context(self, guarded) -> None:
        """Put the approved answers for a guarded chat into its messages and record them on it."""
        hits = self.search(guarded.body["messages"])
        guarded.body["messages"] = with_context(guarded.body["messages"], hits)
        guarded.context = context_record(hits)
