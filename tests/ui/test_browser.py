"""A clinician and a reviewer in headless Chromium (Playwright) against the real UI, gateway and tiny model."""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow]
TIMEOUT_MS = 120_000
QUESTION = "How is tumour lysis syndrome prevented?"
CORRECTION = "Hydrate well, give allopurinol or rasburicase, and monitor electrolytes."

# Records every text the chat shows, so the test can see the answer arrive in pieces.
WATCH_CHAT = """() => {
  window.__chatTexts = [];
  const chat = document.querySelector('#chat');
  new MutationObserver(() => window.__chatTexts.push(chat.innerText)).observe(
      chat, {subtree: true, childList: true, characterData: true});
}"""


def log_in(page, url, username, password):
    page.goto(url)
    page.locator("#username input, #username textarea").first.fill(username)
    page.locator("#password input").fill(password)
    page.locator("#login").click()


def test_clinician_asks_rates_corrects_and_reviewer_approves(chromium, ui_stack):
    url, store = ui_stack["ui"].url, ui_stack["store"]
    before = store.counts()
    context = chromium.new_context()
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(url)
    assert "does not replace clinical judgement" in page.locator("#notice").inner_text()

    # no login: a clear message, nothing stored
    page.locator("#question textarea").fill(QUESTION)
    page.locator("#ask").click()
    page.locator("#chat-status", has_text="log in first").wait_for()
    # wrong password, then the right one
    log_in(page, url, "carla", "not-her-password")
    page.locator("#login-status", has_text="wrong username or password").wait_for()
    page.locator("#password input").fill("carla-password")
    page.locator("#login").click()
    page.locator("#login-status", has_text="Logged in as carla").wait_for()
    # an empty question is refused in the page
    page.locator("#question textarea").fill("   ")
    page.locator("#ask").click()
    page.locator("#chat-status", has_text="the question is empty").wait_for()

    page.evaluate(WATCH_CHAT)
    page.locator("#question textarea").fill(QUESTION)
    page.locator("#ask").click()
    page.locator("#chat-status", has_text="by model version").wait_for()
    status = page.locator("#chat-status").inner_text()
    message = _last_message_of(store, "carla")
    assert message.status == "answered" and message.model_version == "v1"
    assert f"Answer #{message.id}" in status and "v1" in status  # no A/B test: the version is shown
    assert message.answer.strip() and message.answer.strip()[:8] in page.locator("#chat").inner_text()
    texts = page.evaluate("window.__chatTexts")
    partial = [t for t in texts if QUESTION in t and t.rstrip().endswith("…")]
    assert partial, f"the answer did not stream into the page: {texts[-5:]}"

    # a thumb under the answer is a rating at once, and selects the answer in the rating panel
    page.locator("#chat").get_by_role("button", name="Like", exact=True).last.click()
    page.locator("#rate-status", has_text=f"of answer #{message.id} saved (thumbs up)").wait_for()
    assert str(message.id) in page.locator("#rate-target input").input_value()

    # rate and correct the answer
    page.locator("#thumbs label", has_text="down").click()
    page.locator("#score label", has_text="2").click()
    page.locator("#tags label", has_text="incomplete").click()
    page.locator("#correction textarea").fill(CORRECTION)
    page.locator("#rate").click()
    page.locator("#rate-status", has_text="Thank you").wait_for()
    context.close()

    # a reviewer approves it in another session
    context = chromium.new_context()
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    log_in(page, url, "rita", "rita-password")
    page.locator("#login-status", has_text="Logged in as rita").wait_for()
    page.get_by_role("tab", name="Review").click()
    page.locator("#queue-refresh").click()
    page.locator("#queue", has_text=CORRECTION[:30]).wait_for()
    assert "preamble" in page.locator("#queue").inner_text()  # guard actions are shown to the reviewer
    [item] = store.review_queue(store.authenticate("rita", "rita-password"))
    page.locator("#review-rating input").fill(str(item.rating_id))
    page.locator("#decision label", has_text="approve").click()
    page.locator("#review-submit").click()
    page.locator("#review-status", has_text="approved").wait_for()
    context.close()

    # the database holds it all
    after = store.counts()
    assert after["messages"] - before["messages"] == 1
    assert after["ratings"] - before["ratings"] == 2 and after["reviews"] - before["reviews"] == 1
    assert (item.message_id, item.thumbs, item.score, item.tags, item.correction, item.model_version) == (
        message.id, -1, 2, ["incomplete"], CORRECTION, "v1")
    assert item.guard_actions == message.guard_actions
    approved = [a for a in store.approved_answers() if a.rating_id == item.rating_id]
    assert [(a.question, a.answer) for a in approved] == [(QUESTION, CORRECTION)]


def _last_message_of(store, username):
    from sqlalchemy import select

    from feedback.db import Conversation, Message, User

    with store.session() as s:
        last = s.scalar(select(Message.id).join(Conversation).join(User, Conversation.user_id == User.id)
                        .where(User.username == username).order_by(Message.id.desc()).limit(1))
    return store.message(last)
