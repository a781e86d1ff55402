"""Retrieved context in training data: teach the model to use the approved answers the gateway adds.

At serving time the gateway gives the model, in a system message, the approved answers whose questions
are closest to the one asked (:mod:`serve.retrieval`). Training prompts carry the same message for a share
of records, so the fine-tune learns to use it: the record's own answer (as if a clinician had approved it
for this question) next to the answer of its nearest other question, in random order, so the model has to
pick the one that answers the question rather than copy the first.
"""

from __future__ import annotations

import random


def add_context(records: list[dict], share: float, seed: int) -> list[dict]:
    """A copy of ``records`` in which a fixed-seed ``share`` carry ``context``; others are unchanged.

    Records that already carry ``context`` keep theirs. The neighbour is the record whose instruction is
    nearest by MiniLM cosine (faiss), never one with the same answer.

    >>> add_context([{"instruction": "Q", "output": "A"}], 0.0, 0)
    [{'instruction': 'Q', 'output': 'A'}]
    """
    if share <= 0 or len(records) < 2:
        return [dict(r) for r in records]
    import faiss

    from core.embed import embed

    rng = random.Random(seed)
    chosen = {i for i in range(len(records)) if rng.random() < share and not records[i].get("context")}
    vectors = embed([r["instruction"] for r in records])
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(vectors)
    _, neighbours = index.search(vectors[sorted(chosen)], min(len(records), 8)) if chosen else (None, [])
    out = [dict(r) for r in records]
    for i, row in zip(sorted(chosen), neighbours):
        own = {"question": records[i]["instruction"], "answer": records[i]["output"]}
        other = next((records[j] for j in row if j >= 0 and records[j]["output"] != records[i]["output"]), None)
        context = [own] + ([{"question": other["instruction"], "answer": other["output"]}] if other else [])
        rng.shuffle(context)
        out[i]["context"] = context
    return out
