"""Promotion and rollback: admins only (password checked against the store), each move recorded with a report."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from eval import promote, rollback
from feedback.store import FeedbackStore
from tests.helpers.gateway import registry_at

PASSWORD = "correct horse battery"


@pytest.fixture
def home(oncoloop_home, bundled_model, monkeypatch):
    from finetune.bootstrap import install

    install(bundled_model)
    shutil.copytree(bundled_model, oncoloop_home / "models" / "v2")
    registry_at(oncoloop_home).register(oncoloop_home / "models" / "v2")
    store = FeedbackStore.open()
    store.add_user("boss", PASSWORD, "admin")
    store.add_user("rita", PASSWORD, "reviewer")
    monkeypatch.setenv("ONCOLOOP_PASSWORD", PASSWORD)
    return oncoloop_home


def champion(home) -> str:
    return registry_at(home).resolve("champion")


def test_admin_promotes_and_rolls_back_each_move_with_its_report(home, capsys):
    base = champion(home)
    assert promote.main(["v2", "--user", "boss", "--reason", "better on retention", "--force"]) == 0
    move = registry_at(home).history("champion")[-1]
    assert (move.from_version, move.to_version, move.actor, move.reason) == (base, "v2", "boss", "better on retention")
    assert move.forced  # v2 has no gate decision: only forced, and recorded as such
    page = Path(move.report).read_text()
    assert "Promotion: champion" in page and "no gate report for this version" in page
    assert json.loads((Path(move.report).parent / "move.json").read_text())["by"] == "boss"

    assert rollback.main(["--user", "boss", "--reason", "clinicians report worse staging"]) == 0
    back = registry_at(home).history("champion")[-1]
    assert (back.from_version, back.to_version, back.actor) == ("v2", base, "boss")
    assert "Rollback: champion v2" in Path(back.report).read_text()
    assert back.report != move.report
    assert "rollback: champion v2 ->" in capsys.readouterr().out


@pytest.mark.parametrize("user, env, message", [
    ("rita", PASSWORD, "rita is a reviewer and may not promote; this needs the role admin"),
    ("boss", "wrong password", "wrong username or password"),
    ("nobody", PASSWORD, "wrong username or password"),
])
def test_only_an_authenticated_admin_may_promote(home, user, env, message, monkeypatch, capsys):
    monkeypatch.setenv("ONCOLOOP_PASSWORD", env)
    before = champion(home)
    assert promote.main(["v2", "--user", user, "--reason", "r"]) == 2
    assert message in capsys.readouterr().err
    assert rollback.main(["--user", user, "--reason", "r", "--to", "v2"]) == 2
    assert champion(home) == before


def test_no_password_is_a_clear_error(home, monkeypatch, capsys):
    monkeypatch.delenv("ONCOLOOP_PASSWORD")
    monkeypatch.setattr("sys.stdin.isatty", lambda: False, raising=False)
    assert promote.main(["v2", "--user", "boss", "--reason", "r"]) == 2
    assert "no password: set ONCOLOOP_PASSWORD" in capsys.readouterr().err


def test_password_file(home, tmp_path, monkeypatch):
    monkeypatch.delenv("ONCOLOOP_PASSWORD")
    secret = tmp_path / "pw"
    secret.write_text(PASSWORD + "\n")
    assert promote.main(["v2", "--user", "boss", "--reason", "r", "--password-file", str(secret), "--force"]) == 0
    assert champion(home) == "v2"


def test_a_candidate_that_failed_its_gate_needs_force(home, capsys):
    report_dir = home / "reports" / "20260101-000000-base-vs-v2"
    report_dir.mkdir(parents=True)
    (report_dir / "decision.json").write_text(json.dumps({
        "candidate": "v2", "champion": "x", "passed": False, "promoted": False, "report_dir": str(report_dir),
        "reasons": ["retention_chrf_no_regression: FAIL — retention chrf: B − A = -30.00"],
        "created_at": "2026-01-01T00:00:00+00:00"}))
    before = champion(home)
    assert promote.main(["v2", "--user", "boss", "--reason", "r"]) == 2
    assert "failed its latest gate" in capsys.readouterr().err and champion(home) == before
    assert promote.main(["v2", "--user", "boss", "--reason", "hotfix, accepted risk", "--force"]) == 0
    page = Path(registry_at(home).history("champion")[-1].report).read_text()
    assert "FAILED" in page and "forced</b>: True" in page and "retention_chrf_no_regression: FAIL" in page


def test_bad_moves(home, capsys):
    before = champion(home)
    assert rollback.main(["--user", "boss", "--reason", "r"]) == 2  # the bootstrap base replaced nothing
    assert "replaced no earlier version; name one with --to" in capsys.readouterr().err
    assert rollback.main(["--user", "boss", "--reason", "r", "--to", "nope"]) == 2
    assert "unknown model or version 'nope'" in capsys.readouterr().err
    assert promote.main([before, "--user", "boss", "--reason", "r"]) == 2
    assert "already the champion" in capsys.readouterr().err
    assert promote.main(["v2", "--user", "boss", "--reason", "  "]) == 2
    assert "needs a reason" in capsys.readouterr().err
    assert not list((home / "reports").glob("*promotion*"))  # nothing written for a refused move
    assert champion(home) == before
