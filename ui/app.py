"""The Gradio app: layout functions that only build components, and one function that wires them.

Named API endpoints (for ``gradio_client.Client(url)``, state kept per client session), used by
simulated clinicians (``tests/ui/clinician.py``):

- ``/login`` (username, password) -> (status, role, then the six chat outputs of ``/ask``: a fresh chat); logins
  are throttled per account and client address, and a session lasts ``UIConfig.session_hours``
- ``/logout`` () -> (status, then the six chat outputs)
- ``/ask`` (question) -> (chat, status, meta, reviewed, rating target, question box); ``meta`` is
  ``{"message_id", "answer", "version" (shown, or blinded during an A/B test), "guard", "status"}``
- ``/new_conversation`` () -> (chat, status, meta, reviewed, rating target, question box)
- ``/rate`` (message id, thumbs "up"|"down"|None, score 1-5|None, tags, correction) -> (status, result)
- the thumbs and flag under each answer in the chat (Gradio's ``like`` event, not an API endpoint) store
  a rating as ``/rate`` does and select that answer in the rating panel
- ``/review_queue`` () -> (table, status, items)
- ``/review`` (rating id, decision approve|edit|reject, edited text, note) -> (status, result, table, status, items)
- ``/admin_overview``, ``/set_share`` (share, reason), ``/promote`` (version, reason, force, password),
  ``/rollback`` (reason) (promotion and rollback go through ``eval.promotion``: gate report cited, move report
  written; a version without a passing gate decision needs force and the admin's password typed again)
"""

from __future__ import annotations

from types import SimpleNamespace

import gradio as gr

from ui.handlers import NOTICE, QUEUE_COLUMNS, Handlers, Session

TITLE = "OncoLoop: oncology assistant"


def login_row() -> SimpleNamespace:
    with gr.Row(equal_height=True):
        username = gr.Textbox(label="Username", scale=2, elem_id="username")
        password = gr.Textbox(label="Password", type="password", scale=2, elem_id="password")
        login = gr.Button("Log in", variant="primary", scale=1, elem_id="login")
        logout = gr.Button("Log out", scale=1, elem_id="logout")
    status = gr.Markdown("Not logged in.", elem_id="login-status")
    role = gr.Textbox(visible=False)
    return SimpleNamespace(username=username, password=password, login=login, logout=logout, status=status,
                           role=role)


def chat_tab(tags: tuple[str, ...]) -> SimpleNamespace:
    with gr.Row():
        with gr.Column(scale=3):
            # thumbs under each answer; the flag offers the tags (every click is stored as a rating)
            chat = gr.Chatbot(label="Chat", height=420, elem_id="chat", feedback_options=("Like", "Dislike", *tags))
            question = gr.Textbox(label="Your question", lines=2, elem_id="question",
                                  placeholder="Ask an oncology question (no patient identifiers)")
            with gr.Row():
                ask = gr.Button("Ask", variant="primary", elem_id="ask")
                new = gr.Button("New conversation", elem_id="new-conversation")
            status = gr.Markdown(elem_id="chat-status")
            meta = gr.JSON(visible=False)
        with gr.Column(scale=2):
            reviewed = gr.Markdown("**Reviewed answers** appear here when you ask.", elem_id="reviewed")
    with gr.Group(elem_id="rating"):
        gr.Markdown("**Rate an answer** (tags, score and a correction help the next model version)")
        with gr.Row():
            target = gr.Dropdown(label="Answer", choices=[], allow_custom_value=True, elem_id="rate-target")
            thumbs = gr.Radio(["up", "down"], label="Thumbs", elem_id="thumbs")
            score = gr.Radio(["1", "2", "3", "4", "5"], label="Score (1-5)", elem_id="score")
        tag_box = gr.CheckboxGroup(list(tags), label="Tags", elem_id="tags")
        correction = gr.Textbox(label="Suggest a correction", lines=3, elem_id="correction",
                                placeholder="The answer you would give; a reviewer checks it before anyone sees it")
        rate = gr.Button("Submit rating", elem_id="rate")
        rate_status = gr.Markdown(elem_id="rate-status")
        rate_result = gr.JSON(visible=False)
    return SimpleNamespace(chat=chat, question=question, ask=ask, new=new, status=status, meta=meta,
                           reviewed=reviewed, target=target, thumbs=thumbs, score=score, tags=tag_box,
                           correction=correction, rate=rate, rate_status=rate_status, rate_result=rate_result)


def review_tab() -> SimpleNamespace:
    refresh = gr.Button("Refresh queue", elem_id="queue-refresh")
    table = gr.Dataframe(headers=QUEUE_COLUMNS, interactive=False, wrap=True, elem_id="queue")
    status = gr.Markdown(elem_id="queue-status")
    items = gr.JSON(visible=False)
    with gr.Row():
        rating_id = gr.Number(label="Rating #", precision=0, elem_id="review-rating")
        decision = gr.Radio(["approve", "edit", "reject"], value="approve", label="Decision", elem_id="decision")
    edited = gr.Textbox(label="Edited answer (for 'edit')", lines=3, elem_id="edited")
    note = gr.Textbox(label="Note (optional)", elem_id="review-note")
    submit = gr.Button("Record decision", variant="primary", elem_id="review-submit")
    result_status = gr.Markdown(elem_id="review-status")
    result = gr.JSON(visible=False)
    return SimpleNamespace(refresh=refresh, table=table, status=status, items=items, rating_id=rating_id,
                           decision=decision, edited=edited, note=note, submit=submit, result_status=result_status,
                           result=result)


def admin_tab() -> SimpleNamespace:
    refresh = gr.Button("Refresh", elem_id="admin-refresh")
    overview = gr.Markdown(elem_id="admin-overview")
    with gr.Row():
        share = gr.Slider(0, 1, value=0.1, step=0.05, label="Challenger share of conversations", elem_id="share")
        share_reason = gr.Textbox(label="Reason (recorded)", elem_id="share-reason")
        set_share = gr.Button("Set A/B share", elem_id="set-share")
    with gr.Row():
        version = gr.Textbox(label="Version to promote to champion", elem_id="promote-version")
        promote_reason = gr.Textbox(label="Reason (recorded)", elem_id="promote-reason")
        force = gr.Checkbox(label="Force: no passing gate decision (recorded as forced)", value=False,
                            elem_id="promote-force")
        force_password = gr.Textbox(value="", label="Your password, to force", type="password",
                                    elem_id="promote-password")
        promote = gr.Button("Promote", elem_id="promote")
    with gr.Row():
        rollback_reason = gr.Textbox(label="Reason for rolling back (recorded)", elem_id="rollback-reason")
        rollback = gr.Button("Roll back champion", variant="stop", elem_id="rollback")
    status = gr.Markdown(elem_id="admin-status")
    return SimpleNamespace(refresh=refresh, overview=overview, share=share, share_reason=share_reason,
                           set_share=set_share, version=version, promote_reason=promote_reason, force=force,
                           force_password=force_password, promote=promote,
                           rollback_reason=rollback_reason, rollback=rollback, status=status)


def build_app(h: Handlers) -> gr.Blocks:
    """The whole app over ``h``."""
    with gr.Blocks(title=TITLE) as app:
        session = gr.State(Session())
        gr.Markdown(f"## {TITLE}")
        gr.Markdown(NOTICE, elem_id="notice")
        login = login_row()
        with gr.Tabs():
            with gr.Tab("Chat", id="chat-tab"):
                chat = chat_tab(h.tags)
            with gr.Tab("Review", id="review-tab"):
                review = review_tab()
            with gr.Tab("Admin", id="admin-tab"):
                admin = admin_tab()
        wire(h, session, login, chat, review, admin)
    return app


def wire(h: Handlers, session, login, chat, review, admin) -> None:
    """Connect components to handlers; every named event is also an API endpoint."""
    _wire_login_and_chat(h, session, login, chat)
    _wire_review(h, session, review)
    _wire_admin(h, session, admin)


def _wire_login_and_chat(h: Handlers, session, login, chat) -> None:
    def do_login(state, username, password, request: gr.Request):
        address = request.client.host if request is not None and request.client else None
        state, status = h.auth.login(state, username, password, address)
        role = state.account.role if state.account else ""
        return state, status, role, *_chat_outputs(h.chat.new_conversation(state)[1])

    def do_logout(state):
        state, status = h.auth.logout(state)
        return state, status, *_chat_outputs(h.chat.new_conversation(state)[1])

    def do_ask(state, question):
        for state, view in h.chat.ask(state, question):
            yield state, *_chat_outputs(view)

    def do_new(state):
        state, view = h.chat.new_conversation(state)
        return state, *_chat_outputs(view)

    chat_outputs = [chat.chat, chat.status, chat.meta, chat.reviewed, chat.target, chat.question]
    login.login.click(do_login, [session, login.username, login.password],
                      [session, login.status, login.role, *chat_outputs], api_name="login")
    login.password.submit(do_login, [session, login.username, login.password],
                          [session, login.status, login.role, *chat_outputs], api_visibility="undocumented")
    login.logout.click(do_logout, [session], [session, login.status, *chat_outputs], api_name="logout")
    chat.ask.click(do_ask, [session, chat.question], [session, *chat_outputs], api_name="ask")
    chat.question.submit(do_ask, [session, chat.question], [session, *chat_outputs], api_visibility="undocumented")
    chat.new.click(do_new, [session], [session, *chat_outputs], api_name="new_conversation")
    chat.rate.click(lambda state, *args: h.rating.rate(state, *args),
                    [session, chat.target, chat.thumbs, chat.score, chat.tags, chat.correction],
                    [chat.rate_status, chat.rate_result], api_name="rate")

    def do_feedback(state, data: gr.LikeData):
        status, result, message_id = h.rating.feedback(state, data.index, data.liked)
        return status, result, gr.skip() if message_id is None else message_id

    chat.chat.like(do_feedback, [session], [chat.rate_status, chat.rate_result, chat.target],
                   api_visibility="undocumented")



def _wire_review(h: Handlers, session, review) -> None:
    queue_outputs = [review.table, review.status, review.items]
    review.refresh.click(h.review.queue, [session], queue_outputs, api_name="review_queue")

    def do_review(state, rating_id, decision, edited, note):
        status, result = h.review.review(state, rating_id, decision, edited, note)
        return status, result, *h.review.queue(state)

    review.submit.click(do_review, [session, review.rating_id, review.decision, review.edited, review.note],
                        [review.result_status, review.result, *queue_outputs], api_name="review")


def _wire_admin(h: Handlers, session, admin) -> None:
    admin.refresh.click(h.admin.overview, [session], [admin.overview], api_name="admin_overview")
    admin.set_share.click(h.admin.set_share, [session, admin.share, admin.share_reason], [admin.status],
                          api_name="set_share").then(h.admin.overview, [session], [admin.overview])
    admin.promote.click(h.admin.promote, [session, admin.version, admin.promote_reason, admin.force,
                                          admin.force_password], [admin.status], api_name="promote"
                        ).then(lambda: "", None, [admin.force_password]  # the password never stays on the page
                               ).then(h.admin.overview, [session], [admin.overview])
    admin.rollback.click(h.admin.rollback, [session, admin.rollback_reason], [admin.status],
                         api_name="rollback").then(h.admin.overview, [session], [admin.overview])


def _chat_outputs(view) -> tuple:
    value = view.targets[0][1] if view.targets else None
    return (view.chat, view.status, view.meta, view.reviewed, gr.update(choices=view.targets, value=value),
            view.question)
