import json

import pytest

from core.errors import OncoLoopError
from feedback.db import open_store
from serve import registry as registry_cli
from serve.registry import Registry


def make_version(models_dir, name, **meta):
    path = models_dir / name
    path.mkdir(parents=True)
    (path / "meta.json").write_text(json.dumps({"method": "lora", "base": "b", **meta}))
    return path


@pytest.fixture
def registry(oncoloop_home):
    return Registry(open_store())


def test_register_alias_and_history(registry, oncoloop_home):
    v1 = make_version(oncoloop_home / "models", "v1")
    v2 = make_version(oncoloop_home / "models", "v2", parent="v1")
    registry.register(v1)
    registry.register(v2)
    registry.set_alias("champion", "v1", "admin", "first")
    registry.set_alias("champion", "v2", "admin", "gate passed", report="reports/r1")
    assert registry.resolve("champion") == "v2"
    assert registry.get("v2").parent == "v1"
    moves = registry.history("champion")
    assert [(m.from_version, m.to_version, m.reason, m.report) for m in moves] == [
        (None, "v1", "first", None), ("v1", "v2", "gate passed", "reports/r1")]


def test_versions_are_immutable(registry, oncoloop_home, tmp_path):
    registry.register(make_version(oncoloop_home / "models", "v1"))
    registry.register(oncoloop_home / "models" / "v1")  # same directory again: fine
    other = make_version(tmp_path / "elsewhere", "v1")
    with pytest.raises(OncoLoopError, match="immutable"):
        registry.register(other)


@pytest.mark.parametrize("call,message", [
    (lambda r: r.get("nope"), "unknown model or version 'nope'"),
    (lambda r: r.set_alias("champion", "nope", "a", "why"), "unknown model or version"),
    (lambda r: r.set_alias("king", "v1", "a", "why"), "unknown alias"),
    (lambda r: r.set_alias("champion", "v1", "a", "  "), "needs a reason"),
])
def test_bad_requests_leave_aliases_unchanged(registry, oncoloop_home, call, message):
    registry.register(make_version(oncoloop_home / "models", "v1"))
    registry.set_alias("champion", "v1", "admin", "first")
    with pytest.raises(OncoLoopError, match=message):
        call(registry)
    assert registry.aliases() == {"champion": "v1"}
    assert len(registry.history()) == 1


def test_incomplete_directory_is_refused(registry, oncoloop_home):
    (oncoloop_home / "models" / "half").mkdir(parents=True)
    with pytest.raises(OncoLoopError, match="no meta.json"):
        registry.register(oncoloop_home / "models" / "half")


def test_cli_lists_and_moves(registry, oncoloop_home, capsys, monkeypatch):
    from feedback.store import FeedbackStore

    FeedbackStore(registry.store).add_user("ana", "ana-password", "admin")
    monkeypatch.setenv("ONCOLOOP_PASSWORD", "ana-password")
    registry.register(make_version(oncoloop_home / "models", "v1"))
    # an admin's move; v1 has no gate decision, so it is forced (tests/security try it without)
    assert registry_cli.main(["alias", "champion", "v1", "--user", "ana", "--reason", "initial", "--force"]) == 0
    assert registry.history("champion")[-1].actor == "ana" and registry.history("champion")[-1].forced
    assert registry_cli.main(["list"]) == 0
    assert "v1  method=lora" in capsys.readouterr().out
    assert registry_cli.main(["show", "ghost"]) == 2
    assert "unknown model or version 'ghost'" in capsys.readouterr().err
