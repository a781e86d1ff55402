"""The store's tables (SQLAlchemy 2) and how to open it.

The schema is owned by the Alembic migrations in ``feedback/migrations``; these
classes mirror them for querying. ``open_store`` upgrades the database to the
newest migration, so every entry point sees the same schema.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from sqlalchemy import JSON, DateTime, ForeignKey, Integer, String, Text, create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker

from feedback.errors import OncoLoopError
from feedback.settings import Settings, get_settings

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


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cur = dbapi_connection.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
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
    engine = make_engine(settings.database_url)
    try:
        upgrade(engine)
    except OperationalError as e:
        raise OncoLoopError(
            f"cannot open the store at {engine.url.render_as_string(hide_password=True)}: {e.orig}. "
            "Check ONCOLOOP_DATABASE_URL (or ONCOLOOP_HOME) and that the database server is running."
        ) from e
    return Store(engine)
