"""What the UI does, as plain classes testable without a browser.

Each handler takes the browser session's :class:`Session` (Gradio keeps one per tab) and returns
plain values: Markdown strings, chat messages, table rows. An error a user can cause never escapes
as an exception: it comes back as a message for the page (``**Error:** ...``), and whatever was
already stored stays stored (a question whose answer failed is kept, unanswered, with the error).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from core.errors import OncoLoopError
from feedback.abtest import challenger_share, current_share, set_challenger_share
from feedback.auth import Account
from feedback.db import TAGS
from feedback.scrub import scrub
from feedback.store import UI_QUESTION_MAX_CHARS, FeedbackStore, check_question
from serve.registry import Registry
from ui.config import UIConfig
from ui.gateway import ContextTooLong, GatewayClient
from ui.reviewed import ReviewedAnswers, render

NOTICE = ("**OncoLoop supports clinicians' decisions; it does not replace clinical judgement.** "
          "Check every answer against current guidelines and the patient in front of you. "
          "Do not enter names, record numbers or other patient identifiers.")
BLINDED = "blinded (A/B test running)"
THUMBS = {"up": 1, "down": -1}
STREAM_UPDATE_S = 0.1  # how often a streaming answer is pushed to the page


def error(e: Exception | str) -> str:
    """A message for the page.

    >>> error(OncoLoopError("the question is empty; type an oncology question."))
    '**Error:** the question is empty; type an oncology question.'
    """
    return f"**Error:** {e}"


@dataclass
class Turn:
    """One question of this chat, as the page shows it."""

    message_id: int
    question: str
    answer: str | None = None
    version_shown: str | None = None
    guard: list[str] = field(default_factory=list)
    error: str | None = None
    partial: str | None = None  # the answer so far, while it streams


@dataclass
class Session:
    """One browser tab's state: who is logged in until when, and the chat so far.

    Gradio keeps it on the server (``gr.State``); a client can neither read nor forge it.
    """

    account: Account | None = None
    conversation_id: int | None = None
    turns: list[Turn] = field(default_factory=list)
    expires_at: float = 0.0  # time.monotonic() after which the login no longer counts (0: expired)

    @property
    def conversation_key(self) -> str:
        """What keeps this chat on one model version in the gateway's A/B split."""
        return f"ui-conversation-{self.conversation_id}"


@dataclass
class ChatView:
    """What the chat tab shows after an update."""

    chat: list[dict]  # Chatbot messages
    status: str
    meta: dict  # message_id, answer, version (as shown), guard, status: what the API returns
    reviewed: str
    targets: list[tuple[str, int]]  # (label, message id) of answers that can be rated
    question: str  # what stays in the question box (kept when it was refused)


def chat_messages(turns: list[Turn]) -> list[dict]:
    """Chatbot messages for the turns; a failed turn shows why it has no answer.

    >>> [m["content"] for m in chat_messages([Turn(1, "Q?", "A.", "v1"), Turn(2, "Q2?", error="down")])]
    ['Q?', 'A.', 'Q2?', '(no answer: down)']
    """
    out = []
    for t in turns:
        out.append({"role": "user", "content": t.question})
        if t.answer is not None:
            out.append({"role": "assistant", "content": t.answer or "(empty answer)"})
        elif t.error:
            out.append({"role": "assistant", "content": f"(no answer: {t.error})"})
        else:
            out.append({"role": "assistant", "content": (t.partial or "") + "…"})
    return out


def rating_targets(turns: list[Turn]) -> list[tuple[str, int]]:
    """Dropdown choices: the answered turns, newest first.

    >>> rating_targets([Turn(3, "What is ECOG 1?", "A", "v1"), Turn(4, "Q", error="x")])
    [('#3 What is ECOG 1?', 3)]
    """
    return [(f"#{t.message_id} {t.question[:60]}", t.message_id) for t in reversed(turns) if t.answer is not None]


class AuthHandler:
    """Log in and out against the store's accounts (argon2id hashes, throttled per account and address)."""

    def __init__(self, store: FeedbackStore, session_hours: float = 12.0):
        if session_hours <= 0:
            raise OncoLoopError(f"session_hours must be above 0, not {session_hours}.")
        self.store, self.session_hours = store, session_hours

    def login(self, session: Session, username: str, password: str, address: str | None = None
              ) -> tuple[Session, str]:
        """A new session for the account (``address``: the client's, for the lockout per address)."""
        try:
            account = self.store.authenticate((username or "").strip(), password or "", address)
        except OncoLoopError as e:
            return Session(), error(e)
        fresh = Session(account=account, expires_at=time.monotonic() + self.session_hours * 3600)
        return fresh, (f"Logged in as **{account.username}** ({account.role}) for {self.session_hours:g} h; "
                       "log out when you leave this computer.")

    def logout(self, session: Session) -> tuple[Session, str]:
        return Session(), "Logged out."


def current(store: FeedbackStore, session: Session, action: str) -> Account:
    """The session's account, checked again against the store (disabled accounts stop at once).

    Raises:
        OncoLoopError: not logged in, disabled, or not allowed to do ``action``.
    """
    if session.account is None:
        raise OncoLoopError("log in first (username and password above); nothing was stored.")
    if time.monotonic() >= session.expires_at:
        session.account, session.expires_at = None, 0.0
        raise OncoLoopError("your session has expired; log in again (nothing was stored).")
    return store.require(session.account, action)


class ChatHandler:
    """Ask the gateway, streaming; store the question first, then the answer or the failure."""

    def __init__(self, store: FeedbackStore, gateway: GatewayClient, reviewed: ReviewedAnswers, cfg: UIConfig):
        self.store, self.gateway, self.reviewed, self.cfg = store, gateway, reviewed, cfg

    def new_conversation(self, session: Session) -> tuple[Session, ChatView]:
        fresh = Session(account=session.account, expires_at=session.expires_at)  # the login's expiry stays
        return fresh, self._view(fresh, "New conversation.", {}, "", "")

    def ab_running(self, alias: str | None = None) -> bool:
        """Whether answers must be blinded: a challenger is served and its share is not set to 0."""
        if alias == "challenger":
            return True
        routes, served_share = self.gateway.status()
        if routes is None:
            return True  # cannot tell: blind rather than unblind
        if "challenger" not in routes:
            return False
        if served_share is not None:  # the gateway says what it applies
            return served_share > 0
        share = challenger_share(self.store.store)
        return share is None or share > 0  # None: the gateway's own config share (> 0 by default)

    def ask(self, session: Session, question: str) -> Iterator[tuple[Session, ChatView]]:
        """Stream the answer to ``question``; yields the session and the page after each update."""
        try:
            account = current(self.store, session, "ask")
            text = check_question(question, UI_QUESTION_MAX_CHARS)
            if session.conversation_id is None:
                session.conversation_id = self.store.start_conversation(account)
            message_id = self.store.record_question(account, session.conversation_id, text)
        except OncoLoopError as e:
            yield session, self._view(session, error(e), {"status": "refused", "error": str(e)}, "", question)
            return
        turn = Turn(message_id, text)
        history = self._history(session)
        session.turns.append(turn)
        reviewed = self._reviewed(text)
        started, pushed, answer = time.monotonic(), 0.0, None
        try:
            yield session, self._view(session, "Answering…", {"message_id": message_id, "status": "pending"},
                                      reviewed, "")
            while True:
                try:
                    for answer in self.gateway.stream(history + [{"role": "user", "content": text}],
                                                      session.conversation_key):
                        if time.monotonic() - pushed >= STREAM_UPDATE_S and not answer.finished:
                            pushed, turn.partial = time.monotonic(), answer.text
                            yield session, self._view(session, "Answering…", {"message_id": message_id,
                                                                             "status": "streaming"}, reviewed, "")
                    break
                except ContextTooLong:
                    if not history:
                        raise
                    history = history[2:]  # drop the oldest turn and ask again
        except GeneratorExit:  # the page went away mid-answer: the question stays, marked why
            self.store.record_failure(message_id, "the page was closed before the answer finished",
                                      int((time.monotonic() - started) * 1000))
            raise
        except Exception as e:  # noqa: BLE001 - whatever broke, the stored question is marked, never lost
            message = str(e) if isinstance(e, OncoLoopError) else \
                f"an unexpected error ({type(e).__name__}); your question is saved. Ask again or tell your admin."
            turn.error, turn.partial = message, None
            self.store.record_failure(message_id, message, int((time.monotonic() - started) * 1000))
            yield session, self._view(session, error(message), {"message_id": message_id, "status": "failed",
                                                                "error": message}, reviewed, "")
            return
        latency = int((time.monotonic() - started) * 1000)
        version = answer.version or "unknown"
        self.store.record_answer(message_id, answer.text, version, latency, answer.guard, answer.context)
        if answer.alias and not any(t.answer is not None for t in session.turns):  # the conversation's first answer
            self.store.assign_conversation(session.conversation_id, answer.alias, version)  # its A/B arm
        turn.answer, turn.guard, turn.partial = answer.text, answer.guard, None
        turn.version_shown = BLINDED if self.ab_running(answer.alias) else version
        meta = {"message_id": message_id, "answer": answer.text, "version": turn.version_shown,
                "guard": answer.guard, "latency_ms": latency, "status": "answered"}
        yield session, self._view(session, self._answered(turn, latency), meta, reviewed, "")

    def _history(self, session: Session) -> list[dict]:
        answered = [t for t in session.turns if t.answer is not None][-self.cfg.history_turns:] \
            if self.cfg.history_turns > 0 else []
        return [m for t in answered for m in ({"role": "user", "content": t.question},
                                               {"role": "assistant", "content": t.answer})]

    def _reviewed(self, question: str) -> str:
        try:
            return render(self.reviewed.similar(question))
        except Exception as e:  # noqa: BLE001 - the panel is a help; the answer must come regardless
            return f"**Reviewed answers** are unavailable right now ({type(e).__name__})."

    @staticmethod
    def _answered(turn: Turn, latency_ms: int) -> str:
        line = f"Answer #{turn.message_id} by model version **{turn.version_shown}** in {latency_ms / 1000:.1f} s."
        actions = [a for a in turn.guard if a != "preamble"]
        if actions:
            line += " Safety guard: " + ", ".join(f"`{a}`" for a in actions) + "."
        return line + " Rate it with the thumbs or the flag under the answer, or below."

    @staticmethod
    def _view(session: Session, status: str, meta: dict, reviewed: str, question: str) -> ChatView:
        return ChatView(chat_messages(session.turns), status, meta, reviewed, rating_targets(session.turns),
                        question)


def parse_thumbs(value) -> int | None:
    """``"up"``/``"down"`` (or 1/-1) from the page or the API as +1/-1; None for no choice.

    >>> parse_thumbs("up"), parse_thumbs("down"), parse_thumbs(None), parse_thumbs(-1)
    (1, -1, None, -1)
    """
    if value in (None, "", "none"):
        return None
    if value in THUMBS:
        return THUMBS[value]
    if value in (1, -1, "1", "-1"):
        return int(value)
    raise OncoLoopError(f"thumbs must be 'up' or 'down', not {value!r}.")


def parse_score(value) -> int | None:
    """A 1-5 score from the page ("4") or the API (4); None for no choice.

    >>> parse_score("4"), parse_score(None), parse_score(5.0)
    (4, None, 5)
    """
    if value in (None, ""):
        return None
    try:
        score = float(value)
    except (TypeError, ValueError):
        raise OncoLoopError(f"the score must be a whole number from 1 to 5, not {value!r}.") from None
    if score != int(score) or not 1 <= score <= 5:
        raise OncoLoopError(f"the score must be a whole number from 1 to 5, not {value!r}.")
    return int(score)


class RatingHandler:
    """Store a clinician's thumbs, score, tags and correction of one of their answers."""

    def __init__(self, store: FeedbackStore):
        self.store = store

    def rate(self, session: Session, message_id, thumbs=None, score=None, tags=(), correction: str | None = None
             ) -> tuple[str, dict]:
        """Returns the page's message and, for the API, ``{"rating_id": ...}`` or ``{"error": ...}``."""
        try:
            account = current(self.store, session, "rate")
            if message_id in (None, ""):
                raise OncoLoopError("choose the answer to rate; ask a question first.")
            try:
                mid = int(message_id)
            except (TypeError, ValueError):
                raise OncoLoopError(f"{message_id!r} is not an answer of this chat; choose one from the list.") \
                    from None
            if mid not in {t.message_id for t in session.turns if t.answer is not None}:
                raise OncoLoopError(f"answer #{mid} is not one of this chat's answers; choose one from the list.")
            tags = list(tags or [])
            rating_id = self.store.rate(account, mid, parse_thumbs(thumbs), parse_score(score), tags,
                                        correction)
        except OncoLoopError as e:
            return error(e), {"error": str(e)}
        parts = [p for p in (f"thumbs {thumbs}" if thumbs else "", f"score {score}" if score else "",
                             "tags " + ", ".join(tags) if tags else "",
                             "a correction for the reviewers" if (correction or "").strip() else "") if p]
        return f"Thank you: rating #{rating_id} of answer #{mid} saved ({'; '.join(parts)}).", \
            {"rating_id": rating_id, "message_id": mid}

    def feedback(self, session: Session, index, liked) -> tuple[str, dict, int | None]:
        """A click under an answer in the chat: Like is thumbs up, Dislike thumbs down, a flag is that tag.

        ``index`` is the message's place in the chat (a question and its answer per turn) and ``liked``
        what Gradio's ``LikeData`` says: True, False, a flag option, or "" when the click took a choice
        back. Ratings are a record: a choice taken back stays stored, and a later click adds a rating.
        Returns the page's message, the API result and the answer to select in the rating panel.
        """
        try:
            position = index[0] if isinstance(index, (list, tuple)) else index
            turn = session.turns[int(position) // 2] if isinstance(position, int) and position >= 0 else None
            if turn is None or position % 2 == 0 or turn.answer is None:
                raise OncoLoopError("rate an answer, not a question or an unanswered turn.")
            if liked == "":
                return (f"Your earlier rating of answer #{turn.message_id} stays on record; rate it again to "
                        "change your verdict.", {"message_id": turn.message_id}, turn.message_id)
            thumbs = "up" if liked is True else "down" if liked is False else None
            tags = [] if thumbs else [str(liked)]
        except (OncoLoopError, IndexError) as e:
            message = str(e) if isinstance(e, OncoLoopError) else "that message is no longer in this chat."
            return error(message), {"error": message}, None
        status, result = self.rate(session, turn.message_id, thumbs, None, tags)
        if "rating_id" in result:
            status += " Add a score, more tags or a correction below."
        return status, result, turn.message_id


QUEUE_COLUMNS = ["rating", "question", "answer", "correction", "tags", "version", "guard actions", "rater"]


class ReviewHandler:
    """The reviewer's queue of corrections: approve, edit (approve a better text) or reject."""

    def __init__(self, store: FeedbackStore, reviewed: ReviewedAnswers):
        self.store, self.reviewed = store, reviewed

    def queue(self, session: Session) -> tuple[list[list], str, list[dict]]:
        """Table rows, a status line, and the items as dicts (for the API)."""
        try:
            items = self.store.review_queue(current(self.store, session, "review"))
        except OncoLoopError as e:
            return [], error(e), []
        rows = [[i.rating_id, i.question, i.answer or "", i.correction, ", ".join(i.tags), i.model_version or "",
                 ", ".join(i.guard_actions) or "none", i.rater] for i in items]
        data = [{"rating_id": i.rating_id, "message_id": i.message_id, "question": i.question, "answer": i.answer,
                 "correction": i.correction, "tags": i.tags, "model_version": i.model_version,
                 "guard_actions": i.guard_actions, "rater": i.rater} for i in items]
        status = f"{len(items)} correction(s) waiting." if items else "The queue is empty."
        return rows, status, data

    def review(self, session: Session, rating_id, decision: str, edited_text: str | None = None,
               note: str | None = None) -> tuple[str, dict]:
        """Record a decision; an approval or edit updates the reviewed-answers panel at once."""
        try:
            account = current(self.store, session, "review")
            if rating_id in (None, ""):
                raise OncoLoopError("choose a correction from the queue (its rating number) first.")
            try:
                rid = int(float(rating_id))
            except (TypeError, ValueError):
                raise OncoLoopError(f"{rating_id!r} is not a rating number; pick one from the queue.") from None
            review_id = self.store.review(account, rid, decision or "", edited_text, note)
        except OncoLoopError as e:
            return error(e), {"error": str(e)}
        if decision in ("approve", "edit"):
            self.reviewed.refresh()
        return f"Review #{review_id}: rating #{rid} {decision}{'d' if decision.endswith('e') else 'ed'}.", \
            {"review_id": review_id, "rating_id": rid, "decision": decision}


class AdminHandler:
    """A/B share and alias moves (promote, roll back), each with a recorded reason."""

    def __init__(self, store: FeedbackStore, registry: Registry):
        self.store, self.registry = store, registry

    def overview(self, session: Session) -> str:
        try:
            current(self.store, session, "promote")
        except OncoLoopError as e:
            return error(e)
        aliases = self.registry.aliases()
        share = current_share(self.store.store)
        lines = ["**Aliases:** " + (", ".join(f"{a} → `{v}`" for a, v in sorted(aliases.items())) or "none"),
                 "**Versions:** " + (", ".join(f"`{v.id}`" for v in self.registry.versions()) or "none"),
                 "**Challenger share:** " + (f"{share.share:.0%} (set by {share.actor}: {share.reason})" if share
                                             else "the gateway's configured default (not set here)"),
                 "", "**Recent alias moves:**"]
        for m in self.registry.history()[-5:][::-1]:  # reasons are free text: scrubbed, as every shared view is
            lines.append(f"- {m.moved_at:%Y-%m-%d %H:%M} {m.alias}: {m.from_version or '-'} → {m.to_version} "
                         f"by {m.actor}{' (**forced**)' if m.forced else ''}: {scrub(m.reason)}")
        return "\n".join(lines)

    def set_share(self, session: Session, share, reason: str) -> str:
        try:
            account = current(self.store, session, "ab_share")
            change = set_challenger_share(self.store.store, share, account.username, reason)
        except OncoLoopError as e:
            return error(e)
        return f"Challenger share set to {change.share:.0%} (reason recorded)."

    def promote(self, session: Session, version: str, reason: str, force: bool = False, password: str = "") -> str:
        """Make ``version`` the champion (``eval.promotion``: cites its gate report).

        A version without a passing gate decision needs ``force`` and the admin's password typed again
        (a left-open session is not enough to override the gate); the move is recorded as forced.
        """
        from eval.promotion import promote

        try:
            account = current(self.store, session, "promote")
            if not (version or "").strip():
                raise OncoLoopError("choose the version to promote.")
            if force:
                if not password:
                    raise OncoLoopError("overriding the gate needs your password typed again (the box next to "
                                        "'force'); nothing was changed.")
                account = self.store.require(self.store.authenticate(account.username, password), "promote")
            move = promote(self.registry, version.strip(), reason or "", account, bool(force))
        except OncoLoopError as e:
            return error(e)
        return (f"Promoted: champion {move.from_version or '-'} → {move.to_version} "
                f"({'FORCED without a passing gate; ' if move.forced else ''}reason and report recorded).")

    def rollback(self, session: Session, reason: str) -> str:
        """Point champion back at the version it replaced (``eval.promotion``)."""
        from eval.promotion import rollback

        try:
            account = current(self.store, session, "rollback")
            move = rollback(self.registry, reason or "", account)
        except OncoLoopError as e:
            return error(e)
        return f"Rolled back: champion {move.from_version} → {move.to_version} (reason and report recorded)."


@dataclass
class Handlers:
    """Everything the app wires to components."""

    auth: AuthHandler
    chat: ChatHandler
    rating: RatingHandler
    review: ReviewHandler
    admin: AdminHandler
    tags: tuple[str, ...] = TAGS

    @classmethod
    def create(cls, cfg: UIConfig, store: FeedbackStore | None = None, embed=None) -> "Handlers":
        """Open the store, the gateway client and the reviewed-answers index."""
        from feedback.dedup import choose_embedder

        store = store or FeedbackStore.open()
        if embed is None:
            embed, _ = choose_embedder(cfg.embedder)
        reviewed = ReviewedAnswers(store, embed, cfg.reviewed_k, cfg.reviewed_min_similarity, cfg.reviewed_refresh_s)
        return cls(AuthHandler(store, cfg.session_hours), ChatHandler(store, GatewayClient(cfg), reviewed, cfg), RatingHandler(store),
                   ReviewHandler(store, reviewed), AdminHandler(store, Registry(store.store)))
