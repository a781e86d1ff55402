"""`python -m feedback.users`: add, list, disable, enable, reset (in process, on SQLite and PostgreSQL)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from core.errors import OncoLoopError
from feedback.users import main


def test_add_list_disable_enable(store, capsys):
    assert main(["add", "--username", "dr.ada", "--password", "correct horse", "--role", "reviewer"]) == 0
    assert "added dr.ada (reviewer)" in capsys.readouterr().out
    assert main(["list"]) == 0
    assert "dr.ada" in (out := capsys.readouterr().out) and "reviewer" in out and "active" in out
    assert store.authenticate("dr.ada", "correct horse").role == "reviewer"
    assert main(["disable", "dr.ada"]) == 0
    with pytest.raises(OncoLoopError, match="disabled"):
        store.authenticate("dr.ada", "correct horse")
    assert main(["list"]) == 0 and "disabled" in capsys.readouterr().out
    assert main(["enable", "dr.ada"]) == 0
    assert store.authenticate("dr.ada", "correct horse").username == "dr.ada"


def test_reset_gives_a_new_password_shown_once_and_the_old_one_stops_working(store, capsys):
    store.add_user("dr.bo", "old password 1", "clinician")
    assert main(["reset", "dr.bo"]) == 0
    new = capsys.readouterr().out.split("new password ")[1].split()[0]
    assert len(new) >= 16
    with pytest.raises(OncoLoopError, match="wrong username or password"):
        store.authenticate("dr.bo", "old password 1")
    assert store.authenticate("dr.bo", new).username == "dr.bo"
    assert main(["reset", "dr.bo", "--password", "chosen password"]) == 0
    assert "chosen password" not in capsys.readouterr().out
    assert store.authenticate("dr.bo", "chosen password").username == "dr.bo"


@pytest.mark.parametrize("argv,message", [
    (["add", "--username", "x", "--password", "short", "--role", "clinician"], "too short"),
    (["disable", "ghost"], "no user 'ghost'"),
    (["reset", "ghost"], "no user 'ghost'"),
    (["reset", "x", "--password", "short"], "too short"),
])
def test_errors_print_a_message_and_return_2(store, capsys, argv, message):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err


def test_duplicate_user_is_refused(store, capsys):
    argv = ["add", "--username", "bo", "--password", "12345678", "--role", "clinician"]
    assert main(argv) == 0 and main(argv) == 2
    assert "already exists" in capsys.readouterr().err


def test_runs_as_a_module_with_an_empty_listing(oncoloop_home):
    proc = subprocess.run([sys.executable, "-m", "feedback.users", "list"], capture_output=True, text=True)
    assert proc.returncode == 0 and "no users yet" in proc.stdout
