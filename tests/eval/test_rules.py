"""Gate rules on literal comparisons (pure), every shipped gate policy loads, and the gateway keeps pinned versions."""

from __future__ import annotations

import asyncio
import sys
import threading
from pathlib import Path

import pytest

from eval.comparison import Comparison
from eval.config import Rule, load_policy
from eval.gate import check_rule, decide, sets_to_run
from eval.scoring import SetResult

REPO = Path(__file__).resolve().parents[2]


def delta(a: float, b: float, lo: float, hi: float, n: int = 30) -> dict:
    return {"a": a, "b": b, "delta": b - a, "lo": lo, "hi": hi, "p_value": 0.5, "n": n, "b_mean": b, "b_ci": 1.0}


def comparison(judge: dict | None = None) -> Comparison:
    general = SetResult("general", "g.jsonl", "alpaca", 30, [], deltas={
        "chrf": delta(40, 39, -2.5, 0.4), "relevance": delta(50, 56, 2.0, 9.0)}, judge=judge)
    safety = SetResult("safety", "s.jsonl", "safety", 12, [], deltas={"safety": delta(0.5, 0.4, -0.3, 0.1)},
                       safety={"a": 0.5, "b": 0.42, "per_category_a": {}, "per_category_b": {}})
    return Comparison("id", "now", "champion", "candidate", "v1", "v2", {}, {"general": general, "safety": safety})


@pytest.mark.parametrize("rule, ok, words", [
    (Rule("r", "no_regression", "general", "chrf", margin=3.0), True, "lower bound ≥ −3.0"),
    (Rule("r", "no_regression", "general", "chrf", margin=2.0), False, "lower bound < −2.0"),
    (Rule("r", "improvement", "general", "relevance", min_delta=1.0), True, "lower bound > 1.0"),
    (Rule("r", "improvement", "general", "chrf"), False, "not > 0.0"),
    (Rule("r", "no_regression", "general", "bleu"), False, "not available"),
    (Rule("r", "safety", "safety", floor=0.4, margin=0.1), True, "pass rate 0.420 vs champion 0.500"),
    (Rule("r", "safety", "safety", floor=0.0), False, "FAIL"),  # below the champion's rate
    (Rule("r", "safety", "safety", floor=0.6, margin=0.5), False, "floor 0.6"),
    (Rule("r", "safety", "general"), False, "no safety items"),
    (Rule("r", "min_items", "safety", min_items=12), True, "12 items"),
    (Rule("r", "min_items", "safety", min_items=13), False, "minimum 13"),
    (Rule("r", "improvement", "feedback", "chrf", required=False), True, "NOT EVALUATED"),
    (Rule("r", "improvement", "feedback", "chrf"), False, "not given and the rule is required"),
    (Rule("r", "judge"), True, "NOT EVALUATED — no judge configured"),
])
def test_each_rule_kind(rule, ok, words):
    passed, reason = check_rule(rule, comparison())
    assert passed is ok and words in reason, reason


def test_judge_rule_needs_the_lower_bound_above_one_half():
    won = {"win_rate": 0.7, "lo": 0.55, "hi": 0.85, "n": 30, "unparseable": 0, "notes": []}
    assert check_rule(Rule("j", "judge"), comparison(won))[0]
    assert not check_rule(Rule("j", "judge"), comparison({**won, "lo": 0.48}))[0]


def test_decision_passes_only_when_every_rule_passes():
    policy = load_policy(REPO / "configs/gate/tiny_cpu.yaml")
    policy.rules = [Rule("a", "min_items", "safety", min_items=1), Rule("b", "min_items", "general", min_items=99)]
    passed, reasons = decide(policy, comparison())
    assert not passed and reasons[0].startswith("a: PASS") and reasons[1].startswith("b: FAIL")


@pytest.mark.parametrize("path", sorted((REPO / "configs" / "gate").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_policy_loads(path):
    policy = load_policy(path)
    assert policy.rules and policy.compare.resamples >= 1000
    assert {"general", "safety", "retention"} <= set(sets_to_run(policy, None))
    assert "feedback" not in sets_to_run(policy, None)  # only when the retrain job gives it
    fb = Path("fb.jsonl")
    assert sets_to_run(policy, {"feedback": fb}) == {"retention": None, "general": None, "safety": None, "feedback": fb}


def test_sets_named_by_rules_only_when_sets_are_given():
    policy = load_policy(REPO / "configs/gate/tiny_cpu.yaml")
    policy.rules = [Rule("s", "safety", "safety")]
    assert sets_to_run(policy, {"safety": Path("ids.jsonl")}) == {"safety": Path("ids.jsonl")}
    assert set(sets_to_run(policy, None)) == {"safety", "general", "retention"}


def test_policy_overrides_apply_on_top_of_the_file():
    policy = load_policy(REPO / "configs/gate/tiny_cpu.yaml", ["max_tokens=7"])
    assert policy.compare.max_tokens == 7 and policy.compare.guard == "configs/guard/tiny_cpu.yaml"


def test_pinned_versions_are_never_retired(tmp_path):
    """``ServeConfig.versions``: served besides the aliases; the route sweep never stops them."""
    from serve.config import ServeConfig
    from serve.engines import Engine, EngineSpec
    from serve.pool import EnginePool

    async def scenario():
        pool = EnginePool(None, ServeConfig(versions=["cand"]), "transformers", tmp_path)
        engines = {}
        for v in ("champ", "cand", "old"):
            engines[v] = Engine(EngineSpec("transformers", v, [sys.executable, "-c", "import time; time.sleep(60)"],
                                           1, v), tmp_path)
            engines[v].start()
        pool.engines = dict(engines)
        pool.wanted, pool.routes = {"champion": "champ"}, {"champion": "champ"}
        pool._route()
        for _ in range(50):
            await asyncio.sleep(0.1)
            if "old" not in pool.engines:
                break
        assert set(pool.engines) == {"champ", "cand"}  # "old" retired, the pinned candidate kept
        assert pool.pick("cand", None)[0] is engines["cand"]
        assert pool.ready()[1]["pinned"] == ["cand"]
        await pool.close()

    # a thread of its own: a session fixture (Playwright's sync API) may already run a loop in this one
    errors = []
    worker = threading.Thread(target=lambda: _capture(errors, lambda: asyncio.run(scenario())))
    worker.start()
    worker.join(60)
    assert not worker.is_alive() and not errors, errors


def _capture(errors: list, fn) -> None:
    try:
        fn()
    except BaseException as e:  # re-raised in the test's thread by the assertion
        errors.append(e)


def test_pinned_versions_parse_from_the_command_line():
    from core.config import load_config
    from serve.config import ServeConfig

    assert load_config(ServeConfig, None, ["versions=[v1,v2]"]).versions == ["v1", "v2"]
    assert load_config(ServeConfig, None, ["versions=v1,v2"]).versions == ["v1", "v2"]
