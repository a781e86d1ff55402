"""The closed loop: reviewed clinician feedback -> a challenger -> the gate -> a promoted, served model.

Usage::

    python -m finetune.retrain                                   # configs/retrain/smollm2_cpu.yaml
    python -m finetune.retrain --method ptuning --min-new-records 20
    python -m finetune.retrain --config configs/retrain/llama3_8b_gpu.yaml gateway_url=http://127.0.0.1:8000/v1
    python -m finetune.retrain --dry-run                         # say what would happen, change nothing

Steps: export the reviewed feedback the champion has not been trained on (PHI scrubbed, de-duplicated,
decontaminated) -> a content-addressed dataset snapshot (seed replay + the new records) -> train from the
champion with DeepSpeed in a child process -> merge and register the candidate with its lineage -> the gate
(``eval.gate``) -> promote or reject. A running gateway follows the ``champion`` alias and hot-swaps.

Safe to run from cron: ``--min-new-records`` makes an idle run a no-op, and a lock keeps two retrains
apart. Killed at any point (even ``kill -9``), the same command picks up where it stopped: the snapshot,
the training run (from its last checkpoint) and the candidate are all named after the data, and no alias
moves before the gate passes. Exit status 0 for a promotion, a clean rejection or nothing to do.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from core.config import config_dict, load_config
from core.errors import cli_command
from core.settings import get_settings
from finetune.retrain_config import RetrainConfig
from finetune.retrain_steps import (RetrainLock, Snapshot, build_snapshot, candidate_version, check_config,
                                    export_new_feedback, train_candidate)

DEFAULT_CONFIG = Path("configs/retrain/smollm2_cpu.yaml")


def _parse(argv: list[str] | None) -> tuple[RetrainConfig, bool]:
    """The checked RetrainConfig (file, then options, then key=value overrides) and whether this is a dry run."""
    parser = argparse.ArgumentParser(prog="python -m finetune.retrain", description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, help=f"a RetrainConfig YAML (default {DEFAULT_CONFIG})")
    parser.add_argument("--method", choices=("lora", "ptuning", "full"), help="default: the recipe's (LoRA)")
    parser.add_argument("--min-new-records", type=int, help="do nothing below this many new reviewed records")
    parser.add_argument("--dry-run", action="store_true", help="export and plan, then stop: nothing is trained")
    parser.add_argument("overrides", nargs="*", help="key=value RetrainConfig overrides, e.g. new_share=0.5")
    args = parser.parse_args(argv)
    overrides = list(args.overrides)
    if args.method:
        overrides.append(f"method={args.method}")
    if args.min_new_records is not None:
        overrides.append(f"min_new_records={args.min_new_records}")
    config_file = args.config or (DEFAULT_CONFIG if DEFAULT_CONFIG.is_file() else None)
    cfg = load_config(RetrainConfig, config_file, overrides)
    check_config(cfg)
    return cfg, args.dry_run


def _gate(candidate: str, cfg: RetrainConfig, snap: Snapshot, settings):
    """The gate's decision on ``candidate``; only a pass moves the champion (a running gateway then hot-swaps).

    It asks the gateway with retrain's own key (scope eval), unless $ONCOLOOP_API_KEY names one; the key is
    the gate's only: nothing else in this process (a caller, a test) inherits it.
    """
    from eval.gate import run_gate
    from feedback.keys import API_KEY_ENV, local_key

    given = os.environ.get(API_KEY_ENV)
    os.environ[API_KEY_ENV] = given or local_key("retrain", ("eval",), settings)
    try:
        return run_gate(candidate, policy=Path(cfg.gate_policy), sets={"feedback": snap.new_path},
                        gateway_url=cfg.gateway_url or None, actor=cfg.actor, promote=cfg.promote)
    finally:
        if given is None:
            os.environ.pop(API_KEY_ENV, None)


@cli_command
def main(argv: list[str] | None = None) -> int:
    cfg, dry_run = _parse(argv)
    settings = get_settings().ensure_layout()
    started = time.perf_counter()
    with RetrainLock(settings.home / "retrain.lock"):
        from feedback.db import open_store
        from serve.registry import Registry

        registry = Registry(open_store(settings))
        champion = registry.get("champion")

        # 1. The reviewed feedback the champion has not learnt yet.
        new, export_info = export_new_feedback(cfg, registry, champion, settings)
        print(f"retrain: champion {champion.id}; {len(new)} new reviewed records "
              f"({export_info['already_used']} already learnt by the champion's lineage, left out)")
        if len(new) < cfg.min_new_records:
            print(f"retrain: nothing to do: {len(new)} new reviewed records, fewer than min_new_records="
                  f"{cfg.min_new_records}.")
            return 0

        # 2. The dataset snapshot: seed replay + the new records, named by its content.
        snap = build_snapshot(cfg, new, champion, export_info, settings)
        print(f"retrain: dataset {snap.dir} ({snap.train_examples} examples: {snap.replay} seed, "
              f"{len(new)} new x{snap.repeats}; sha256 {snap.sha256[:12]})")
        if dry_run:
            print(f"retrain: dry run: would train {snap.version} ({cfg.method or 'recipe'}) from {champion.id} "
                  f"and gate it with {cfg.gate_policy}; nothing trained, no alias moved.")
            return 0

        # 3. Train (a child process; a rerun resumes from its last checkpoint), merge and register.
        final_dir = train_candidate(cfg, snap, champion)
        candidate = candidate_version(final_dir, snap, champion, registry, config_dict(cfg))
        print(f"retrain: candidate {candidate} registered (parent {champion.id})")

        # 4. The gate decides; only a pass moves the champion.
        decision = _gate(candidate, cfg, snap, settings)
    _print_summary(snap, candidate, champion.id, decision, time.perf_counter() - started)
    return 0


def _print_summary(snap: Snapshot, candidate: str, champion: str, decision, seconds: float) -> None:
    verdict = "PASSED" if decision.passed else "REJECTED"
    after = "promoted to champion" if decision.promoted else (
        "not promoted (promote=false)" if decision.passed else f"champion stays {champion}")
    print(json.dumps({"dataset": str(snap.dir), "dataset_sha256": snap.sha256, "new_records": snap.new_records,
                      "candidate": candidate, "parent": champion, "gate": verdict, "promoted": decision.promoted,
                      "report": str(decision.report_dir), "seconds": round(seconds, 1)}, indent=2))
    print(f"retrain: gate {verdict} for {candidate}: {after}.")
    for reason in decision.reasons:
        print(f"  - {reason}")
    print(f"retrain: report {decision.report_dir}; took {seconds / 60:.1f} min")


if __name__ == "__main__":
    sys.exit(main())
