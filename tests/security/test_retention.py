"""Retention: raw text past the period becomes its scrubbed form; nothing else is lost; cron-safe CLI."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest
from sqlalchemy import update

from core.config import load_config
from core.errors import OncoLoopError
from feedback import retention
from feedback.config import AccessConfig, load_access_config
from feedback.db import Message, Rating, Review
from tests.conftest import REPO
from tests.security.conftest import CORRECTION, QUESTION, shows_phi


def age(store, days: int, *tables) -> None:
    """Make every row of ``tables`` ``days`` days old."""
    then = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=days)
    with store.store.engine.begin() as c:
        for t in tables:
            c.execute(update(t).values(created_at=then))


@pytest.fixture
def history(store, people):
    """carla's question and answer with identifiers, her correction, rob's edit and note with them too."""
    conv = store.start_conversation(people["carla"])
    mid = store.record_question(people["carla"], conv, QUESTION)
    store.record_answer(mid, "Call Mrs Jane Doe on 07700 900123 and start antibiotics.", "v1")
    rid = store.rate(people["carla"], mid, thumbs=-1, score=2, tags=["incomplete"], correction=CORRECTION)
    review_id = store.review(people["rob"], rid, "edit", edited_text=CORRECTION, note="checked against MRN 4417823")
    return mid, rid, review_id


def test_old_raw_text_is_replaced_by_its_scrubbed_form_and_nothing_else_changes(store, people, history):
    mid, rid, review_id = history
    before = store.feedback_facts()
    age(store, 31, Message, Rating, Review)
    report = retention.apply_retention(store.store, 30)
    assert report.examined == {"messages": 1, "ratings": 1, "reviews": 1}
    assert report.changed == {"messages": 1, "ratings": 1, "reviews": 1}
    with store.session() as s:
        m, r, v = s.get(Message, mid), s.get(Rating, rid), s.get(Review, review_id)
        texts = [m.question, m.answer, r.correction, v.edited_text, v.note]
        assert all(x.redacted_at is not None for x in (m, r, v))
        kept = (m.model_version, m.conversation_id, r.thumbs, r.score, r.tags, v.decision, v.reviewer_id)
    assert not shows_phi(" ".join(texts)), texts
    assert "neutropenic fever after docetaxel" in texts[0] and "antibiotics within one hour" in texts[2]
    assert kept == ("v1", m.conversation_id, -1, 2, ["incomplete"], "edit", people["rob"].id)
    after = store.feedback_facts()  # the same rows, ratings and decisions: only text changed
    assert [(f.id, [(r.id, r.decision, r.thumbs) for r in f.ratings]) for f in after] == \
        [(f.id, [(r.id, r.decision, r.thumbs) for r in f.ratings]) for f in before]
    again = retention.apply_retention(store.store, 30)  # a second run (tomorrow's cron) skips them
    assert again.examined == {"messages": 0, "ratings": 0, "reviews": 0}


def test_young_rows_and_dry_runs_are_untouched(store, people, history, capsys):
    mid, rid, _ = history
    age(store, 10, Message, Rating, Review)
    assert retention.apply_retention(store.store, 30).examined == {"messages": 0, "ratings": 0, "reviews": 0}
    age(store, 40, Message, Rating, Review)
    assert retention.main(["--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("retention: would replace") and "messages: 1 row(s), 1 with identifiers" in out
    assert store.message(mid).question == QUESTION  # a dry run changed nothing
    assert retention.main(["--days", "45"]) == 0  # 40 days old: within a 45-day period
    assert "messages: 0 row(s)" in capsys.readouterr().out and store.message(mid).question == QUESTION
    assert retention.main([]) == 0  # the configured default: 30 days
    assert "retention: replaced" in capsys.readouterr().out and not shows_phi(store.message(mid).question)


def test_bad_periods_say_what_to_do(store, capsys, tmp_path, monkeypatch):
    assert retention.main(["--days", "0"]) == 2
    assert "at least 1" in capsys.readouterr().err
    with pytest.raises(OncoLoopError, match="at least 1"):
        retention.apply_retention(store.store, -5)
    bad = tmp_path / "access.yaml"
    bad.write_text("retention_days: soon\n")
    monkeypatch.setenv("ONCOLOOP_ACCESS_CONFIG", str(bad))
    assert retention.main([]) == 2
    assert "retention_days" in capsys.readouterr().err


def test_the_shipped_access_config_is_the_default_and_is_read(tmp_path, monkeypatch):
    shipped = load_config(AccessConfig, REPO / "configs" / "access" / "default.yaml")
    assert shipped == AccessConfig() and shipped.retention_days == 30
    assert dataclasses.asdict(shipped).keys() == dataclasses.asdict(AccessConfig()).keys()
    mine = tmp_path / "access.yaml"
    mine.write_text("retention_days: 7\naccount_max_failures: 3\n")
    monkeypatch.setenv("ONCOLOOP_ACCESS_CONFIG", str(mine))
    assert (load_access_config().retention_days, load_access_config().account_max_failures) == (7, 3)
