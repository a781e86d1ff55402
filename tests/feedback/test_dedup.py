"""De-duplication and decontamination: literal examples, the lexical fallback, the approximate path."""

from __future__ import annotations

import numpy as np
import pytest

from feedback import dedup
from feedback.dedup import THRESHOLDS, contaminated, dedup_key, keep_unique, lexical_embed, normalise


def test_normalise_and_keys():
    assert normalise("  Carboplatin AUC-5,\tDAY 1. ") == "carboplatin auc 5 day 1"
    assert dedup_key("Carboplatin AUC 5") == dedup_key("carboplatin   auc 5!")
    assert dedup_key("Carboplatin AUC 5") != dedup_key("Carboplatin AUC 6")


def test_lexical_vectors_are_unit_length_and_separate_topics():
    texts = ["How is febrile neutropenia managed after docetaxel?",
             "How is febrile neutropenia managed after docetaxel ?",
             "How is febrile neutropenia managed after paclitaxel?",
             "What is the screening interval for mammography?", ""]
    v = lexical_embed(texts)
    assert v.dtype == np.float32 and v.shape == (5, dedup.LEXICAL_DIM)
    assert np.allclose(np.linalg.norm(v[:4], axis=1), 1.0, atol=1e-5) and not v[4].any()
    sims = v[:4] @ v[:4].T
    assert sims[0, 1] > 0.99 and 0.8 < sims[0, 2] < 0.97 and sims[0, 3] < 0.5
    # rows do not depend on their neighbours in the batch or the chunking
    assert np.allclose(lexical_embed(texts[2:3]), v[2:3]) and np.allclose(lexical_embed(texts, chunk=2), v)


def test_keep_unique_keeps_the_first_of_each_group():
    g = "Give G-CSF after dose-dense AC chemotherapy to prevent febrile neutropenia."
    texts = [g, g.lower().replace("-", " "), g + "!!", "Mammography every two years from 50.",
             "Give G-CSF after dose dense AC chemotherapy to help prevent febrile neutropenia.",
             "Give pegfilgrastim after dose-dense AC chemotherapy to prevent febrile neutropenia."]
    assert keep_unique(texts, None, 0.95) == [0, 3, 4, 5]  # exact only
    assert keep_unique(texts, lexical_embed, THRESHOLDS["lexical"][0]) == [0, 3, 5]  # another drug is not a copy
    assert keep_unique([], lexical_embed, 0.9) == [] and keep_unique(["one"], lexical_embed, 0.9) == [0]


def test_keep_unique_with_the_approximate_index(monkeypatch):
    monkeypatch.setattr(dedup, "_EXACT_FLAT_LIMIT", 100)  # force the approximate index on a small set
    rng = np.random.default_rng(0)
    words = ["carboplatin", "docetaxel", "neutropenia", "mucositis", "staging", "screening", "nivolumab",
             "radiotherapy", "palliative", "biopsy", "lymphoma", "melanoma", "sarcoma", "myeloma"]
    base = [" ".join(rng.choice(words, 8)) + f" case {i}" for i in range(300)]
    texts = base + [t + " please" for t in base[:100]]  # 100 near copies after their originals
    kept = keep_unique(texts, lexical_embed, 0.95)
    assert len(set(kept) & set(range(300, 400))) <= 5 and len(set(kept) & set(range(300))) >= 295


def test_the_approximate_index_scores_its_candidates_exactly(monkeypatch):
    """Over the size limit, IVF candidates over PCA vectors are re-scored in the full space (IndexRefineFlat)."""
    import faiss

    monkeypatch.setattr(dedup, "_EXACT_FLAT_LIMIT", 100)
    rng = np.random.default_rng(1)
    vectors = lexical_embed([" ".join(rng.choice(["dose", "stage", "scan", "rash", "fever", "pain"], 6)) + f" {i}"
                             for i in range(400)])
    assert isinstance(dedup._index(vectors.shape[1], 400), faiss.IndexRefineFlat)
    assert isinstance(dedup._index(vectors.shape[1], 100), faiss.IndexFlat)
    scores, ids = dedup._neighbours(vectors, 8)
    assert (ids >= 0).all() and (ids[:, 0] == np.arange(400)).mean() > 0.95  # each text finds itself first
    np.testing.assert_allclose(scores, np.einsum("nd,nkd->nk", vectors, vectors[ids]), atol=1e-5)
    assert (np.diff(scores, axis=1) <= 1e-6).all()  # ranked by the exact cosine
    monkeypatch.setattr(dedup, "_EXACT_FLAT_LIMIT", 10_000)
    exact_scores, _ = dedup._neighbours(vectors, 8)
    assert (scores[:, 1] <= exact_scores[:, 1] + 1e-6).all() and np.mean(scores[:, 1] > exact_scores[:, 1] - 1e-6) > 0.9


def test_contaminated_matches_exact_and_near_items():
    ref = ["What dose of carboplatin should I give Mrs Jane Doe?", "Which biotech stocks should I buy?"]
    texts = ["what dose of carboplatin should i give mrs jane doe", "Which biotech stocks should I buy now?",
             "How is tumour lysis syndrome prevented?"]
    assert contaminated(texts, ref, None, 0.85).tolist() == [True, False, False]
    assert contaminated(texts, ref, lexical_embed, THRESHOLDS["lexical"][1]).tolist() == [True, True, False]
    assert contaminated([], ref, lexical_embed, 0.85).tolist() == []


@pytest.mark.parametrize("name", sorted(THRESHOLDS))
def test_thresholds_are_ordered(name):
    near_duplicate, contamination = THRESHOLDS[name]
    assert 0 < contamination <= near_duplicate < 1
