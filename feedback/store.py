"""The feedback store's API, called by the UI and the export: accounts, chats, ratings, reviews.

Every method is one transaction: it commits whole or not at all, so an error in
one call never loses what earlier calls stored. A question is committed before
the gateway is asked, so a failed answer leaves the question stored, unanswered,
with the error text.

Limits (the store is lenient so that nothing a clinician typed is lost; the UI is strict):

- a question must not be empty; the store keeps up to ``QUESTION_MAX_CHARS``
  (100,000) characters, the UI refuses more than ``UI_QUESTION_MAX_CHARS`` (4,000)
  with ``check_question(text, UI_QUESTION_MAX_CHARS)`` before calling the gateway;
- a correction or reviewer edit holds at most ``CORRECTION_MAX_CHARS`` (20,000);
- error texts are cut to ``ERROR_MAX_CHARS`` (2,000).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from functools import cached_property

from sqlalchemy import bindparam, func, insert, or_, select, update

from core.errors import OncoLoopError
from core.settings import Settings
from feedback import auth
from feedback.auth import Account
from feedback.config import AccessConfig, load_access_config
from feedback.db import (DECISIONS, TAGS, Conversation, Message, Rating, Review, Store, StoreSetting, User,
                         open_store, utcnow)
from feedback.records import MessageFacts, RatingFacts
from feedback.scrub import scrub
from feedback.throttle import LoginThrottle

QUESTION_MAX_CHARS = 100_000
UI_QUESTION_MAX_CHARS = 4_000
CORRECTION_MAX_CHARS = 20_000
ERROR_MAX_CHARS = 2_000
# Built once: constructing statements costs more CPU than SQLite spends executing them.
_IS_ANSWERED = select(Message.__table__.c.answer.is_not(None)).where(Message.__table__.c.id == bindparam("id"))
_RATING_COLUMNS = ("message_id", "user_id", "thumbs", "score", "tags", "correction", "created_at")
# One statement: insert the rating only if its message exists and has an answer.
_INSERT_RATING = insert(Rating.__table__).from_select(
    _RATING_COLUMNS,
    select(*(bindparam(c, type_=Rating.__table__.c[c].type) for c in _RATING_COLUMNS))
    .where(Message.__table__.c.id == bindparam("message_id"), Message.__table__.c.answer.is_not(None)),
).returning(Rating.__table__.c.id)
_LOGIN_FAILED = "wrong username or password; try again or ask an admin to reset your account."
# A review that approves text counts only when its reviewer did not write the rating (no self-approval);
# the store refuses such reviews, and this keeps any older row of that kind out of approvals and exports.
_NOT_SELF_APPROVED = or_(Review.decision == "reject", Review.reviewer_id != Rating.user_id)


def check_question(text: str, limit: int = QUESTION_MAX_CHARS) -> str:
    """The question stripped, if it is not empty and not longer than ``limit``.

    >>> check_question("  What is ECOG 1?  ")
    'What is ECOG 1?'
    >>> check_question("x" * 20_000, UI_QUESTION_MAX_CHARS)
    Traceback (most recent call last):
    core.errors.OncoLoopError: the question has 20000 characters; the limit is 4000. Shorten it or split it into several questions.
    """
    text = (text or "").strip()
    if not text:
        raise OncoLoopError("the question is empty; type an oncology question.")
    if len(text) > limit:
        raise OncoLoopError(f"the question has {len(text)} characters; the limit is {limit}. "
                            "Shorten it or split it into several questions.")
    return text


def _clean_text(text: str | None, what: str) -> str | None:
    if text is None or not text.strip():
        return None
    if len(text) > CORRECTION_MAX_CHARS:
        raise OncoLoopError(f"the {what} has {len(text)} characters; the limit is {CORRECTION_MAX_CHARS}. Shorten it.")
    return text.strip()


@dataclass(frozen=True)
class UserView:
    id: int
    username: str
    role: str
    disabled: bool
    created_at: dt.datetime


@dataclass(frozen=True)
class MessageView:
    """A stored question with its answer (None while unanswered or after a failure)."""

    id: int
    conversation_id: int
    question: str
    answer: str | None
    error: str | None
    model_version: str | None
    latency_ms: int | None
    guard_actions: list[str]  # what the gateway's clinical guard did (serve/guard.py); [] when nothing
    created_at: dt.datetime

    @property
    def status(self) -> str:
        return "answered" if self.answer is not None else ("failed" if self.error else "pending")


@dataclass(frozen=True)
class QueueItem:
    """A correction waiting for a reviewer, with what the reviewer needs to judge it."""

    rating_id: int
    message_id: int
    question: str
    answer: str | None
    correction: str
    tags: list[str]
    thumbs: int | None
    score: int | None
    model_version: str | None
    guard_actions: list[str]
    rater: str
    created_at: dt.datetime


@dataclass(frozen=True)
class ApprovedAnswer:
    """A reviewer-approved answer to show colleagues before any retraining."""

    question: str
    answer: str
    message_id: int
    rating_id: int
    review_id: int
    reviewed_at: dt.datetime


def _view(m: Message, scrubbed: bool = False) -> MessageView:
    text = scrub if scrubbed else (lambda t: t)
    return MessageView(m.id, m.conversation_id, text(m.question), None if m.answer is None else text(m.answer),
                       None if m.error is None else text(m.error), m.model_version, m.latency_ms,
                       list(m.guard_actions or []), m.created_at)


class FeedbackStore:
    """Plain-Python access to the store (SQLite by default, PostgreSQL by URL)."""

    def __init__(self, store: Store, access: AccessConfig | None = None):
        self.store = store
        self.session = store.session
        self.access = access or load_access_config()
        self.throttle = LoginThrottle(store, self.access)

    @classmethod
    def open(cls, settings: Settings | None = None) -> "FeedbackStore":
        return cls(open_store(settings))

    # ---- accounts ----------------------------------------------------------------------------

    def add_user(self, username: str, password: str, role: str) -> Account:
        """Create an account.

        Raises:
            OncoLoopError: bad username, role or password, or the username is taken.
        """
        auth.check_username(username)
        auth.check_role(role)
        password_hash = auth.hash_password(password)
        with self.session.begin() as s:
            if s.scalar(select(User.id).where(User.username == username)) is not None:
                raise OncoLoopError(f"user {username!r} already exists; choose another username.")
            user = User(username=username, role=role, password_hash=password_hash, disabled=False,
                        created_at=utcnow())
            s.add(user)
            s.flush()
            return Account(user.id, user.username, user.role)

    def list_users(self) -> list[UserView]:
        with self.session() as s:
            return [UserView(u.id, u.username, u.role, bool(u.disabled), u.created_at)
                    for u in s.scalars(select(User).order_by(User.username))]

    def set_disabled(self, username: str, disabled: bool = True) -> None:
        """Disable (or re-enable) an account; its history stays.

        Raises:
            OncoLoopError: no such user.
        """
        with self.session.begin() as s:
            user = s.scalar(select(User).where(User.username == username))
            if user is None:
                raise OncoLoopError(f"no user {username!r}; list them with `python -m feedback.users list`.")
            user.disabled = disabled

    def reset_password(self, username: str, password: str) -> None:
        """Give an account a new password (hashed) and lift its lockout; its history stays.

        Raises:
            OncoLoopError: no such user, or a password too short.
        """
        password_hash = auth.hash_password(password)
        with self.session.begin() as s:
            user = s.scalar(select(User).where(User.username == username))
            if user is None:
                raise OncoLoopError(f"no user {username!r}; list them with `python -m feedback.users list`.")
            user.password_hash = password_hash
        self.throttle.unlock(username)

    def authenticate(self, username: str, password: str, address: str | None = None) -> Account:
        """The account, if the password is right and the account enabled.

        Unknown users and wrong passwords get the same message and take as long, and count alike towards
        the lockout of the username and of the client ``address`` (``feedback.throttle``); while either is
        locked the password is not even checked.

        Raises:
            OncoLoopError: wrong username or password, a lockout, or a disabled account.
        """
        self.throttle.check(username, address)
        locked = self.throttle.attempt(username, address)  # a failure until the password proves right
        with self.session() as s:
            user = s.scalar(select(User).where(User.username == (username or "")))
        if user is None:
            auth.verify_password(auth.dummy_hash(), password or "")
        if user is None or not auth.verify_password(user.password_hash, password or ""):
            raise OncoLoopError(_LOGIN_FAILED + (f" Too many failures: the next try is possible in {locked:.0f} s."
                                                 if locked else ""))
        self.throttle.succeeded(username, address)
        if user.disabled:
            raise OncoLoopError(f"the account {username!r} is disabled; ask an admin to re-enable it.")
        if auth.needs_rehash(user.password_hash):
            with self.session.begin() as s:
                s.get(User, user.id).password_hash = auth.hash_password(password)
        return Account(user.id, user.username, user.role)

    def account(self, user_id: int) -> Account:
        """The account as stored now (role changes and disabling take effect at once).

        Raises:
            OncoLoopError: no such user, or the account is disabled.
        """
        with self.session() as s:
            user = s.get(User, user_id)
        if user is None or user.disabled:
            raise OncoLoopError("this account no longer exists or is disabled; log in again or ask an admin.")
        return Account(user.id, user.username, user.role)

    def require(self, account: Account, action: str) -> Account:
        """The current account if it may do ``action`` (for the UI's admin and reviewer tabs).

        Raises:
            OncoLoopError: disabled account, or a role without the permission.
        """
        current = self.account(account.id)
        auth.require(current, action)
        return current

    # ---- chat --------------------------------------------------------------------------------

    def start_conversation(self, account: Account, arm: str | None = None, model_version: str | None = None) -> int:
        """A new conversation for ``account``; ``arm``/``model_version`` record the A/B assignment."""
        with self.session.begin() as s:
            conv = Conversation(user_id=account.id, arm=arm, model_version=model_version, created_at=utcnow())
            s.add(conv)
            s.flush()
            return conv.id

    def assign_conversation(self, conversation_id: int, arm: str, model_version: str) -> None:
        """Record which A/B arm (alias) and version answered a conversation first; later calls change nothing.

        The gateway routes a conversation sticky to one arm, so its first answer says which it is.
        """
        with self.session.begin() as s:
            s.execute(update(Conversation).where(Conversation.id == conversation_id, Conversation.arm.is_(None))
                      .values(arm=arm, model_version=model_version))

    def record_question(self, account: Account, conversation_id: int, question: str) -> int:
        """Store a question before it is sent to the gateway; returns the message id.

        Raises:
            OncoLoopError: empty or over-long question, or a conversation that is not the account's.
        """
        question = check_question(question)
        with self.session.begin() as s:
            owner = s.scalar(select(Conversation.user_id).where(Conversation.id == conversation_id))
            if owner != account.id:
                raise OncoLoopError(f"conversation {conversation_id} is not one of {account.username}'s; "
                                    "start a new conversation.")
            msg = Message(conversation_id=conversation_id, question=question, created_at=utcnow())
            s.add(msg)
            s.flush()
            return msg.id

    def record_answer(self, message_id: int, answer: str, model_version: str, latency_ms: int | None = None,
                      guard_actions: list[str] | None = None, context_reviews: list[int] | None = None) -> None:
        """Store the answer to a stored question (also after an earlier failure, whose error stays).

        Args:
            guard_actions: the gateway's ``oncoloop.guard`` list (e.g. ``["preamble", "dosing_notice"]``).
            context_reviews: review ids of the approved answers the model was given (``oncoloop.context``).

        Raises:
            OncoLoopError: unknown message, one that already has an answer, or guard actions that are not strings.
        """
        if guard_actions is not None and (not isinstance(guard_actions, (list, tuple))
                                          or not all(isinstance(a, str) for a in guard_actions)):
            raise OncoLoopError("guard_actions must be a list of strings, as the gateway's `oncoloop.guard` is.")
        with self.session.begin() as s:
            msg = self._message(s, message_id)
            if msg.answer is not None:
                raise OncoLoopError(f"message {message_id} already has an answer; answers are never overwritten.")
            msg.answer, msg.model_version, msg.latency_ms = answer, model_version, latency_ms
            msg.guard_actions, msg.answered_at = list(guard_actions or []), utcnow()
            msg.context_reviews = [int(r) for r in context_reviews or []]

    def record_failure(self, message_id: int, error: str, latency_ms: int | None = None) -> None:
        """Mark a stored question as failed: it stays, unanswered, with the error text."""
        with self.session.begin() as s:
            msg = self._message(s, message_id)
            msg.error, msg.latency_ms = (error or "unknown error")[:ERROR_MAX_CHARS], latency_ms

    def messages(self, conversation_id: int, viewer: Account | None = None) -> list[MessageView]:
        """A conversation's messages; for a ``viewer``, as :meth:`message` shows them to that person."""
        with self.session() as s:
            scrubbed = viewer is not None and self._scrubbed_for(s, viewer, conversation_id)
            rows = s.scalars(select(Message).where(Message.conversation_id == conversation_id).order_by(Message.id))
            return [_view(m, scrubbed) for m in rows]

    def message(self, message_id: int, viewer: Account | None = None) -> MessageView:
        """A stored message. Shown to a ``viewer`` (anything a person reads passes one): raw to the clinician
        who asked it, scrubbed to reviewers and admins, refused to other clinicians. Without a viewer (the
        store's own jobs and tests; nothing that shows text to a person) it is raw.

        Raises:
            OncoLoopError: unknown message, or a viewer who may not read it.
        """
        with self.session() as s:
            msg = self._message(s, message_id)
            return _view(msg, viewer is not None and self._scrubbed_for(s, viewer, msg.conversation_id))

    def _scrubbed_for(self, s, viewer: Account, conversation_id: int) -> bool:
        """False for the conversation's owner (raw), True for reviewers and admins (scrubbed); refuses the rest."""
        if s.scalar(select(Conversation.user_id).where(Conversation.id == conversation_id)) == viewer.id:
            return False
        current = self.account(viewer.id)
        if current.can("review"):
            return True
        raise OncoLoopError(f"conversation {conversation_id} is not one of {current.username}'s; "
                            "you can read only your own conversations.")

    @staticmethod
    def _message(s, message_id: int) -> Message:
        msg = s.get(Message, message_id)
        if msg is None:
            raise OncoLoopError(f"no message {message_id}; it may belong to another store.")
        return msg

    # ---- feedback ----------------------------------------------------------------------------

    def rate(self, account: Account, message_id: int, thumbs: int | None = None, score: int | None = None,
             tags: list[str] | tuple[str, ...] = (), correction: str | None = None) -> int:
        """Store one rating of an answer; returns the rating id.

        Args:
            thumbs: +1 (up), -1 (down) or None.
            score: 1-5 or None.
            tags: any of ``feedback.db.TAGS``.
            correction: the clinician's suggested answer (goes to the reviewer queue).

        Raises:
            OncoLoopError: nothing to store, a bad value, or a message without an answer.
        """
        if thumbs not in (None, 1, -1):
            raise OncoLoopError(f"thumbs must be 1 (up) or -1 (down), not {thumbs!r}.")
        if score is not None and (isinstance(score, bool) or not isinstance(score, int) or not 1 <= score <= 5):
            raise OncoLoopError(f"the score must be a whole number from 1 to 5, not {score!r}.")
        unknown = [t for t in tags if t not in TAGS]
        if unknown:
            raise OncoLoopError(f"unknown tag(s) {', '.join(map(repr, unknown))}; use {', '.join(TAGS)}.")
        correction = _clean_text(correction, "correction")
        if thumbs is None and score is None and not tags and correction is None:
            raise OncoLoopError("the rating is empty: give thumbs, a score, a tag or a correction.")
        # Core, not the ORM: ratings are the hot write path (UI load test, >= 1,000/s target).
        with self.store.engine.begin() as conn:
            rating_id = conn.execute(_INSERT_RATING, {
                "message_id": message_id, "user_id": account.id, "thumbs": thumbs, "score": score,
                "tags": sorted(set(tags)), "correction": correction, "created_at": utcnow()}).scalar()
            if rating_id is not None:
                return rating_id
            answered = conn.execute(_IS_ANSWERED, {"id": message_id}).scalar()
        if answered is None:
            raise OncoLoopError(f"no message {message_id}; it may belong to another store.")
        raise OncoLoopError(f"message {message_id} has no answer yet; only answers can be rated.")

    def review_queue(self, account: Account, limit: int = 50) -> list[QueueItem]:
        """Corrections no reviewer has decided on yet, oldest first; question, answer and correction scrubbed
        (a reviewer reads other clinicians' conversations: identifiers never reach them).

        Raises:
            OncoLoopError: the account may not review.
        """
        self.require(account, "review")
        reviewed = select(Review.rating_id)
        q = (select(Rating, Message, User.username)
             .join(Message, Rating.message_id == Message.id).join(User, Rating.user_id == User.id)
             .where(Rating.correction.is_not(None), Rating.id.not_in(reviewed))
             .order_by(Rating.id).limit(limit))
        with self.session() as s:
            rows = s.execute(q).all()
        return [QueueItem(r.id, m.id, scrub(m.question), None if m.answer is None else scrub(m.answer),
                          scrub(r.correction), list(r.tags or []), r.thumbs, r.score, m.model_version,
                          list(m.guard_actions or []), name, r.created_at)
                for r, m, name in rows]

    def review(self, account: Account, rating_id: int, decision: str, edited_text: str | None = None,
               note: str | None = None) -> int:
        """Record a reviewer's decision on a rating; returns the review id. The latest review counts.

        ``approve`` accepts the correction (or, for a rating without one, the answer
        itself); ``edit`` accepts ``edited_text`` instead; ``reject`` keeps it out of training.

        Nobody approves (or edits) their own rating: a second reviewer has to.

        Raises:
            OncoLoopError: not a reviewer or admin, unknown rating or decision, an edit without text, or an
                approval of the reviewer's own rating.
        """
        account = self.require(account, "review")
        if decision not in DECISIONS:
            raise OncoLoopError(f"unknown decision {decision!r}; use one of {', '.join(DECISIONS)}.")
        edited_text = _clean_text(edited_text, "edited answer")
        if decision == "edit" and edited_text is None:
            raise OncoLoopError("an edit needs the edited answer text; or approve or reject the correction as it is.")
        if decision != "edit":
            edited_text = None
        with self.session.begin() as s:
            rating = s.get(Rating, rating_id)
            if rating is None:
                raise OncoLoopError(f"no rating {rating_id}; refresh the review queue.")
            if rating.user_id == account.id and decision != "reject":
                raise OncoLoopError(f"rating {rating_id} is {account.username}'s own; another reviewer must "
                                    f"{decision} it (you may reject it, to withdraw it).")
            row = Review(rating_id=rating_id, reviewer_id=account.id, decision=decision, edited_text=edited_text,
                         note=(note or "").strip() or None, created_at=utcnow())
            s.add(row)
            s.flush()
            return row.id

    def approved_answers(self) -> list[ApprovedAnswer]:
        """Answers reviewers approved (corrections, edits, endorsed answers), newest review first; raw text
        (the panel and retrieval scrub it: ``serve.retrieval.scrubbed``)."""
        latest = (select(func.max(Review.id)).join(Rating, Review.rating_id == Rating.id).where(_NOT_SELF_APPROVED)
                  .group_by(Review.rating_id)).scalar_subquery()
        q = (select(Review, Rating, Message).join(Rating, Review.rating_id == Rating.id)
             .join(Message, Rating.message_id == Message.id)
             .where(Review.id.in_(latest), Review.decision.in_(("approve", "edit"))).order_by(Review.id.desc()))
        out = []
        with self.session() as s:
            for review, rating, msg in s.execute(q):
                text = review.edited_text if review.decision == "edit" else (rating.correction or msg.answer)
                if review.decision == "approve" and not rating.correction and rating.tags:
                    continue  # an answer someone flagged is never shown as approved
                if text:
                    out.append(ApprovedAnswer(msg.question, text, msg.id, rating.id, review.id, review.created_at))
        return out

    def counts(self) -> dict[str, int]:
        """Rows per table (for the load test and the admin tab)."""
        with self.session() as s:
            return {t.__tablename__: s.scalar(select(func.count()).select_from(t))
                    for t in (User, Conversation, Message, Rating, Review)}

    # ---- export ------------------------------------------------------------------------------

    @cached_property
    def _salt(self) -> str:
        with self.session() as s:
            return s.get(StoreSetting, "clinician_salt").value

    def clinician_hash(self, user_id: int) -> str:
        """A pseudonymous, store-specific id for a clinician: sha256(salt:id), 16 hex digits."""
        return hashlib.sha256(f"{self._salt}:{user_id}".encode()).hexdigest()[:16]

    def feedback_facts(self, since: dt.datetime | None = None) -> list[MessageFacts]:
        """Every answered, rated message with all its ratings and their latest reviews.

        With ``since``, only messages rated or reviewed at or after that time; their
        older ratings still come along, so an old ``unsafe`` flag is never forgotten.
        """
        rq = select(Rating.id, Rating.message_id, Rating.user_id, Rating.created_at, Rating.thumbs, Rating.score,
                    Rating.tags, Rating.correction).order_by(Rating.id)
        with self.session() as s:
            ratings = s.execute(rq).all()
            latest: dict[int, tuple] = {}
            for rid, review_id, decision, edited, at in s.execute(select(
                    Review.rating_id, Review.id, Review.decision, Review.edited_text, Review.created_at)
                    .join(Rating, Review.rating_id == Rating.id).where(_NOT_SELF_APPROVED).order_by(Review.id)):
                latest[rid] = (review_id, decision, edited, at)
            if since is not None:
                since = as_utc(since)
                active = {r.message_id for r in ratings if as_utc(r.created_at) >= since
                          or (r.id in latest and as_utc(latest[r.id][3]) >= since)}
                ratings = [r for r in ratings if r.message_id in active]
            message_ids = sorted({r.message_id for r in ratings})
            messages = {}
            for start in range(0, len(message_ids), 10_000):  # keep IN lists within driver limits
                chunk = message_ids[start:start + 10_000]
                for m in s.execute(select(Message.id, Message.question, Message.answer, Message.model_version,
                                          Message.created_at, Message.guard_actions).where(Message.id.in_(chunk))):
                    messages[m.id] = m
        by_message: dict[int, list[RatingFacts]] = {}
        for r in ratings:
            review_id, decision, edited, _ = latest.get(r.id, (None, None, None, None))
            by_message.setdefault(r.message_id, []).append(RatingFacts(
                r.id, r.user_id, as_utc(r.created_at), r.thumbs, r.score, tuple(r.tags or ()), r.correction,
                review_id, decision, edited))
        return [MessageFacts(mid, m.question, m.answer, m.model_version, as_utc(m.created_at),
                             tuple(by_message[mid]), tuple(m.guard_actions or ()))
                for mid, m in sorted(messages.items()) if m.answer is not None]


def as_utc(t: dt.datetime) -> dt.datetime:
    """An aware UTC time; naive times (SQLite returns them) are taken as UTC.

    >>> as_utc(dt.datetime(2026, 1, 1)).isoformat()
    '2026-01-01T00:00:00+00:00'
    """
    return t.replace(tzinfo=dt.timezone.utc) if t.tzinfo is None else t.astimezone(dt.timezone.utc)
