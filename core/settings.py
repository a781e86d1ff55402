"""One settings object: where OncoLoop keeps its state.

Everything lives under ``$ONCOLOOP_HOME`` (default ``./var``)::

    var/
      oncoloop.db     SQLite store (unless ONCOLOOP_DATABASE_URL points elsewhere)
      models/<version>/   immutable model versions (Hugging Face layout + meta.json)
      datasets/       training-set snapshots
      runs/           training runs (checkpoints, logs, wandb offline files)
      reports/<id>/   evaluation and A/B reports

The home holds patients' data (raw questions in the database, demo passwords): it and its folders
are owner-only (0700) and the SQLite file 0600, whoever creates them, and every OncoLoop command runs
with the umask 077 (``core.errors.cli_command``), so what they write
there (models, datasets, runs, logs, reports) is owner-only too.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from core.errors import OncoLoopError

HOME_ENV = "ONCOLOOP_HOME"
PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600
DATABASE_URL_ENV = "ONCOLOOP_DATABASE_URL"
SUBDIRS = ("models", "datasets", "runs", "reports")


@dataclass(frozen=True)
class Settings:
    """Paths and URLs derived from ``$ONCOLOOP_HOME`` and ``$ONCOLOOP_DATABASE_URL``."""

    home: Path
    database_url: str

    @property
    def models_dir(self) -> Path:
        return self.home / "models"

    @property
    def datasets_dir(self) -> Path:
        return self.home / "datasets"

    @property
    def runs_dir(self) -> Path:
        return self.home / "runs"

    @property
    def reports_dir(self) -> Path:
        return self.home / "reports"

    def ensure_layout(self) -> "Settings":
        """Create the home folders if missing, owner-only (0700); refuse a home that is not a folder.

        Folders that exist already with wider permissions are narrowed to 0700 when this user owns them.

        Raises:
            OncoLoopError: the home, or one of its sub-folders, exists but is a file.
        """
        if self.home.exists() and not self.home.is_dir():
            raise OncoLoopError(
                f"{HOME_ENV}={self.home} exists but is not a folder; point {HOME_ENV} at a folder "
                "(it will be created if missing)."
            )
        for name in SUBDIRS:
            sub = self.home / name
            if sub.exists() and not sub.is_dir():
                raise OncoLoopError(
                    f"{sub} should be a folder but is a file: this does not look like an OncoLoop "
                    f"home. Move the file away or point {HOME_ENV} at another folder."
                )
        private_dir(self.home)
        for name in SUBDIRS:
            private_dir(self.home / name)
        return self

    def sqlite_path(self) -> Path | None:
        """The SQLite database file, when the store is a SQLite file (None for PostgreSQL or in-memory)."""
        if not self.database_url.startswith("sqlite"):
            return None
        from sqlalchemy.engine import make_url

        name = make_url(self.database_url).database
        return Path(name) if name and name != ":memory:" and not name.startswith("file:") else None


def private_dir(path: Path) -> Path:
    """``path`` as an owner-only folder (0700): created so, or narrowed if this user owns it."""
    path.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
    _narrow(path, PRIVATE_DIR)
    return path


def private_file(path: Path) -> Path:
    """``path`` as an owner-only file (0600), created empty if missing (before anything writes into it).

    An existing file is never opened: closing any descriptor of a file drops every POSIX lock the process
    holds on it, SQLite's included, and another process could then checkpoint and delete the WAL under this
    one's open connections (which from then on read and write a deleted file).
    """
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE))
    except FileExistsError:
        pass
    _narrow(path, PRIVATE_FILE)
    return path


def _narrow(path: Path, mode: int) -> None:
    st = path.stat()
    if st.st_uid == os.getuid() and st.st_mode & 0o777 != mode:
        os.chmod(path, mode)



def get_settings(env: dict[str, str] | None = None) -> Settings:
    """Read the settings from the environment (``os.environ`` by default).

    >>> s = get_settings({"ONCOLOOP_HOME": "/tmp/onco"})
    >>> s.models_dir.as_posix(), s.database_url
    ('/tmp/onco/models', 'sqlite:////tmp/onco/oncoloop.db')
    """
    env = os.environ if env is None else env
    home = Path(env.get(HOME_ENV) or "var").expanduser().absolute()
    url = env.get(DATABASE_URL_ENV) or f"sqlite:///{home / 'oncoloop.db'}"
    return Settings(home=home, database_url=url)
