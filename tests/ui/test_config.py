"""The UI's configs, command line and demo accounts; the reviewed-answers panel with MiniLM."""

from __future__ import annotations

import pytest

from core.config import load_config
from core.errors import OncoLoopError
from core.settings import get_settings
from feedback.store import FeedbackStore
from tests.conftest import REPO
from ui.__main__ import DEMO_ACCOUNTS, DEMO_FILE, ensure_demo_accounts, main
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


def test_demo_accounts_get_random_passwords_in_an_owner_only_file(store, tmp_path):
    created = ensure_demo_accounts(store, tmp_path)
    assert [u for u, _, _ in created] == [u for u, _ in DEMO_ACCOUNTS]
    assert ensure_demo_accounts(store, tmp_path) == []  # a later start reuses them
    passwords = {u: p for u, _, p in created}
    assert len(set(passwords.values())) == 3 and all(len(p) >= 16 for p in passwords.values())
    assert store.authenticate("admin", passwords["admin"]).role == "admin"
    with pytest.raises(OncoLoopError):
        store.authenticate("admin", "oncoloop-demo")  # the password the README once published
    saved = tmp_path / DEMO_FILE
    assert (saved.stat().st_mode & 0o777) == 0o600
    assert saved.read_text().splitlines() == [f"{u}\t{r}\t{p}" for u, r, p in created]
    other = FeedbackStore.open(get_settings({"ONCOLOOP_HOME": str(tmp_path / "other")}))
    assert ensure_demo_accounts(other, tmp_path / "other")[0][2] != passwords["clinician"]  # never shared


@pytest.mark.slow
def test_reviewed_panel_finds_paraphrases_with_minilm(store, accounts):
    from core.embed import embed
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
