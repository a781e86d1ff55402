"""What the gateway costs: 16 concurrent streaming clients against an engine directly and through the gateway.

    python benchmarks/gateway_overhead.py [MODEL_DIR] [--clients 16] [--requests 4] [--max-tokens 32]
        [--engine transformers] [--baseline-repo DIR]

Starts ``python -m serve`` in a throwaway home with MODEL_DIR (default: the shipped tiny model) as
champion, then runs the same load alternately against the engine's own port and the gateway
(direct, gateway, direct, gateway) and prints the throughput ratio (target >= 0.95) and the added
median time to first token and median request latency (target <= 5 ms). Figures go to
benchmarks/README.md.

``--baseline-repo DIR`` also starts the gateway of another source tree (e.g. ``git archive HEAD | tar -x -C
DIR``) with its own engine, and measures it in the same alternation: before and after, side by side.
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


def start_gateway(repo: Path, model: Path, engine: str) -> tuple[subprocess.Popen, Path, str]:
    """``python -m serve`` from source tree ``repo`` in a throwaway home with ``model`` as champion."""
    home = Path(tempfile.mkdtemp(prefix="oncoloop-bench-"))
    settings = get_settings({"ONCOLOOP_HOME": str(home)}).ensure_layout()
    shutil.copytree(model, settings.models_dir / "bench")
    registry = Registry(open_store(settings))
    registry.register(settings.models_dir / "bench")
    registry.set_alias("champion", "bench", "benchmark", "gateway overhead benchmark")
    port = free_port()
    with open(home / "gateway.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "serve", "--port", str(port), "--engine", engine,
                                 "vllm_enforce_eager=true"], cwd=repo,
                                env={**os.environ, "ONCOLOOP_HOME": str(home), "PYTHONPATH": str(repo)},
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    return proc, home, f"http://127.0.0.1:{port}"


def wait_ready(proc: subprocess.Popen, url: str) -> dict:
    deadline = time.monotonic() + 900
    while True:
        try:
            state = httpx.get(f"{url}/ready", timeout=5).json()
            if state["ready"]:
                return state
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline or proc.poll() is not None:
            raise RuntimeError(f"the gateway at {url} did not become ready")
        time.sleep(1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", type=Path, default=REPO / "assets" / "tiny-oncology-llama")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--requests", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--engine", default="transformers")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--baseline-repo", type=Path, help="also measure the gateway of this source tree")
    args = parser.parse_args()

    started = {"gateway": start_gateway(REPO, args.model, args.engine)}
    if args.baseline_repo:
        started["baseline"] = start_gateway(args.baseline_repo.resolve(), args.model, args.engine)
    failed = True
    try:
        states = {name: wait_ready(proc, url) for name, (proc, _, url) in started.items()}
        engine = states["gateway"]["engines"]["bench"]
        targets = {"direct": (engine["url"], engine["served_name"], {})}
        targets |= {name: (url, "champion", {"ab": False}) for name, (_, _, url) in started.items()}
        for url, model, extra in targets.values():  # warm every path up
            asyncio.run(load(url, model, 2, 1, 4, extra))
        runs: dict[str, list[dict]] = {name: [] for name in targets}
        for _ in range(args.rounds):
            for name, (url, model, extra) in targets.items():
                runs[name].append(asyncio.run(load(url, model, args.clients, args.requests, args.max_tokens, extra)))
        mean = {k: {m: statistics.mean(r[m] for r in v) for m in v[0]} for k, v in runs.items()}
        print(f"{args.engine} engine, {args.model.name}, {args.clients} concurrent streaming clients x "
              f"{args.requests} requests x {args.max_tokens} tokens, {args.rounds} rounds each, alternating "
              f"({', '.join(targets)}); load average before: {os.getloadavg()[0]:.1f}")
        for k, m in mean.items():
            print(f"  {k:8s} {m['tokens_per_s']:8.1f} tokens/s  median TTFT {m['ttft_ms']:7.1f} ms  "
                  f"median latency {m['latency_ms']:7.1f} ms")
        for k in (k for k in mean if k != "direct"):
            ratio = mean[k]["tokens_per_s"] / mean["direct"]["tokens_per_s"]
            print(f"{k}: throughput ratio {k}/direct: {ratio:.3f} (target >= 0.95); added median TTFT: "
                  f"{mean[k]['ttft_ms'] - mean['direct']['ttft_ms']:+.1f} ms; added median latency: "
                  f"{mean[k]['latency_ms'] - mean['direct']['latency_ms']:+.1f} ms (target <= 5 ms)")
        failed = False
    finally:
        for proc, home, _ in started.values():
            os.killpg(proc.pid, 15)
            proc.wait(60)
            if failed:
                print(f"gateway and engine logs kept in {home}", file=sys.stderr)
            else:
                shutil.rmtree(home, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
