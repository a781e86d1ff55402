"""Workflow controls: no self-approval; no champion without a passing gate unless an admin forces it, with a
reason, in the UI and every command; moving an alias needs an admin's credentials; all of it recorded."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from eval import promote, rollback
from feedback.db import Review
from core.errors import OncoLoopError
from serve import registry as registry_cli
from tests.security.conftest import login
from serve.registry import Registry
from tests.helpers.gateway import record_gate


@pytest.fixture
def rated(store, people):
    """rita (a reviewer) asked, got an answer and suggested a correction; returns the rating id."""
    conv = store.start_conversation(people["rita"])
    mid = store.record_question(people["rita"], conv, "Which antiemetic with cisplatin?")
    store.record_answer(mid, "Ondansetron.", "v1")
    return store.rate(people["rita"], mid, thumbs=-1, correction="Aprepitant, a 5-HT3 antagonist and dexamethasone.")


def test_a_reviewer_cannot_approve_her_own_correction(store, people, rated, handlers):
    for decision, text in (("approve", None), ("edit", "My better text.")):
        with pytest.raises(OncoLoopError, match="rita's own; another reviewer must"):
            store.review(people["rita"], rated, decision, edited_text=text)
    status, _ = handlers.review.review(login(handlers, "rita"), rated, "approve")
    assert status.startswith("**Error:**") and "own" in status
    assert store.approved_answers() == [] and store.counts()["reviews"] == 0
    store.review(people["rita"], rated, "reject", note="withdrawn")  # withdrawing her own is allowed
    store.review(people["rob"], rated, "approve")  # a second reviewer approves
    assert [a.rating_id for a in store.approved_answers()] == [rated]


def test_a_self_approval_already_in_the_database_counts_for_nothing(store, people, rated):
    with store.session.begin() as s:  # written before the rule existed, or behind the store's back
        s.add(Review(rating_id=rated, reviewer_id=people["rita"].id, decision="approve"))
    assert store.approved_answers() == []
    [facts] = store.feedback_facts()
    assert facts.ratings[0].decision is None  # not approved for training either


@pytest.fixture
def versions(oncoloop_home, bundled_model, store, people, monkeypatch):
    """v1 (the champion), v2 (never gated), v3 (failed its gate), v4 (passed its gate)."""
    from finetune.bootstrap import install

    install(bundled_model)
    registry = Registry(store.store)
    for name in ("v2", "v3", "v4"):
        shutil.copytree(bundled_model, oncoloop_home / "models" / name)
        registry.register(oncoloop_home / "models" / name)
    record_gate(oncoloop_home, "v3", passed=False)
    record_gate(oncoloop_home, "v4", passed=True)
    monkeypatch.setenv("ONCOLOOP_PASSWORD", "adam-password")
    return registry


def champion(registry) -> str:
    return registry.aliases()["champion"]


@pytest.mark.parametrize("version", ["v2", "v3"])
def test_eval_promote_without_a_passing_gate_needs_admin_force_and_reason(versions, version, capsys, monkeypatch,
                                                                          oncoloop_home):
    base = champion(versions)
    assert promote.main([version, "--user", "adam", "--reason", "trust me"]) == 2
    assert "make it champion anyway only with --force" in capsys.readouterr().err
    assert promote.main([version, "--user", "adam", "--reason", " ", "--force"]) == 2  # force needs a reason
    assert "needs a reason" in capsys.readouterr().err
    monkeypatch.setenv("ONCOLOOP_PASSWORD", "rita-password")
    assert promote.main([version, "--user", "rita", "--reason", "r", "--force"]) == 2  # and an admin
    assert "rita is a reviewer and may not promote" in capsys.readouterr().err
    monkeypatch.setenv("ONCOLOOP_PASSWORD", "wrong-password")
    assert promote.main([version, "--user", "adam", "--reason", "r", "--force"]) == 2
    assert champion(versions) == base and not list((oncoloop_home / "reports").glob("*promotion*"))
    monkeypatch.setenv("ONCOLOOP_PASSWORD", "adam-password")
    assert promote.main([version, "--user", "adam", "--reason", "hotfix, risk accepted", "--force"]) == 0
    move = versions.history("champion")[-1]
    assert (move.to_version, move.actor, move.reason, move.forced) == (version, "adam", "hotfix, risk accepted", True)
    assert "forced</b>: True" in Path(move.report).read_text()


def test_a_passing_gate_needs_no_force_and_is_not_recorded_as_forced(versions):
    assert promote.main(["v4", "--user", "adam", "--reason", "passed the gate"]) == 0
    assert not versions.history("champion")[-1].forced


def test_rollback_cannot_smuggle_in_an_ungated_version(versions, capsys):
    assert promote.main(["v4", "--user", "adam", "--reason", "passed the gate"]) == 0
    assert rollback.main(["--user", "adam", "--reason", "r", "--to", "v2"]) == 2
    assert "only with --force" in capsys.readouterr().err and champion(versions) == "v4"
    assert rollback.main(["--user", "adam", "--reason", "back to the base"]) == 0  # a former champion: fine
    assert not versions.history("champion")[-1].forced
    assert rollback.main(["--user", "adam", "--reason", "emergency", "--to", "v2", "--force"]) == 0
    assert versions.history("champion")[-1].forced


def test_registry_alias_needs_an_admin_and_force_for_an_ungated_champion(versions, capsys, monkeypatch):
    base = champion(versions)
    with pytest.raises(SystemExit):  # no --user at all
        registry_cli.main(["alias", "champion", "v2", "--reason", "r"])
    capsys.readouterr()
    monkeypatch.setenv("ONCOLOOP_PASSWORD", "not-adams-password")
    assert registry_cli.main(["alias", "champion", "v4", "--by", "adam", "--reason", "r"]) == 2  # --by is no pass
    assert "wrong username or password" in capsys.readouterr().err
    monkeypatch.setenv("ONCOLOOP_PASSWORD", "rob-password")
    assert registry_cli.main(["alias", "challenger", "v4", "--user", "rob", "--reason", "r"]) == 2
    assert "rob is a reviewer and may not promote" in capsys.readouterr().err
    monkeypatch.delenv("ONCOLOOP_PASSWORD")
    monkeypatch.setattr("sys.stdin.isatty", lambda: False, raising=False)
    assert registry_cli.main(["alias", "champion", "v4", "--user", "adam", "--reason", "r"]) == 2
    assert "no password: set ONCOLOOP_PASSWORD" in capsys.readouterr().err
    monkeypatch.setenv("ONCOLOOP_PASSWORD", "adam-password")
    assert registry_cli.main(["alias", "champion", "v3", "--user", "adam", "--reason", "r"]) == 2
    assert "failed its latest gate" in capsys.readouterr().err
    assert champion(versions) == base and "challenger" not in versions.aliases()
    assert registry_cli.main(["alias", "challenger", "v2", "--user", "adam", "--reason", "A/B from Monday"]) == 0
    assert registry_cli.main(["alias", "champion", "v4", "--user", "adam", "--reason", "gate passed"]) == 0
    assert registry_cli.main(["alias", "champion", "v3", "--user", "adam", "--reason", "override", "--force"]) == 0
    assert "(forced: no passing gate decision)" in capsys.readouterr().out
    moves = versions.history()[-3:]
    assert [(m.alias, m.to_version, m.actor, m.forced) for m in moves] == [
        ("challenger", "v2", "adam", False), ("champion", "v4", "adam", False), ("champion", "v3", "adam", True)]
    assert registry_cli.main(["show", "v3"]) == 0
    assert "by adam (forced): override" in capsys.readouterr().out


def test_the_admin_tab_forces_only_with_the_password_typed_again(versions, handlers, store):
    adam, carla = login(handlers, "adam"), login(handlers, "carla")
    base = champion(versions)
    assert "may not promote" in handlers.admin.promote(carla, "v2", "why not", True, "carla-password")
    assert "only with --force" in handlers.admin.promote(adam, "v2", "ship it")
    assert "needs your password typed again" in handlers.admin.promote(adam, "v2", "ship it", True, "")
    assert "wrong username or password" in handlers.admin.promote(adam, "v2", "ship it", True, "guess-guess")
    assert "needs a reason" in handlers.admin.promote(adam, "v2", " ", True, "adam-password")
    assert champion(versions) == base
    status = handlers.admin.promote(adam, "v2", "hotfix", True, "adam-password")
    assert status.startswith("Promoted: champion") and "FORCED" in status
    assert handlers.admin.promote(adam, "v4", "passed").startswith("Promoted: champion v2 → v4 (reason")
    moves = versions.history("champion")[-2:]
    assert [(m.to_version, m.actor, m.forced) for m in moves] == [("v2", "adam", True), ("v4", "adam", False)]
    assert "(**forced**)" in handlers.admin.overview(adam)
