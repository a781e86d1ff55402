"""The store's tables (SQLAlchemy 2) and how to open it.

The schema is owned by the Alembic migrations in ``feedback/migrations``; these
classes mirror them for querying. ``open_store`` upgrades the database to the
newest migration, so every entry point sees the same schema.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from sqlalchemy import (JSON, Boolean, CheckConstraint, DateTime, ForeignKey, Integer, String, Text, create_engine,
                        event)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker

from core.errors import OncoLoopError
from core.settings import Settings, get_settings, private_file

MIGRATIONS = Path(__file__).with_name("migrations")


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class Base(DeclarativeBase):
    pass


class ModelVersion(Base):
    """An immutable model directory under ``$ONCOLOOP_HOME/models/<id>/``."""

    __tablename__ = "model_versions"
    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    path: Mapped[str] = mapped_column(Text)
    method: Mapped[str] = mapped_column(String(32))  # bootstrap | lora | ptuning | full
    base: Mapped[str] = mapped_column(Text)
    parent: Mapped[str | None] = mapped_column(String(128), ForeignKey("model_versions.id"), nullable=True)
    mergeable: Mapped[int] = mapped_column(Integer, default=1)  # 0: adapter to serve on its base
    meta: Mapped[dict] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Alias(Base):
    """A movable name (``champion``, ``challenger``) pointing at a version."""

    __tablename__ = "aliases"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    version_id: Mapped[str] = mapped_column(String(128), ForeignKey("model_versions.id"))
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class AliasMove(Base):
    """Every alias move: who, when, why, from what, to what, with which gate report."""

    __tablename__ = "alias_moves"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    alias: Mapped[str] = mapped_column(String(64), index=True)
    from_version: Mapped[str | None] = mapped_column(String(128), nullable=True)
    to_version: Mapped[str] = mapped_column(String(128))
    actor: Mapped[str] = mapped_column(String(128))
    reason: Mapped[str] = mapped_column(Text)
    report: Mapped[str | None] = mapped_column(Text, nullable=True)
    moved_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # the move overrode a missing or failed gate decision (an admin's --force; migration 0004)
    forced: Mapped[bool] = mapped_column(Boolean, default=False)


ROLES = ("clinician", "reviewer", "admin")
TAGS = ("incorrect", "unsafe", "outdated", "incomplete", "hallucinated")
DECISIONS = ("approve", "reject", "edit")


class User(Base):
    """A person who logs in: a clinician, a reviewer or an admin (migration 0002)."""

    __tablename__ = "users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    password_hash: Mapped[str] = mapped_column(Text)  # argon2id, parameters inside the hash
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Conversation(Base):
    """One chat of one user; ``arm`` and ``model_version`` record the A/B assignment."""

    __tablename__ = "conversations"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(Integer, ForeignKey("users.id"), index=True)
    arm: Mapped[str | None] = mapped_column(String(32), nullable=True)
    model_version: Mapped[str | None] = mapped_column(String(128), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Message(Base):
    """A question and its answer; ``answer`` stays NULL while unanswered or after a failure."""

    __tablename__ = "messages"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    conversation_id: Mapped[int] = mapped_column(Integer, ForeignKey("conversations.id"), index=True)
    question: Mapped[str] = mapped_column(Text)
    answer: Mapped[str | None] = mapped_column(Text, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    model_version: Mapped[str | None] = mapped_column(String(128), nullable=True)
    latency_ms: Mapped[int | None] = mapped_column(Integer, nullable=True)
    guard_actions: Mapped[list | None] = mapped_column(JSON, nullable=True)  # what the safety guard did
    # review ids of the approved answers retrieval gave the model as context (serve/retrieval.py)
    context_reviews: Mapped[list | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
    answered_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    redacted_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)  # retention


class Rating(Base):
    """One clinician's judgement of one answer: thumbs, a 1-5 score, tags, a correction."""

    __tablename__ = "ratings"
    __table_args__ = (
        CheckConstraint("thumbs IS NULL OR thumbs IN (-1, 1)", name="ck_ratings_thumbs"),
        CheckConstraint("score IS NULL OR (score >= 1 AND score <= 5)", name="ck_ratings_score"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    message_id: Mapped[int] = mapped_column(Integer, ForeignKey("messages.id"), index=True)
    user_id: Mapped[int] = mapped_column(Integer, ForeignKey("users.id"), index=True)
    thumbs: Mapped[int | None] = mapped_column(Integer, nullable=True)  # +1 up, -1 down
    score: Mapped[int | None] = mapped_column(Integer, nullable=True)
    tags: Mapped[list] = mapped_column(JSON, default=list)
    correction: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
    redacted_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)  # retention


class Review(Base):
    """A reviewer's decision on a rating: approve, reject, or edit (approve the edited text)."""

    __tablename__ = "reviews"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    rating_id: Mapped[int] = mapped_column(Integer, ForeignKey("ratings.id"), index=True)
    reviewer_id: Mapped[int] = mapped_column(Integer, ForeignKey("users.id"))
    decision: Mapped[str] = mapped_column(String(16))
    edited_text: Mapped[str | None] = mapped_column(Text, nullable=True)
    note: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    redacted_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)  # retention


class LoginFailures(Base):
    """Failed logins in a row for one key (``user:<name>`` or ``addr:<client address>``), and its lockout."""

    __tablename__ = "login_failures"
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer)
    last_failure_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    locked_until: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class ApiKeyRow(Base):
    """A gateway key (migration 0005): its SHA-256, never the key itself; ``revoked_at`` set when revoked."""

    __tablename__ = "api_keys"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64), index=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))  # the key's first characters, to tell keys apart in lists
    scopes: Mapped[list] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class StoreSetting(Base):
    """Store-wide values, e.g. the salt of the pseudonymous clinician hash in exports."""

    __tablename__ = "store_settings"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cur = dbapi_connection.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    # WAL + NORMAL: a commit survives any application crash or error; only a power cut or OS crash
    # can lose the last commits. FULL costs an fsync per commit (~15 ms here: 50-90 ratings/s instead
    # of thousands). Deployments that need more use PostgreSQL.
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def make_engine(url: str) -> Engine:
    """A SQLAlchemy engine; SQLite gets WAL, foreign keys and a busy timeout."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True)


def upgrade(engine: Engine) -> None:
    """Bring the database to the newest migration (idempotent)."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, "head")


class Store:
    """The opened store: an engine and a session factory, schema up to date."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self.session = sessionmaker(engine, expire_on_commit=False)


def open_store(settings: Settings | None = None) -> Store:
    """Open (and migrate) the store named by the settings.

    Raises:
        OncoLoopError: the database cannot be reached or upgraded.
    """
    settings = settings or get_settings()
    if settings.database_url.startswith("sqlite"):
        settings.ensure_layout()
        path = settings.sqlite_path()
        if path is not None:  # owner-only before SQLite writes a byte; its -wal and -shm files copy this mode
            try:
                private_file(path)
            except OSError as e:
                raise OncoLoopError(f"cannot create the store {path}: {e.strerror}. Check ONCOLOOP_DATABASE_URL "
                                    "(or ONCOLOOP_HOME): its folder must exist and be writable.") from e
    engine = make_engine(settings.database_url)
    try:
        upgrade(engine)
    except OperationalError as e:
        raise OncoLoopError(
            f"cannot open the store at {engine.url.render_as_string(hide_password=True)}: {e.orig}. "
            "Check ONCOLOOP_DATABASE_URL (or ONCOLOOP_HOME) and that the database server is running."
        ) from e
    return Store(engine)
