"""The UI's handlers without a browser: real store (SQLite), scripted gateway over real HTTP."""

from __future__ import annotations


from feedback.abtest import challenger_share, set_challenger_share, share_history
from core.process import free_port
from tests.helpers.gateway import record_gate
from tests.helpers.scripted_gateway import Reply, register_versions
from ui.config import UIConfig
from ui.handlers import BLINDED, ChatHandler, GatewayClient, Session


def logged_in(h, name="carla"):
    session, status = h.auth.login(Session(), name, f"{name}-password")
    assert session.account is not None, status
    return session


def ask(h, session, question):
    views = list(h.chat.ask(session, question))
    return views[-1][0], [v for _, v in views]


def test_login_and_wrong_password(handlers):
    session, status = handlers.auth.login(Session(), "carla", "carla-password")
    assert session.account.username == "carla" and "Logged in as **carla** (clinician)" in status
    for user, password in (("carla", "wrong-password"), ("nobody", "whatever-pass"), ("", "")):
        session, status = handlers.auth.login(Session(), user, password)
        assert session.account is None and status.startswith("**Error:** wrong username or password")


def test_nothing_is_stored_without_login(handlers, store):
    _, views = ask(handlers, Session(), "What is febrile neutropenia?")
    assert views[-1].status.startswith("**Error:** log in first")
    status, result = handlers.rating.rate(Session(), 1, thumbs="up")
    assert status.startswith("**Error:** log in first") and "error" in result
    assert handlers.review.queue(Session())[1].startswith("**Error:** log in first")
    assert handlers.admin.set_share(Session(), 0.2, "why").startswith("**Error:** log in first")
    assert store.counts()["messages"] == 0 and store.counts()["ratings"] == 0


def test_streamed_multi_turn_chat_is_stored_with_version_and_guard(handlers, store, scripted_gateway):
    scripted_gateway.replies = [Reply(guard=("preamble", "dosing_notice")), Reply(chunks=("Yes.",), version="v1")]
    session = logged_in(handlers)
    session, views = ask(handlers, session, "  How is grade 3 neutropenia managed?  ")
    assert views[0].status == "Answering…" and views[0].chat[-1]["content"].endswith("…")
    final = views[-1]
    assert final.meta["status"] == "answered" and final.meta["answer"] == "Hold the drug and check bloods."
    assert final.meta["version"] == "v1" and final.meta["guard"] == ["preamble", "dosing_notice"]
    assert "model version **v1**" in final.status and "`dosing_notice`" in final.status
    assert final.chat[-1] == {"role": "assistant", "content": "Hold the drug and check bloods."}
    assert final.targets == [(f"#{final.meta['message_id']} How is grade 3 neutropenia managed?",
                              final.meta["message_id"])]
    session, views = ask(handlers, session, "Restart at full dose?")
    stored = store.messages(session.conversation_id)
    assert [(m.question, m.answer, m.model_version, m.guard_actions) for m in stored] == [
        ("How is grade 3 neutropenia managed?", "Hold the drug and check bloods.", "v1", ["preamble", "dosing_notice"]),
        ("Restart at full dose?", "Yes.", "v1", ["preamble"])]
    assert all(m.latency_ms is not None for m in stored)
    first, second = scripted_gateway.requests
    # the same conversation key both times (A/B stickiness), and the second turn carries the first
    assert first["body"]["conversation_id"] == second["body"]["conversation_id"] == session.conversation_key
    assert first["body"]["stream"] is True and first["body"]["model"] == "champion"
    assert [m["content"] for m in second["body"]["messages"]] == [
        "How is grade 3 neutropenia managed?", "Hold the drug and check bloods.", "Restart at full dose?"]


def test_empty_and_overlong_questions_are_refused_and_kept_in_the_box(handlers, store):
    session = logged_in(handlers)
    for question, message in (("   ", "the question is empty"), ("x" * 20_000, "the question has 20000 characters")):
        _, views = ask(handlers, session, question)
        assert len(views) == 1 and views[0].status.startswith(f"**Error:** {message}")
        assert views[0].question == question  # the text stays so it can be shortened
    assert store.counts()["messages"] == 0


def test_gateway_down_keeps_the_question_as_unanswered(store, accounts):
    cfg = UIConfig(gateway_url=f"http://127.0.0.1:{free_port()}", max_retries=0, request_timeout_s=5)
    from feedback.dedup import lexical_embed
    from ui.handlers import Handlers

    h = Handlers.create(cfg, store, embed=lexical_embed)
    session, views = ask(h, logged_in(h), "What is the dose of G-CSF?")
    assert views[-1].status.startswith("**Error:** the assistant cannot be reached")
    assert "your question is saved" in views[-1].status
    [m] = store.messages(session.conversation_id)
    assert m.status == "failed" and m.answer is None and "cannot be reached" in m.error
    assert views[-1].targets == []  # nothing to rate


def test_refused_and_broken_streams_are_stored_as_failures(handlers, store, scripted_gateway):
    scripted_gateway.replies = [Reply(status=503), Reply(break_after=1)]
    session = logged_in(handlers)
    session, views = ask(handlers, session, "First question?")
    assert "refused the question (503" in views[-1].status and "Try again" in views[-1].status
    session, views = ask(handlers, session, "Second question?")
    assert views[-1].status.startswith("**Error:** the answer broke off")
    assert [(m.status, m.answer) for m in store.messages(session.conversation_id)] == [
        ("failed", None), ("failed", None)]


def test_a_page_closed_mid_answer_leaves_the_question_marked(handlers, store):
    answers = handlers.chat.ask(logged_in(handlers), "What is ECOG 3?")
    session, view = next(answers)
    assert view.meta["status"] == "pending"
    answers.close()  # what Gradio does when the browser goes away
    [m] = store.messages(session.conversation_id)
    assert m.status == "failed" and m.error == "the page was closed before the answer finished"


def test_version_is_blinded_while_an_ab_test_runs_but_always_stored(handlers, store, scripted_gateway):
    scripted_gateway.routes = {"champion": "v1", "challenger": "v2"}
    scripted_gateway.replies = [Reply(version="v1"), Reply(version="v2", alias="challenger"), Reply(version="v1")]
    session = logged_in(handlers)
    session, views = ask(handlers, session, "Q one?")
    assert views[-1].meta["version"] == BLINDED and "v1" not in views[-1].status
    session, views = ask(handlers, session, "Q two?")
    assert views[-1].meta["version"] == BLINDED
    set_challenger_share(store.store, 0, "adam", "A/B finished")
    session, views = ask(handlers, session, "Q three?")
    assert views[-1].meta["version"] == "v1"
    assert [m.model_version for m in store.messages(session.conversation_id)] == ["v1", "v2", "v1"]
    assert _conversation(store, session.conversation_id) == ("champion", "v1")  # the arm of its first answer
    session, views = ask(handlers, Session(account=session.account, expires_at=session.expires_at),
                         "Q four?")  # a new conversation
    assert _conversation(store, session.conversation_id) == ("champion", "v1")


def test_ab_status_without_challenger_is_not_blinded(store, scripted_gateway):
    h = ChatHandler(store, GatewayClient(UIConfig(gateway_url=scripted_gateway.url, ab_status_ttl_s=0)), None,
                    UIConfig())
    assert h.ab_running() is False
    scripted_gateway.routes = {"champion": "v1", "challenger": "v2"}
    assert h.ab_running() is True
    scripted_gateway.challenger_share = 0.0  # a gateway that reports its share is believed
    assert h.ab_running() is False and h.ab_running("challenger") is True
    scripted_gateway.challenger_share = 0.2
    assert h.ab_running() is True


def test_rating_stores_thumbs_score_tags_and_correction(handlers, store):
    session, views = ask(handlers, logged_in(handlers), "What is ECOG 2?")
    mid = views[-1].meta["message_id"]
    status, result = handlers.rating.rate(session, str(mid), "down", "2", ["incorrect", "outdated"],
                                          "  Ambulatory, self-care, no work; up >50% of waking hours.  ")
    assert status.startswith(f"Thank you: rating #{result['rating_id']} of answer #{mid} saved")
    status, result2 = handlers.rating.rate(session, mid, "up", 5)
    queue = store.review_queue(store.authenticate("rita", "rita-password"))
    assert [(q.rating_id, q.tags, q.thumbs, q.score, q.correction) for q in queue] == [
        (result["rating_id"], ["incorrect", "outdated"], -1, 2,
         "Ambulatory, self-care, no work; up >50% of waking hours.")]
    assert store.counts()["ratings"] == 2 and "rating_id" in result2


def test_thumbs_and_flags_under_an_answer_are_ratings(handlers, store):
    session, _ = ask(handlers, logged_in(handlers), "What is ECOG 2?")
    session, views = ask(handlers, session, "What is ECOG 3?")
    first, second = session.turns[0].message_id, session.turns[1].message_id
    # the chat shows question, answer, question, answer: index 3 is the second answer
    status, result, target = handlers.rating.feedback(session, 3, False)
    assert target == second and status.startswith(f"Thank you: rating #{result['rating_id']} of answer #{second}")
    status, result, target = handlers.rating.feedback(session, 1, "unsafe")
    assert target == first and "rating_id" in result
    handlers.rating.feedback(session, [1, None], True)  # Gradio may send the index as a pair
    status, result, target = handlers.rating.feedback(session, 1, "")  # a click taken back
    assert "stays on record" in status and target == first
    for index, liked in ((0, True), (5, True), (-1, True), (None, True)):
        status, result, target = handlers.rating.feedback(session, index, liked)
        assert status.startswith("**Error:**") and target is None, (index, status)
    ratings = {(r.message_id, r.thumbs, tuple(r.tags)) for r in _ratings(store)}
    assert ratings == {(second, -1, ()), (first, None, ("unsafe",)), (first, 1, ())}
    other = logged_in(handlers, "rita")  # another session has no such answer
    assert handlers.rating.feedback(other, 1, True)[0].startswith("**Error:**")


def _conversation(store, conversation_id):
    from feedback.db import Conversation

    with store.session() as s:
        c = s.get(Conversation, conversation_id)
        return c.arm, c.model_version


def _ratings(store):
    from sqlalchemy import select

    from feedback.db import Rating

    with store.session() as s:
        return list(s.scalars(select(Rating)))


def test_bad_ratings_say_what_to_do(handlers, store):
    session, views = ask(handlers, logged_in(handlers), "What is ECOG 2?")
    mid = views[-1].meta["message_id"]
    cases = [((None,), "choose the answer to rate"), ((mid + 99, "up"), "not one of this chat's answers"),
             ((mid,), "the rating is empty"), ((mid, "sideways"), "thumbs must be 'up' or 'down'"),
             ((mid, None, "7"), "the score must be a whole number from 1 to 5"),
             ((mid, None, None, ["wrong"]), "unknown tag"), ((mid, None, None, [], "x" * 20_001), "the correction has")]
    for args, message in cases:
        status, result = handlers.rating.rate(session, *args)
        assert status.startswith("**Error:**") and message in status, (args, status)
    other = logged_in(handlers, "rita")  # another user's session cannot rate carla's answer
    assert "not one of this chat's answers" in handlers.rating.rate(other, mid, "up")[0]
    assert store.counts()["ratings"] == 0


def test_review_queue_shows_guard_actions_and_approval_feeds_the_reviewed_panel(handlers, store, scripted_gateway):
    scripted_gateway.replies = [Reply(guard=("preamble", "urgent_notice:spinal_cord_compression"))]
    carla = logged_in(handlers)
    carla, views = ask(handlers, carla, "What are the red flags of spinal cord compression?")
    mid = views[-1].meta["message_id"]
    _, rated = handlers.rating.rate(carla, mid, "down", None, ["incomplete"], "Back pain plus weakness: urgent MRI.")
    assert handlers.review.queue(carla)[1].startswith("**Error:** carla is a clinician and may not review")
    rita = logged_in(handlers, "rita")
    rows, status, items = handlers.review.queue(rita)
    assert status == "1 correction(s) waiting." and rows[0][0] == rated["rating_id"]
    assert items[0]["guard_actions"] == ["preamble", "urgent_notice:spinal_cord_compression"]
    assert "urgent_notice:spinal_cord_compression" in rows[0][6]
    assert handlers.review.review(rita, rated["rating_id"], "edit", "")[0].startswith("**Error:** an edit needs")
    status, result = handlers.review.review(rita, float(rated["rating_id"]), "approve", note="good")
    assert status.startswith(f"Review #{result['review_id']}: rating #{rated['rating_id']} approved")
    assert handlers.review.queue(rita)[1] == "The queue is empty."
    # a colleague asking a similar question sees the approved correction before any retraining
    _, views = ask(handlers, logged_in(handlers, "adam"), "What are the red flags of spinal cord compression?")
    assert "Back pain plus weakness: urgent MRI." in views[0].reviewed and "similarity 1.00" in views[0].reviewed
    _, views = ask(handlers, logged_in(handlers, "adam"), "Which antiemetic for cisplatin?")
    assert "Back pain" not in views[-1].reviewed


def test_reject_and_edit(handlers, store):
    carla, views = ask(handlers, logged_in(handlers), "Q?")
    mid = views[-1].meta["message_id"]
    ids = [handlers.rating.rate(carla, mid, None, None, [], f"Correction {i}.")[1]["rating_id"] for i in range(2)]
    rita = logged_in(handlers, "rita")
    assert "rejected" in handlers.review.review(rita, ids[0], "reject")[0]
    assert "edited" in handlers.review.review(rita, ids[1], "edit", "Reviewer's better text.")[0]
    assert [a.answer for a in store.approved_answers()] == ["Reviewer's better text."]
    assert handlers.review.review(rita, 999, "approve")[0].startswith("**Error:** no rating 999")


def test_disabled_account_stops_at_once(handlers, store):
    session = logged_in(handlers)
    store.set_disabled("carla")
    _, views = ask(handlers, session, "Q?")
    assert "disabled" in views[-1].status and store.counts()["messages"] == 0


def test_admin_sets_share_promotes_and_rolls_back_with_reasons(handlers, store, oncoloop_home):
    registry = register_versions(store, oncoloop_home)
    record_gate(oncoloop_home, "v2")  # v2 passed its gate: an admin promotes it without force
    carla, adam = logged_in(handlers), logged_in(handlers, "adam")
    assert "may not promote" in handlers.admin.promote(carla, "v2", "better")
    assert "may not ab share" in handlers.admin.set_share(carla, 0.5, "why")
    assert "needs a reason" in handlers.admin.set_share(adam, 0.5, " ")
    assert "between 0 and 1" in handlers.admin.set_share(adam, 1.5, "too much")
    assert handlers.admin.set_share(adam, 0.25, "start A/B") == "Challenger share set to 25% (reason recorded)."
    assert challenger_share(store.store) == 0.25
    assert [(c.share, c.actor, c.reason) for c in share_history(store.store)] == [(0.25, "adam", "start A/B")]
    assert "needs a reason" in handlers.admin.promote(adam, "v2", "")
    assert "unknown model or version 'v9'" in handlers.admin.promote(adam, "v9", "typo")
    assert handlers.admin.promote(adam, "v2", "won the gate") == \
        "Promoted: champion v1 → v2 (reason and report recorded)."
    assert "needs a reason" in handlers.admin.rollback(adam, "")
    assert handlers.admin.rollback(adam, "complaints") == \
        "Rolled back: champion v2 → v1 (reason and report recorded)."
    moves = registry.history("champion")
    assert [(m.to_version, m.actor, m.reason) for m in moves[1:]] == [
        ("v2", "adam", "won the gate"), ("v1", "adam", "complaints")]
    assert all(m.report and m.report.endswith("report.html") for m in moves[1:])
    overview = handlers.admin.overview(adam)
    assert "champion → `v1`" in overview and "25% (set by adam: start A/B)" in overview
