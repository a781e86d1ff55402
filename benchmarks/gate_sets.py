"""The gate's generation, one call per set (before 2026-12-07) against every set in one call, side by side.

    python benchmarks/gate_sets.py [--policy configs/gate/smollm2_cpu.yaml] [--version champion]

Uses ``$ONCOLOOP_HOME`` (default: a new home with the embedded default installed by ``finetune.bootstrap``),
loads the version in process as the gate does (``eval.local``: guard, greedy, continuous batches), and answers
the policy's sets (general, retention, safety, at the policy's limits) both ways, nothing cached. Prints
tokens/s of each and their ratio, and checks that the answers are the same.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policy", default="configs/gate/smollm2_cpu.yaml")
    parser.add_argument("--version", default="champion")
    args = parser.parse_args()
    if "ONCOLOOP_HOME" not in os.environ:
        os.environ["ONCOLOOP_HOME"] = tempfile.mkdtemp(prefix="oncoloop-gate-sets-")
        subprocess.run([sys.executable, "-m", "finetune.bootstrap"], cwd=REPO, check=True)

    from eval.comparison import load_sets
    from eval.config import load_policy
    from eval.gate import sets_to_run
    from eval.local import ask_local, open_engines
    from feedback.db import open_store
    from serve.registry import Registry

    policy = load_policy(REPO / args.policy)
    cfg = policy.compare
    registry = Registry(open_store())
    vid = registry.get(args.version).id
    engine = open_engines(registry, [vid], cfg.guard, cfg.retrieval)[vid]
    sets = load_sets(sets_to_run(policy, None), cfg, policy.limits)
    print(f"{vid}: sets {', '.join(f'{s.name} {len(s.items)}' for s in sets)}; {cfg.max_tokens} new tokens at most, "
          f"{cfg.batch_size} in flight", flush=True)

    t, per_set, tokens = time.monotonic(), [], 0
    for s in sets:
        answers, spent = ask_local(engine, s.items, cfg.max_tokens, cfg.batch_size, None, s.name,
                                   cfg.retrieval_for(s.name))
        per_set += answers
        tokens += spent["tokens"]
    per_set_s = time.monotonic() - t

    items = [item for s in sets for item in s.items]
    flags = [cfg.retrieval_for(s.name) for s in sets for _ in s.items]
    t = time.monotonic()
    together, spent = ask_local(engine, items, cfg.max_tokens, cfg.batch_size, None, "all sets", flags)
    together_s = time.monotonic() - t

    same = sum(a.text == b.text for a, b in zip(per_set, together))
    print(f"one call per set: {tokens} tokens in {per_set_s:.1f} s = {tokens / per_set_s:.1f} tok/s")
    print(f"every set in one call: {spent['tokens']} tokens in {together_s:.1f} s = "
          f"{spent['tokens'] / together_s:.1f} tok/s")
    print(f"ratio (one call / per set): {(spent['tokens'] / together_s) / (tokens / per_set_s):.2f}x; "
          f"answers identical: {same}/{len(items)}")


if __name__ == "__main__":
    main()
