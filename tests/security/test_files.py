"""The home, the database and what commands write there are owner-only (0700 folders, 0600 files)."""

from __future__ import annotations

import os
import stat

import pytest

from core.settings import SUBDIRS, get_settings
from feedback.store import FeedbackStore
from tests.conftest import REPO


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def loose_umask():
    """The most common umask (022: files world-readable), restored afterwards."""
    before = os.umask(0o022)
    yield
    os.umask(before)


def test_a_new_home_and_its_database_are_owner_only(oncoloop_home, loose_umask):
    store = FeedbackStore.open()
    store.add_user("carla", "carla-password", "clinician")  # writes: the WAL and shared-memory files appear
    assert mode(oncoloop_home) == 0o700
    assert all(mode(oncoloop_home / d) == 0o700 for d in SUBDIRS)
    db = oncoloop_home / "oncoloop.db"
    files = [db] + [p for p in (db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")) if p.exists()]
    assert len(files) == 3, files
    assert {p.name: mode(p) for p in files} == {p.name: 0o600 for p in files}
    store.store.engine.dispose()


def test_an_existing_loose_home_is_narrowed(oncoloop_home, loose_umask):
    (oncoloop_home / "runs").mkdir(parents=True, mode=0o755)
    os.chmod(oncoloop_home, 0o755)
    (oncoloop_home / "oncoloop.db").touch(mode=0o644)
    os.chmod(oncoloop_home / "oncoloop.db", 0o644)
    FeedbackStore.open().store.engine.dispose()
    assert (mode(oncoloop_home), mode(oncoloop_home / "runs"), mode(oncoloop_home / "oncoloop.db")) == \
        (0o700, 0o700, 0o600)


def test_commands_write_owner_only_files(oncoloop_home, loose_umask, bundled_model, monkeypatch):
    """Every command runs with the umask 077: a promotion's report (any file a command writes) is 0600."""
    from eval import promote
    from finetune.bootstrap import install
    from tests.helpers.gateway import add_version, record_gate

    install(bundled_model)
    add_version(oncoloop_home, bundled_model, "v2")
    record_gate(oncoloop_home, "v2")
    FeedbackStore.open().add_user("boss", "boss-password", "admin")
    monkeypatch.setenv("ONCOLOOP_PASSWORD", "boss-password")
    assert promote.main(["v2", "--user", "boss", "--reason", "passed its gate"]) == 0
    report = sorted((oncoloop_home / "reports").glob("*promotion*/report.html"))[-1]
    assert (mode(report.parent), mode(report), mode(report.with_name("move.json"))) == (0o700, 0o600, 0o600)


def test_demo_accounts_file_and_start_script(oncoloop_home, loose_umask):
    from ui.__main__ import DEMO_FILE, ensure_demo_accounts

    store = FeedbackStore.open()
    ensure_demo_accounts(store, get_settings().home)
    assert mode(oncoloop_home / DEMO_FILE) == 0o600 and mode(oncoloop_home) == 0o700
    store.store.engine.dispose()
    # start.sh writes the gateway's log with the shell's redirection: its umask must be set before
    lines = (REPO / "scripts" / "start.sh").read_text().splitlines()
    first_write = next(i for i, line in enumerate(lines) if "mkdir" in line or ">" in line.split("#")[0])
    assert any(line.strip() == "umask 077" for line in lines[:first_write]), "start.sh must set umask 077 first"
