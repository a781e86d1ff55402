"""Compare two versions on the evaluation sets through the gateway and write the report.

Usage::

    python -m eval.compare --a champion --b lora-20261128 [--set general --set feedback=FILE ...] \\
        [--config my_compare.yaml] [--gateway-url http://127.0.0.1:8000] [key=value ...]

Without ``--gateway-url`` a private gateway serving both versions is started and stopped. Scores: sacreBLEU
BLEU/chrF (with signatures), ROUGE-L, length, relevance, the safety suite, the optional judge
(``judge_url=... judge_model=...``), each difference B − A with a paired-bootstrap 95% interval; the
report (Markdown + HTML) goes to ``$ONCOLOOP_HOME/reports/<id>/``. Nothing in the registry changes.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from core.config import load_config
from core.errors import cli_command
from core.settings import get_settings
from eval.comparison import run_comparison
from eval.config import CompareConfig
from eval.report import write_report
from eval.sets import parse_set_args


@cli_command
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eval.compare", description=__doc__.splitlines()[0])
    parser.add_argument("--a", default="champion", help="baseline version or alias (default champion)")
    parser.add_argument("--b", required=True, help="version or alias compared with the baseline")
    parser.add_argument("--set", action="append", dest="sets", metavar="NAME[=FILE]",
                        help="an evaluation set (repeatable; default general, safety, retention)")
    parser.add_argument("--config", type=Path, help="a CompareConfig YAML file")
    parser.add_argument("--gateway-url", help="use this gateway instead of starting a private one")
    parser.add_argument("--no-online", action="store_true", help="leave out the online A/B results from the store")
    parser.add_argument("overrides", nargs="*", help="CompareConfig key=value overrides, e.g. max_tokens=128")
    args = parser.parse_args(argv)

    overrides = list(args.overrides) + ([f"gateway_url={args.gateway_url}"] if args.gateway_url else [])
    cfg = load_config(CompareConfig, args.config, overrides)
    c = run_comparison(args.a, args.b, parse_set_args(args.sets) or None, cfg, online=not args.no_online)
    html = write_report(c, get_settings().ensure_layout().reports_dir / c.id)

    print(f"compare: A = {c.a} ({c.a_version}), B = {c.b} ({c.b_version}); {c.duration_s:.0f} s")
    for s in c.sets.values():
        for metric, d in s.deltas.items():
            print(f"  {s.name:<10} {metric:<14} A {d['a']:7.2f}  B {d['b']:7.2f}  B−A {d['delta']:+7.2f}  "
                  f"95% CI [{d['lo']:+.2f}, {d['hi']:+.2f}]  n={d['n']}")
        for metric, v in s.corpus.items():
            print(f"  {s.name:<10} {metric} signature {v['signature']}")
    print(f"compare: report {html} (and report.md, report.json)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
