"""What the gateway costs: 16 concurrent streaming clients against an engine directly and through the gateway.

    python benchmarks/gateway_overhead.py [MODEL_DIR] [--clients 16] [--requests 4] [--max-tokens 32] [--engine transformers]

Starts ``python -m serve`` in a throwaway home with MODEL_DIR (default: the shipped tiny model) as
champion, then runs the same load alternately against the engine's own port and the gateway
(direct, gateway, direct, gateway) and prints the throughput ratio (target >= 0.95) and the added
median time to first token and median request latency (target <= 5 ms). Figures go to
benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from feedback.db import open_store  # noqa: E402
from feedback.settings import get_settings  # noqa: E402
from serve.engines import free_port  # noqa: E402
from serve.registry import Registry  # noqa: E402

QUESTION = [{"role": "user", "content": "What are the warning signs of spinal cord compression?"}]


async def one_stream(client: httpx.AsyncClient, url: str, model: str, max_tokens: int,
                     extra: dict) -> tuple[float, float, int]:
    """(time to first token, total time, content chunks) of one streamed answer."""
    started = time.perf_counter()
    first, chunks = None, 0
    body = {"model": model, "messages": QUESTION, "max_tokens": max_tokens, "stream": True, **extra}
    async with client.stream("POST", f"{url}/v1/chat/completions", json=body) as r:
        r.raise_for_status()
        async for line in r.aiter_lines():
            if line.startswith("data: {") and '"content"' in line:
                chunks += 1
                first = first or time.perf_counter() - started
    return first or float("nan"), time.perf_counter() - started, chunks


async def load(url: str, model: str, clients: int, requests: int, max_tokens: int, extra: dict | None = None) -> dict:
    """``clients`` concurrent clients, each streaming ``requests`` answers one after another."""
    async with httpx.AsyncClient(timeout=600, limits=httpx.Limits(max_connections=clients * 2)) as client:
        async def worker():
            return [await one_stream(client, url, model, max_tokens, extra or {}) for _ in range(requests)]

        started = time.perf_counter()
        results = [r for rs in await asyncio.gather(*(worker() for _ in range(clients))) for r in rs]
        wall = time.perf_counter() - started
    return {"tokens_per_s": sum(r[2] for r in results) / wall, "ttft_ms": statistics.median(r[0] for r in results)
            * 1e3, "latency_ms": statistics.median(r[1] for r in results) * 1e3, "requests": len(results)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", type=Path, default=REPO / "assets" / "tiny-oncology-llama")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--requests", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--engine", default="transformers")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="oncoloop-bench-"))
    settings = get_settings({"ONCOLOOP_HOME": str(home)}).ensure_layout()
    shutil.copytree(args.model, settings.models_dir / "bench")
    registry = Registry(open_store(settings))
    registry.register(settings.models_dir / "bench")
    registry.set_alias("champion", "bench", "benchmark", "gateway overhead benchmark")
    port = free_port()
    gateway = f"http://127.0.0.1:{port}"
    gateway_log = open(home / "gateway.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "serve", "--port", str(port), "--engine", args.engine,
                             "vllm_enforce_eager=true"], cwd=REPO, env={**os.environ, "ONCOLOOP_HOME": str(home)},
                            stdout=gateway_log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 900
        while True:
            try:
                state = httpx.get(f"{gateway}/ready", timeout=5).json()
                if state["ready"]:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                print("the gateway did not become ready", file=sys.stderr)
                return 1
            time.sleep(1)
        engine = state["engines"]["bench"]
        direct, served_name = engine["url"], engine["served_name"]
        asyncio.run(load(direct, served_name, 2, 1, 4))  # warm both paths up
        asyncio.run(load(gateway, "champion", 2, 1, 4, {"ab": False}))
        runs: dict[str, list[dict]] = {"direct": [], "gateway": []}
        for _ in range(args.rounds):
            runs["direct"].append(asyncio.run(load(direct, served_name, args.clients, args.requests, args.max_tokens)))
            runs["gateway"].append(asyncio.run(load(gateway, "champion", args.clients, args.requests,
                                                    args.max_tokens, {"ab": False})))
        mean = {k: {m: statistics.mean(r[m] for r in v) for m in v[0]} for k, v in runs.items()}
        print(f"{args.engine} engine, {args.model.name}, {args.clients} concurrent streaming clients x "
              f"{args.requests} requests x {args.max_tokens} tokens, {args.rounds} rounds each, alternating")
        for k in ("direct", "gateway"):
            m = mean[k]
            print(f"  {k:8s} {m['tokens_per_s']:8.1f} tokens/s  median TTFT {m['ttft_ms']:7.1f} ms  "
                  f"median latency {m['latency_ms']:7.1f} ms")
        ratio = mean["gateway"]["tokens_per_s"] / mean["direct"]["tokens_per_s"]
        print(f"throughput ratio gateway/direct: {ratio:.3f} (target >= 0.95)")
        print(f"added median TTFT: {mean['gateway']['ttft_ms'] - mean['direct']['ttft_ms']:+.1f} ms; added median "
              f"latency: {mean['gateway']['latency_ms'] - mean['direct']['latency_ms']:+.1f} ms (target <= 5 ms)")
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(60)
        if sys.exc_info()[0] is None:
            shutil.rmtree(home, ignore_errors=True)
        else:
            print(f"gateway and engine logs kept in {home}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
