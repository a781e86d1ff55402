"""Bad input to compare and gate: a clear message, exit status 2 from the commands, and the champion unchanged.
All of these fail before any gateway is started."""

from __future__ import annotations

import json
import shutil

import pytest

from eval import compare, gate
from eval.gate import run_gate
from core.errors import OncoLoopError
from tests.helpers.gateway import registry_at


@pytest.fixture
def home(oncoloop_home, bundled_model):
    """The bundled model as champion, a registered copy of it (``copy``) and a version without weights."""
    from finetune.bootstrap import install

    install(bundled_model)
    registry = registry_at(oncoloop_home)
    shutil.copytree(bundled_model, oncoloop_home / "models" / "copy")
    registry.register(oncoloop_home / "models" / "copy")
    half = oncoloop_home / "models" / "half"
    half.mkdir()
    (half / "meta.json").write_text(json.dumps({"method": "lora", "base": "x"}))
    registry.register(half)  # registered, but its weights never arrived
    return oncoloop_home


def champion(home) -> str:
    return registry_at(home).resolve("champion")


@pytest.mark.parametrize("candidate, message", [
    ("nope", "unknown model or version 'nope'; known versions: tiny-base-"),
    ("half", "version half is not ready: .* no meta.json or no weights"),
])
def test_unknown_or_unfinished_candidate(home, candidate, message, capsys):
    before = champion(home)
    with pytest.raises(OncoLoopError, match=message):
        run_gate(candidate)
    assert gate.main(["--candidate", candidate]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err
    assert champion(home) == before


def test_candidate_that_is_already_champion(home):
    with pytest.raises(OncoLoopError, match="already the champion"):
        run_gate(champion(home))


@pytest.mark.parametrize("content, message", [
    ("", "is empty"),
    ("not json\n", "not a JSON record"),
    ('{"instruction": "Q?", "input": "", "output": ""}\n', "not valid alpaca data"),
    ('{"prompt": "q", "chosen": "a", "rejected": "b"}\n', "holds preference records"),
])
def test_empty_or_malformed_set(home, tmp_path, content, message, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(content)
    before = champion(home)
    with pytest.raises(OncoLoopError, match=message):
        run_gate("copy", sets={"feedback": bad})
    assert compare.main(["--b", "copy", "--set", f"feedback={bad}"]) == 2
    assert "error: evaluation set 'feedback'" in capsys.readouterr().err
    assert champion(home) == before


def test_set_name_without_a_file(home):
    with pytest.raises(OncoLoopError, match="no file for the set 'feedback'"):
        compare.main.__wrapped__(["--b", "copy", "--set", "feedback"])


@pytest.mark.parametrize("policy, message", [
    ("rules:\n  r1: {kind: vibes, set: general}\n", "rule 'r1' has unknown kind 'vibes'; use one of no_regression"),
    ("rules:\n  r1: {kind: no_regression, set: general, metric: chrf, floor: 3}\n", "does not take floor"),
    ("rules:\n  r1: {kind: no_regression, set: general, metric: meteor}\n", "metric 'meteor'"),
    ("rules: {}\n", "has no rules"),
    ("rule:\n  r1: {kind: min_items, set: general}\n", "unknown key\\(s\\) rule"),
    ("compare: {max_tokenz: 3}\nrules:\n  r1: {kind: min_items, set: general}\n", "unknown config key\\(s\\) max_tokenz"),
    ("compare: {resamples: 100}\nrules:\n  r1: {kind: min_items, set: general}\n", "at least 1000"),
    ("rules: [\n", "not valid YAML"),
])
def test_bad_policy(home, tmp_path, policy, message, capsys):
    path = tmp_path / "policy.yaml"
    path.write_text(policy)
    before = champion(home)
    with pytest.raises(OncoLoopError, match=message):
        run_gate("copy", path)
    assert gate.main(["--candidate", "copy", "--policy", str(path)]) == 2
    assert champion(home) == before


def test_unreachable_gateway(home):
    from eval.client import free_port

    before = champion(home)
    with pytest.raises(OncoLoopError, match="gateway at http://127.0.0.1:\\d+ is unreachable"):
        run_gate("copy", gateway_url=f"http://127.0.0.1:{free_port()}", overrides=["retries=0", "limit=1"])
    assert champion(home) == before
