"""The store on SQLite and PostgreSQL: accounts, chats, ratings, reviews, permissions, bad input."""

from __future__ import annotations

import pytest
from sqlalchemy import inspect, select, text
from sqlalchemy.exc import IntegrityError

from core.errors import OncoLoopError
from feedback.auth import Account
from feedback.db import Rating, User
from feedback.store import UI_QUESTION_MAX_CHARS, FeedbackStore, check_question


def test_migrations_create_feedback_and_registry_tables(store):
    tables = set(inspect(store.store.engine).get_table_names())
    assert {"users", "conversations", "messages", "ratings", "reviews", "store_settings",
            "model_versions", "aliases", "alias_moves", "alembic_version", "login_failures", "api_keys"} <= tables
    with store.store.engine.connect() as c:
        assert c.execute(text("SELECT version_num FROM alembic_version")).scalar() == "0005"
    assert {"context_reviews", "redacted_at"} <= {col["name"] for col in inspect(store.store.engine).get_columns("messages")}
    assert "forced" in {col["name"] for col in inspect(store.store.engine).get_columns("alias_moves")}
    FeedbackStore.open()  # upgrading again is a no-op


def test_passwords_are_argon2id_hashes_and_login_works(store, people):
    with store.session() as s:
        stored = s.scalar(select(User.password_hash).where(User.username == "carla"))
    assert stored.startswith("$argon2id$") and "carla-password" not in stored
    assert store.authenticate("carla", "carla-password") == people["clinician"]


@pytest.mark.parametrize("username,password", [("carla", "wrong-password"), ("nobody", "carla-password"),
                                               ("", ""), ("carla", "")])
def test_wrong_password_or_unknown_user_is_refused_alike(store, people, username, password):
    with pytest.raises(OncoLoopError, match="wrong username or password"):
        store.authenticate(username, password)


def test_disabled_user_cannot_log_in_or_review(store, people):
    store.set_disabled("rita")
    assert [u.disabled for u in store.list_users() if u.username == "rita"] == [True]
    with pytest.raises(OncoLoopError, match="disabled"):
        store.authenticate("rita", "rita-password")
    with pytest.raises(OncoLoopError, match="disabled"):
        store.review_queue(people["reviewer"])
    store.set_disabled("rita", False)
    assert store.authenticate("rita", "rita-password").role == "reviewer"


def test_bad_accounts_are_refused(store, people):
    with pytest.raises(OncoLoopError, match="already exists"):
        store.add_user("carla", "another-password", "clinician")
    with pytest.raises(OncoLoopError, match="unknown role"):
        store.add_user("zed", "long-enough-pw", "superuser")
    with pytest.raises(OncoLoopError, match="too short"):
        store.add_user("zed", "short", "clinician")
    with pytest.raises(OncoLoopError, match="not a valid username"):
        store.add_user("zed smith", "long-enough-pw", "clinician")
    with pytest.raises(OncoLoopError, match="no user"):
        store.set_disabled("ghost")
    assert [u.username for u in store.list_users()] == ["adam", "carla", "rita"]


def test_question_answer_and_guard_actions_are_recorded(store, people, answered):
    m = store.message(answered)
    assert (m.status, m.model_version, m.latency_ms, m.guard_actions) == ("answered", "v1", 120, ["preamble", "dosing_notice"])
    with pytest.raises(OncoLoopError, match="already has an answer"):
        store.record_answer(answered, "overwrite", "v2")
    assert store.message(answered).answer == "Adjuvant FOLFOX or CAPOX after resection."


def test_guard_actions_default_to_an_empty_list_and_must_be_strings(store, people):
    conv = store.start_conversation(people["clinician"])
    plain = store.record_question(people["clinician"], conv, "What is ECOG 2?")
    store.record_answer(plain, "Ambulatory, self-caring, unable to work.", "v1")
    assert store.message(plain).guard_actions == []
    pending = store.record_question(people["clinician"], conv, "And ECOG 3?")
    assert store.message(pending).guard_actions == []
    with pytest.raises(OncoLoopError, match="list of strings"):
        store.record_answer(pending, "Limited self-care.", "v1", guard_actions=[{"rule": "preamble"}])
    assert store.message(pending).answer is None


def test_failed_answer_keeps_the_question_unanswered(store, people):
    clinician = people["clinician"]
    conv = store.start_conversation(clinician)
    mid = store.record_question(clinician, conv, "Is the gateway up?")
    store.record_failure(mid, "gateway unreachable: connection refused", latency_ms=3000)
    [m] = store.messages(conv)
    assert (m.id, m.status, m.answer, m.error) == (mid, "failed", None, "gateway unreachable: connection refused")
    with pytest.raises(OncoLoopError, match="no answer yet"):
        store.rate(clinician, mid, thumbs=1)
    store.record_answer(mid, "Retried answer.", "v1")  # a retry may still answer it
    assert store.message(mid).status == "answered" and store.message(mid).error.startswith("gateway")


def test_question_limits(store, people):
    clinician = people["clinician"]
    conv = store.start_conversation(clinician)
    for empty in ("", "   \n"):
        with pytest.raises(OncoLoopError, match="empty"):
            store.record_question(clinician, conv, empty)
    long_question = "Describe the staging of this tumour. " * 540  # ~20,000 characters
    assert 19_000 < len(long_question) < 21_000
    mid = store.record_question(clinician, conv, long_question)  # the store keeps it ...
    assert store.message(mid).question == long_question.strip()
    with pytest.raises(OncoLoopError, match="limit is 4000"):  # ... the UI refuses it
        check_question(long_question, UI_QUESTION_MAX_CHARS)
    with pytest.raises(OncoLoopError, match="limit is 100000"):
        store.record_question(clinician, conv, "x" * 100_001)
    assert len(store.messages(conv)) == 1


def test_conversation_of_another_user_is_refused(store, people):
    conv = store.start_conversation(people["clinician"])
    with pytest.raises(OncoLoopError, match="not one of rita's"):
        store.record_question(people["reviewer"], conv, "Whose chat is this?")


def test_rating_values_are_checked(store, people, answered):
    c = people["clinician"]
    for kwargs, message in [({"thumbs": 2}, "thumbs"), ({"score": 6}, "1 to 5"), ({"score": 0}, "1 to 5"),
                            ({"score": True}, "1 to 5"), ({"tags": ["wrong"]}, "unknown tag"), ({}, "empty"),
                            ({"correction": "   "}, "empty"), ({"correction": "x" * 20_001}, "limit is 20000")]:
        with pytest.raises(OncoLoopError, match=message):
            store.rate(c, answered, **kwargs)
    with pytest.raises(OncoLoopError, match="no message 999"):
        store.rate(c, 999, thumbs=1)
    rid = store.rate(c, answered, thumbs=-1, score=2, tags=["outdated", "incomplete", "outdated"],
                     correction="Adjuvant FOLFOX or CAPOX; 3 months of CAPOX for low-risk disease.")
    with store.session() as s:
        r = s.get(Rating, rid)
        assert (r.thumbs, r.score, r.tags, r.user_id) == (-1, 2, ["incomplete", "outdated"], c.id)


def test_database_constraints_back_the_checks_and_errors_lose_nothing(store, people, answered):
    good = store.rate(people["clinician"], answered, score=5)
    with pytest.raises(IntegrityError):
        with store.session.begin() as s:  # bypass the API: the database itself refuses a score of 9
            s.add(Rating(message_id=answered, user_id=people["clinician"].id, score=9, tags=[]))
    assert store.counts()["ratings"] == 1
    with store.session() as s:
        assert s.get(Rating, good).score == 5


def test_review_flow_and_permissions(store, people, answered):
    clinician, reviewer, admin = people["clinician"], people["reviewer"], people["admin"]
    rid = store.rate(clinician, answered, thumbs=-1, tags=["incomplete"], correction="Adjuvant FOLFOX or CAPOX.")
    store.rate(clinician, answered, score=4)  # no correction: not queued
    with pytest.raises(OncoLoopError, match="may not review.*reviewer or admin"):
        store.review_queue(clinician)
    with pytest.raises(OncoLoopError, match="may not review"):
        store.review(clinician, rid, "approve")
    forged = Account(clinician.id, clinician.username, "admin")  # the role is re-read from the database
    with pytest.raises(OncoLoopError, match="may not review"):
        store.review(forged, rid, "approve")
    [item] = store.review_queue(reviewer)
    assert (item.rating_id, item.correction, item.tags, item.rater, item.guard_actions) == (
        rid, "Adjuvant FOLFOX or CAPOX.", ["incomplete"], "carla", ["preamble", "dosing_notice"])
    with pytest.raises(OncoLoopError, match="needs the edited answer"):
        store.review(reviewer, rid, "edit")
    with pytest.raises(OncoLoopError, match="unknown decision"):
        store.review(reviewer, rid, "maybe")
    with pytest.raises(OncoLoopError, match="no rating"):
        store.review(reviewer, 12345, "approve")
    assert store.approved_answers() == []
    store.review(reviewer, rid, "edit", edited_text="Adjuvant FOLFOX (6 months) or CAPOX (3-6 months).")
    assert store.review_queue(admin) == []
    [approved] = store.approved_answers()
    assert (approved.answer, approved.rating_id) == ("Adjuvant FOLFOX (6 months) or CAPOX (3-6 months).", rid)
    store.review(admin, rid, "reject", note="not supported by the guideline")  # the latest review counts
    assert store.approved_answers() == []


def test_permission_helper_for_the_ui(store, people):
    assert store.require(people["admin"], "promote") == people["admin"]
    for who in ("clinician", "reviewer"):
        with pytest.raises(OncoLoopError, match="may not promote.*admin"):
            store.require(people[who], "promote")
    assert people["reviewer"].can("review") and not people["reviewer"].can("rollback")


def test_feedback_facts_cover_ratings_and_latest_reviews(store, people, answered):
    import datetime as dt

    rid = store.rate(people["clinician"], answered, tags=["unsafe"], correction="Safer text.")
    store.review(people["reviewer"], rid, "approve")
    [m] = store.feedback_facts()
    assert (m.id, m.answer, [r.id for r in m.ratings], m.ratings[0].decision) == (answered, m.answer, [rid], "approve")
    future = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=1)
    assert store.feedback_facts(since=future) == []
    assert store.clinician_hash(people["clinician"].id) != store.clinician_hash(people["reviewer"].id)
    assert "carla" not in store.clinician_hash(people["clinician"].id)


def test_opening_the_store_again_keeps_this_process_seeing_other_writers(tmp_path):
    """A process that opens the store twice (the gateway: registry, then retrieval) must keep its SQLite locks.

    Re-creating an existing database file with a plain open()/close() drops every POSIX lock the process holds
    on it, SQLite's too; the next process to close its last connection then finds itself alone, checkpoints and
    deletes the WAL under the first one's connections, which from then on read a deleted file: the gateway
    never saw an alias move (a hot-swap that never came), and its writes would have gone nowhere."""
    import subprocess
    import sys

    from core.settings import get_settings
    from feedback.db import open_store
    from serve.registry import Registry
    from tests.helpers.gateway import REPO, add_version

    home = tmp_path / "home"
    for version in ("v1", "v2"):
        add_version(home, REPO / "assets" / "tiny-oncology-llama", version)
    settings = get_settings({"ONCOLOOP_HOME": str(home)})
    first = Registry(open_store(settings))
    first.set_alias("champion", "v1", "test", "first")
    assert first.aliases() == {"champion": "v1"}  # its connection stays open in the pool, as the gateway's does
    open_store(settings)  # the same process opens the store again
    def in_another_process(code: str) -> str:
        """Run ``code`` with ``s`` (the settings) and ``Registry`` defined; its stdout."""
        prelude = ("from core.settings import get_settings; from feedback.db import open_store; "
                   f"from serve.registry import Registry; s = get_settings({{'ONCOLOOP_HOME': {str(home)!r}}}); ")
        return subprocess.run([sys.executable, "-c", prelude + code], cwd=REPO, check=True, timeout=120,
                              capture_output=True, text=True).stdout.strip()

    # another process opens and closes the store (the last connection, if it can lock the file alone, deletes
    # the WAL), then opens it again and moves the alias
    in_another_process("open_store(s).engine.dispose(); r = Registry(open_store(s)); "
                       "r.set_alias('champion', 'v2', 'other', 'moved'); r.store.engine.dispose()")
    assert first.aliases() == {"champion": "v2"}
    assert (home / "oncoloop.db-wal").exists()  # the WAL this process reads is the one on disk
    first.set_alias("champion", "v1", "test", "back")  # and what it writes reaches the others
    assert in_another_process("print(Registry(open_store(s)).aliases()['champion'])") == "v1"
