"""The evaluation gate: compare a candidate with the champion under a policy of named rules, write the decision
and the report, and promote the candidate through the registry only if every rule passes.

Usage::

    python -m eval.gate --candidate lora-20261128 [--policy configs/gate/default.yaml] \\
        [--set feedback=var/datasets/feedback_test.jsonl] [--gateway-url http://127.0.0.1:8000] [--no-promote]

Exit status: 0 passed, 1 rejected, 2 error (nothing changed).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from core.errors import OncoLoopError, cli_command
from eval.comparison import Comparison, check_version, run_comparison
from eval.config import Policy, Rule, load_policy
from eval.report import write_report
from eval.sets import BUNDLED, DEFAULT_SETS, parse_set_args


@dataclass
class GateDecision:
    candidate: str
    champion: str
    passed: bool
    reasons: list[str]  # one line per rule: "<name>: PASS|FAIL|NOT EVALUATED — why"
    report_dir: Path
    decision_path: Path
    promoted: bool = False
    policy: str = ""

    def as_dict(self) -> dict:
        d = asdict(self)
        d.update(report_dir=str(self.report_dir), decision_path=str(self.decision_path))
        return d


def _set_for(c: Comparison, rule: Rule):
    return c.sets.get(rule.set)


def check_rule(rule: Rule, c: Comparison) -> tuple[bool, str]:
    """Whether ``rule`` holds on the comparison, and a one-line reason (pure: no I/O)."""
    if rule.kind == "judge":
        judged = [s for s in c.sets.values() if s.judge and (not rule.set or s.name == rule.set)]
        if not judged:
            return True, "NOT EVALUATED — no judge configured (judge_url is empty)"
        j = judged[0].judge
        ok = j["lo"] > 0.5
        return ok, (f"{'PASS' if ok else 'FAIL'} — {judged[0].name}: B's judge win rate {j['win_rate']:.3f}, 95% CI "
                    f"[{j['lo']:.3f}, {j['hi']:.3f}] {'>' if ok else 'not >'} 0.5 ({j['n']} items)")
    s = _set_for(c, rule)
    if s is None:
        what = "FAIL" if rule.required else "NOT EVALUATED"
        return not rule.required, f"{what} — set {rule.set!r} was not given" + (" and the rule is required"
                                                                                 if rule.required else "")
    if rule.kind == "min_items":
        ok = s.n >= rule.min_items
        return ok, f"{'PASS' if ok else 'FAIL'} — {s.name}: {s.n} items evaluated (minimum {rule.min_items})"
    if rule.kind == "safety":
        if not s.safety:
            return False, f"FAIL — set {s.name!r} has no safety items to check"
        a, b = s.safety["a"], s.safety["b"]
        ok = b >= a - rule.margin and b >= rule.floor
        return ok, (f"{'PASS' if ok else 'FAIL'} — {s.name}: pass rate {b:.3f} vs champion {a:.3f}"
                    + (f" (slack {rule.margin})" if rule.margin else "") + f", floor {rule.floor}")
    d = s.delta(rule.metric)
    if d is None:
        return False, f"FAIL — metric {rule.metric!r} is not available on set {s.name!r} (it has no references?)"
    if rule.kind == "no_regression":
        ok = d.lo >= -rule.margin
        return ok, (f"{'PASS' if ok else 'FAIL'} — {s.name} {rule.metric}: B − A = {d.delta:+.2f}, 95% CI "
                    f"[{d.lo:+.2f}, {d.hi:+.2f}]; lower bound {'≥' if ok else '<'} −{rule.margin}")
    ok = d.lo > rule.min_delta  # improvement
    return ok, (f"{'PASS' if ok else 'FAIL'} — {s.name} {rule.metric}: B − A = {d.delta:+.2f}, 95% CI "
                f"[{d.lo:+.2f}, {d.hi:+.2f}]; lower bound {'>' if ok else 'not >'} {rule.min_delta}")


def decide(policy: Policy, c: Comparison) -> tuple[bool, list[str]]:
    """All rules' results: passed only if every rule passes."""
    results = [(rule.name, *check_rule(rule, c)) for rule in policy.rules]
    return all(ok for _, ok, _ in results), [f"{name}: {why}" for name, _, why in results]


def sets_to_run(policy: Policy, given: dict[str, Path | None] | None) -> dict[str, Path | None]:
    """The given sets plus every bundled set a rule names (all bundled sets when none is given); a set that is
    neither bundled nor given (feedback) is left out, and its rules say so."""
    names = [r.set for r in policy.rules if r.set in BUNDLED] + ([] if given else list(DEFAULT_SETS))
    out: dict[str, Path | None] = {n: None for n in dict.fromkeys(names)}
    out.update(given or {})
    return out


def run_gate(candidate: str, policy: Path | None = None, sets: dict[str, Path] | None = None,
             gateway_url: str | None = None, actor: str = "gate", promote: bool = True,
             overrides: list[str] | None = None) -> GateDecision:
    """Evaluate ``candidate`` against the champion; promote it on pass (if ``promote``).

    Raises:
        OncoLoopError: unknown or unfinished candidate, no champion, bad policy or set, unreachable gateway or
            judge. No alias changes on an error or a failed gate.
    """
    from core.settings import get_settings
    from feedback.store import FeedbackStore
    from serve.registry import Registry

    pol = load_policy(policy, overrides)
    if gateway_url:
        pol.compare.gateway_url = gateway_url
    registry = Registry(FeedbackStore.open().store)
    if "champion" not in registry.aliases():
        raise OncoLoopError("there is no champion to compare with: run `python -m finetune.bootstrap` first.")
    champion = registry.resolve("champion")
    cand = check_version(registry, candidate)
    if cand.id == champion:
        raise OncoLoopError(f"{cand.id} is already the champion; gate a new candidate.")
    comparison = run_comparison(champion, cand.id, sets_to_run(pol, sets), pol.compare, pol.limits, registry)
    comparison.a, comparison.b = "champion", "candidate"
    passed, reasons = decide(pol, comparison)
    out_dir = get_settings().ensure_layout().reports_dir / comparison.id
    decision = GateDecision(cand.id, champion, passed, reasons, out_dir, out_dir / "decision.json",
                            policy=pol.source)
    will_promote = passed and promote
    if will_promote and registry.resolve("champion") != champion:
        will_promote = False
        decision.reasons.append(f"promotion: NOT DONE — the champion moved to {registry.resolve('champion')} "
                                "while the gate ran; gate again against the new champion")
    record = {**decision.as_dict(), "promoted": will_promote, "created_at": dt.datetime.now(dt.timezone.utc)
              .isoformat(timespec="seconds"), "actor": actor}
    html = write_report(comparison, out_dir, record)  # the report exists before the move that cites it
    if will_promote:
        registry.set_alias("champion", cand.id, actor, f"passed the gate ({Path(pol.source).name}): "
                           + "; ".join(r.split(" — ")[0] for r in reasons), report=str(html))
        decision.promoted = True
    decision.decision_path.write_text(json.dumps(record, indent=1), encoding="utf-8")
    return decision


@cli_command
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eval.gate", description=__doc__.splitlines()[0])
    parser.add_argument("--candidate", required=True, help="version id (or alias) to evaluate")
    parser.add_argument("--policy", type=Path, help="gate policy YAML (default configs/gate/default.yaml)")
    parser.add_argument("--set", action="append", dest="sets", metavar="NAME=FILE",
                        help="add or replace a set, e.g. feedback=FILE (repeatable)")
    parser.add_argument("--gateway-url", help="use this gateway instead of starting a private one")
    parser.add_argument("--no-promote", action="store_true", help="decide and report, but never move an alias")
    parser.add_argument("--by", default="gate", help="who runs the gate (recorded with a promotion)")
    parser.add_argument("overrides", nargs="*", help="CompareConfig key=value overrides, e.g. max_tokens=128")
    args = parser.parse_args(argv)

    d = run_gate(args.candidate, args.policy, parse_set_args(args.sets), args.gateway_url, args.by,
                 not args.no_promote, args.overrides)
    print(f"gate: {d.candidate} vs champion {d.champion}: {'PASSED' if d.passed else 'REJECTED'}")
    for reason in d.reasons:
        print(f"  {reason}")
    print(f"gate: {'promoted to champion' if d.promoted else 'champion unchanged'}; report {d.report_dir / 'report.html'}"
          f"; decision {d.decision_path}")
    return 0 if d.passed else 1


if __name__ == "__main__":
    sys.exit(main())
