"""Evaluation answers generated in this process, many at a time, with a cache of answers already given.

On a CPU, ``transformers serve`` answers one request at a time, so asking an evaluation set through a
gateway generates one answer at a time. Here both versions are loaded in process
(:class:`serve.inprocess.InProcessEngine`: the gateway's guard and retrieval, then greedy generation with
continuous batching). Versions are immutable, so an answer to the same rendered prompt with the
same decoding settings never changes: it is cached under ``$ONCOLOOP_HOME/cache/answers/<version>.jsonl``
and reused, e.g. the champion's answers from one gate to the next.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from pathlib import Path

from core.errors import OncoLoopError
from eval.client import EVAL_HEADERS, Answer
from eval.sets import EvalItem


class AnswerCache:
    """Raw greedy continuations by (version, prompt, max_tokens); one append-only JSONL per version."""

    def __init__(self, root: Path):
        self.root = root
        self._loaded: dict[str, dict[str, dict]] = {}

    @staticmethod
    def key(prompt: str, max_tokens: int) -> str:
        return hashlib.sha256(f"{max_tokens}\0{prompt}".encode()).hexdigest()

    def _entries(self, version: str) -> dict[str, dict]:
        if version not in self._loaded:
            entries: dict[str, dict] = {}
            path = self.root / f"{version}.jsonl"
            if path.is_file():
                for line in path.read_text(encoding="utf-8").splitlines():
                    try:
                        row = json.loads(line)
                        entries[row["key"]] = row
                    except (json.JSONDecodeError, KeyError, TypeError):
                        continue  # a line cut short by a killed run: that answer is generated again
            self._loaded[version] = entries
        return self._loaded[version]

    def get(self, version: str, prompt: str, max_tokens: int) -> dict | None:
        return self._entries(version).get(self.key(prompt, max_tokens))

    def put(self, version: str, rows: list[tuple[str, int, str, bool]]) -> None:
        """Store ``(prompt, max_tokens, text, finished)`` rows for ``version``."""
        entries = self._entries(version)
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / f"{version}.jsonl", "a", encoding="utf-8") as f:
            for prompt, max_tokens, text, finished in rows:
                row = {"key": self.key(prompt, max_tokens), "text": text, "finished": finished}
                entries[row["key"]] = row
                f.write(json.dumps(row) + "\n")


def ask_local(engine, items: list[EvalItem], max_tokens: int, batch_size: int, cache: AnswerCache | None,
              label: str = "", retrieval: bool | list[bool] = True) -> tuple[list[Answer], dict]:
    """Answers of an in-process engine to every item, in item order, and what it cost. ``retrieval`` is one
    flag for all items or one per item (a gate asks every set in one call, so the batch stays full across sets).

    Returns:
        The answers, and ``{"generated": n, "cached": n, "tokens": n, "seconds": s}``.
    """
    version = engine.version.id
    flags = retrieval if isinstance(retrieval, list) else [retrieval] * len(items)
    prepared = [engine.prepare(item.messages, EVAL_HEADERS, flag) for item, flag in zip(items, flags)]
    raw: list[dict | None] = [cache.get(version, p.prompt, max_tokens) if cache else None for p in prepared]
    todo = [i for i, r in enumerate(raw) if r is None]
    started, tokens = time.monotonic(), 0
    if todo:
        print(f"eval: {label or version}: generating {len(todo)} answers, {batch_size} at a time "
              f"({len(items) - len(todo)} from the cache)", file=sys.stderr, flush=True)
        texts, finished, tokens = engine.generate([prepared[i].prompt for i in todo], max_tokens, batch_size)
        rows = [(prepared[i].prompt, max_tokens, t, f) for i, t, f in zip(todo, texts, finished)]
        if cache:
            cache.put(version, rows)
        for i, t, f in zip(todo, texts, finished):
            raw[i] = {"text": t, "finished": f}
    seconds = time.monotonic() - started
    per_item_ms = int(1000 * seconds / max(len(todo), 1))
    answers = []
    for p, r in zip(prepared, raw):
        local = engine.finish(p, r["text"], r["finished"])
        answers.append(Answer(local.text, local.version, local.guard, per_item_ms))
    return answers, {"generated": len(todo), "cached": len(items) - len(todo), "tokens": tokens,
                     "seconds": round(seconds, 1)}


def open_engines(registry, version_ids: list[str], guard_path: str, retrieval: bool) -> dict:
    """In-process engines for the versions, with the comparison's guard and (optionally) retrieval.

    Raises:
        OncoLoopError: the guard config is invalid or a version cannot be loaded.
    """
    from serve.guard import load_guard
    from serve.inprocess import InProcessEngine
    from serve.retrieval import Retriever

    repo = Path(__file__).resolve().parent.parent
    guard = load_guard((Path(guard_path) if Path(guard_path).exists() else repo / guard_path) if guard_path else None)
    retriever = Retriever() if retrieval else None
    engines = {}
    for vid in version_ids:
        try:
            engines[vid] = InProcessEngine(registry, registry.get(vid), guard, retriever)
        except (OSError, ValueError) as e:
            raise OncoLoopError(f"cannot load version {vid} for evaluation: {str(e).splitlines()[0]}") from e
    return engines
