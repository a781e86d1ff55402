"""A version answering in this process, many chats at once, behind the same guard and retrieval as the gateway.

The gateway answers one request per engine call; evaluation and ``serve.ask`` answer many known questions
at once, which on a CPU is several times faster batched (``serve.generation``: continuous
batching). This module applies the gateway's request side (guard, retrieval), renders each chat with the
version's chat template, generates greedily, many at a time, and applies the guard's answer side (notices, redaction), so an
answer here is the answer the gateway would give with the same settings.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from serve.ask import load_version
from serve.generation import BATCH_SIZE, generate_texts
from serve.guard import Guard, GuardedChat
from serve.retrieval import Retriever


@dataclass
class Prepared:
    """One chat after the request side: the prompt text to generate from and what the answer needs."""

    prompt: str
    guarded: GuardedChat


@dataclass
class LocalAnswer:
    text: str
    version: str
    guard: list[str] = field(default_factory=list)
    context: list[dict] = field(default_factory=list)
    finished: bool = True  # stopped at EOS rather than at max_tokens


class InProcessEngine:
    """One registered version loaded here (fp32), answering batches of chats."""

    def __init__(self, registry, version, guard: Guard | None = None, retriever: Retriever | None = None):
        self.version = version
        self.guard = guard or Guard()
        self.retriever = retriever
        self.tokenizer, self.model = load_version(registry, version)

    def prepare(self, messages: list[dict], headers: dict[str, str] | None = None, retrieval: bool = True) -> Prepared:
        """The guard's request side and retrieval (unless ``retrieval`` is False), then the prompt as the engine
        would render it."""
        guarded = self.guard.prepare({"model": self.version.id, "messages": messages},
                                     {k.lower(): v for k, v in (headers or {}).items()})
        if self.retriever is not None and retrieval:
            self.retriever.add_context(guarded)
        prompt = self.tokenizer.apply_chat_template(guarded.body["messages"], tokenize=False,
                                                    add_generation_prompt=True)
        return Prepared(prompt, guarded)

    def generate(self, prompts: list[str], max_tokens: int, batch_size: int = BATCH_SIZE) -> tuple[list[str], list[bool], int]:
        """Raw greedy continuations (answers, stopped-at-EOS flags, tokens generated)."""
        return generate_texts(self.model, self.tokenizer, prompts, max_tokens, batch_size)

    def finish(self, prepared: Prepared, raw: str, finished: bool = True) -> LocalAnswer:
        """The guard's answer side on a raw continuation: notices first, identifiers and doses redacted."""
        g = prepared.guarded
        redactor = g.redactor_for(0)
        text = g.prefix + (redactor.redact(raw) if redactor else raw)
        return LocalAnswer(text, self.version.id, g.all_actions(), g.context, finished)

    def answer(self, chats: list[list[dict]], max_tokens: int, headers: dict[str, str] | None = None,
               batch_size: int = BATCH_SIZE) -> list[LocalAnswer]:
        """Guarded answers to ``chats``, in order."""
        prepared = [self.prepare(c, headers) for c in chats]
        raw, finished, _ = self.generate([p.prompt for p in prepared], max_tokens, batch_size)
        return [self.finish(p, r, f) for p, r, f in zip(prepared, raw, finished)]
