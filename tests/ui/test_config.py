"""The UI's configs, command line and demo accounts; the reviewed-answers panel with MiniLM."""

from __future__ import annotations

import pytest

from finetune.config import load_config
from tests.conftest import REPO
from ui.__main__ import DEMO_ACCOUNTS, ensure_demo_accounts, main
from ui.config import UIConfig


def test_every_shipped_ui_config_loads():
    paths = sorted((REPO / "configs" / "ui").glob("*.yaml"))
    assert paths
    for path in paths:
        cfg = load_config(UIConfig, path)
        assert cfg.gateway_url.startswith("http") and cfg.reviewed_k == 3


def test_bad_command_lines_say_what_is_wrong(capsys, oncoloop_home):
    assert main(["embedder=bogus"]) == 2
    assert "error: embedder must be auto, minilm or lexical" in capsys.readouterr().err
    assert main(["max_tokens=many"]) == 2
    assert "error: config field 'max_tokens'" in capsys.readouterr().err


def test_demo_accounts_are_created_once(store):
    assert [u for u, _, _ in ensure_demo_accounts(store)] == [u for u, _, _ in DEMO_ACCOUNTS]
    assert ensure_demo_accounts(store) == []
    assert store.authenticate("clinician", "oncoloop-demo").role == "clinician"
    assert store.authenticate("admin", "oncoloop-demo").role == "admin"


@pytest.mark.slow
def test_reviewed_panel_finds_paraphrases_with_minilm(store, accounts):
    from finetune.embed import embed
    from ui.reviewed import ReviewedAnswers

    conv = store.start_conversation(accounts["clinician"])
    for question, correction in (("How is tumour lysis syndrome prevented?", "Hydration and allopurinol."),
                                 ("What is the dose of ondansetron for nausea?", "8 mg twice daily."),
                                 ("When is a mammogram recommended?", "Every two years from 50.")):
        mid = store.record_question(accounts["clinician"], conv, question)
        store.record_answer(mid, "An answer.", "v1")
        rid = store.rate(accounts["clinician"], mid, thumbs=-1, correction=correction)
        store.review(accounts["reviewer"], rid, "approve")
    panel = ReviewedAnswers(store, embed, k=3, min_similarity=0.3, refresh_s=60)
    found = panel.similar("What prevents TLS before chemotherapy?")
    assert found and found[0].answer.answer == "Hydration and allopurinol."
    assert all(a.similarity < found[0].similarity for a in found[1:])
