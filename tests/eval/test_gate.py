"""The gate end to end on the tiny model: a candidate trained on the seed passes and is promoted; one trained
on shuffled answers is rejected and the champion stays. Also the judge against a real OpenAI-compatible
endpoint (the project's own gateway) and the errors a running gateway can cause."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from core.errors import OncoLoopError
from eval.comparison import run_comparison
from eval.config import CompareConfig
from eval.gate import run_gate
from eval.judge import OpenAIJudge, judge_pairs
from tests.eval.conftest import REPO, champion_of, run_module
from tests.helpers.gateway import registry_at

pytestmark = pytest.mark.slow
TINY = REPO / "configs" / "gate" / "tiny_cpu.yaml"


@pytest.fixture
def at_eval_home(eval_home, monkeypatch) -> Path:
    monkeypatch.setenv("ONCOLOOP_HOME", str(eval_home))
    return eval_home


def test_shuffled_candidate_is_rejected_and_the_champion_stays(at_eval_home):
    """In process, as the gate runs on a CPU (the gate through a running gateway: test_safety_gate.py)."""
    before, moves = champion_of(at_eval_home), len(registry_at(at_eval_home).history())
    d = run_gate("shuffled", TINY)
    assert not d.passed and not d.promoted
    assert champion_of(at_eval_home) == before and len(registry_at(at_eval_home).history()) == moves
    reasons = {r.split(":")[0]: r for r in d.reasons}
    assert "FAIL" in reasons["retention_chrf_no_regression"], d.reasons
    record = json.loads(d.decision_path.read_text())
    assert record["passed"] is False and record["promoted"] is False and record["candidate"] == "shuffled"
    report = json.loads((d.report_dir / "report.json").read_text())
    retention = report["sets"]["retention"]
    assert retention["deltas"]["chrf"]["hi"] < 0  # significantly worse, not just noisy
    assert retention["corpus"]["chrf"]["signature"].startswith("nrefs:1|")
    assert "FAILED" in (d.report_dir / "report.html").read_text()
    assert "worst regressions" in (d.report_dir / "report.md").read_text()


def test_candidate_trained_on_the_seed_passes_and_is_promoted(eval_home):
    """Through the command line, with the private gateway it starts and stops itself."""
    base = champion_of(eval_home)
    proc = run_module(eval_home, "eval.gate", "--candidate", "good", "--policy", str(TINY), "--by", "ci")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "PASSED" in proc.stdout and "promoted to champion" in proc.stdout
    move = registry_at(eval_home).history("champion")[-1]
    assert (move.from_version, move.to_version, move.actor) == (base, "good", "ci")
    assert move.report and Path(move.report).is_file() and "PASSED" in Path(move.report).read_text()
    decision = json.loads((Path(move.report).parent / "decision.json").read_text())
    assert decision["passed"] and decision["promoted"] and decision["champion"] == base
    assert not any("FAIL" in r for r in decision["reasons"])
    # on a CPU the answers were generated in process, in batches (no gateway, one request at a time)
    report = json.loads((Path(move.report).parent / "report.json").read_text())
    assert report["generation"]["backend"] == "local" and report["generation"]["generated"] > 0


def test_local_comparison_reuses_answers_a_version_already_gave(at_eval_home):
    cfg = CompareConfig(guard="configs/guard/tiny_cpu.yaml", retrieval=False, max_tokens=16, limit=3)
    first = run_comparison("shuffled", "good", {"general": None}, cfg, online=False)
    again = run_comparison("shuffled", "good", {"general": None}, cfg, online=False)
    assert first.generation["generated"] == 6 and first.generation["cached"] == 0
    assert again.generation["generated"] == 0 and again.generation["cached"] == 6
    assert [(i["a"], i["b"]) for i in again.sets["general"].items] == [(i["a"], i["b"]) for i in first.sets["general"].items]
    longer = run_comparison("shuffled", "good", {"general": None}, CompareConfig(
        guard="configs/guard/tiny_cpu.yaml", retrieval=False, max_tokens=17, limit=3), online=False)
    assert longer.generation["generated"] == 6  # other decoding settings: generated anew


def test_gateway_backend_starts_and_stops_a_private_gateway(at_eval_home):
    cfg = CompareConfig(backend="gateway", engine="transformers", guard="configs/guard/tiny_cpu.yaml", max_tokens=4,
                        limit=2)
    result = run_comparison("shuffled", "good", {"general": None}, cfg, online=False)
    assert result.generation["backend"] == "gateway" and result.gateway == "private"
    assert len(result.sets["general"].items) == 2
    log = max((at_eval_home / "runs" / "eval").glob("gateway-*.log"), key=lambda p: p.stat().st_mtime)
    port = int(log.stem.split("-")[1])
    import socket

    with socket.socket() as sock:  # the private gateway is gone: nothing listens on its port any more
        assert sock.connect_ex(("127.0.0.1", port)) != 0


def test_a_version_the_gateway_does_not_serve_is_a_clear_error(at_eval_home, eval_gateway):
    target = at_eval_home / "models" / "unserved"
    if not target.exists():
        shutil.copytree(at_eval_home / "models" / "good", target)
        registry_at(at_eval_home).register(target)
    cfg = CompareConfig(gateway_url=eval_gateway.url, max_tokens=4, limit=1)
    with pytest.raises(OncoLoopError, match="does not serve 'unserved'.*versions=\\[unserved\\]"):
        run_comparison("shuffled", "unserved", {"general": None}, cfg, online=False)


def rubric(tmp_path: Path) -> Path:
    path = tmp_path / "rubric.md"  # short: the tiny model's context is 512 tokens
    path.write_text("Q: {question}\nRef: {reference}\n1: {answer_1}\n2: {answer_2}\nEnd with VERDICT: 1, 2 or TIE.\n")
    return path


def test_judge_on_a_real_endpoint_unreadable_verdicts_error_or_tie(eval_gateway, tmp_path):
    """The tiny model cannot judge: its verdicts are unreadable; policy `error` stops, `tie` counts ties."""
    from eval.judge import load_rubric

    judge = OpenAIJudge(eval_gateway.url, "good", load_rubric(rubric(tmp_path)), api_key=eval_gateway.key, max_tokens=8)
    args = (["What is ECOG 0?", "Define neutropenia."], ["Fully active.", None], ["Fully active.", "Low ANC."],
            ["Bedbound.", "Neutrophils below 1.5."])
    with pytest.raises(OncoLoopError, match="VERDICT.*judge_unparseable=tie"):
        judge_pairs(judge, *args, unparseable="error", concurrency=1)
    result = judge_pairs(judge, *args, unparseable="tie", concurrency=1)
    assert result.unparseable == 4 and result.scores == [0.5, 0.5] and "ties" in result.notes[0]


def test_unreachable_judge_stops_the_gate_before_any_answer(at_eval_home, tmp_path):
    from core.process import free_port

    before = champion_of(at_eval_home)
    with pytest.raises(OncoLoopError, match="judge at http://127.0.0.1:\\d+ is unreachable"):
        run_gate("shuffled", TINY, overrides=[f"judge_url=http://127.0.0.1:{free_port()}", "judge_model=j",
                                              f"judge_rubric={rubric(tmp_path)}"])
    assert champion_of(at_eval_home) == before


def test_compare_command_with_a_judge_through_the_gateway(at_eval_home, eval_gateway, tmp_path, capsys, monkeypatch):
    """`python -m eval.compare` on a running gateway, the judge being that gateway too (unreadable -> ties)."""
    from eval import compare

    monkeypatch.setenv("ONCOLOOP_TEST_JUDGE_KEY", eval_gateway.key)  # the judge's key, named by judge_api_key_env

    code = compare.main(["--a", "shuffled", "--b", "good", "--gateway-url", eval_gateway.url, "--set", "general",
                         "limit=3", "max_tokens=8", f"judge_url={eval_gateway.url}", "judge_model=good",
                         "judge_unparseable=tie", "judge_max_tokens=4", f"judge_rubric={rubric(tmp_path)}",
                         "judge_api_key_env=ONCOLOOP_TEST_JUDGE_KEY"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "general    chrf" in out and "signature nrefs:1|case:mixed|eff:yes|nc:6" in out
    report = next((at_eval_home / "reports").glob("*-shuffled-vs-good"))
    data = json.loads((report / "report.json").read_text())
    judge = data["sets"]["general"]["judge"]
    assert judge["n"] == 3 and judge["unparseable"] == 6 and judge["win_rate"] == 0.5
    assert "Judge (general)" in (report / "report.md").read_text()
