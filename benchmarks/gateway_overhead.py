"""What the gateway costs: 16 concurrent streaming clients against an engine directly and through the gateway.

    python benchmarks/gateway_overhead.py [MODEL_DIR] [--clients 16] [--requests 4] [--max-tokens 32]
        [--engine transformers] [--baseline-repo DIR]

Starts ``python -m serve`` in a throwaway home with MODEL_DIR (default: the shipped tiny model) as
champion, then runs the same load alternately against the engine's own port and the gateway
(direct, gateway, direct, gateway) and prints the throughput ratio (target >= 0.95) and the added
median time to first token and median request latency (target <= 5 ms), each round's figures, and
the gateway process's own CPU time per streamed chunk. Figures go to benchmarks/README.md.

The engine does the same work on both paths: direct requests carry the messages the gateway's guard
would send (its system preamble first), so only the relay differs. ``--clients 1`` measures the
latency the gateway adds to one request without 16 streams queueing behind a one-at-a-time engine.

The added latency is also measured paired (``--paired N``, default 100): one client sends N requests
directly and N through the gateway, alternating request by request, and the script prints the median of
the per-pair differences with a bootstrap 95% interval. On a one-at-a-time engine the 16-client medians
are seconds of queueing whose round-to-round spread (±10%) is far wider than the 5 ms target; the pairs
compare requests that met the same engine one after the other.

``--pin`` gives the engine CPU 0 (one torch thread) and the gateway and this script the other CPUs: a
host where the gateway does not take CPU from generation, as on a GPU machine. Without it, on a small
CPU machine every cycle the gateway spends per streamed token is taken from the engine beside it.

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
import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from core.process import free_port  # noqa: E402
from core.settings import get_settings  # noqa: E402
from eval.stats import resample_indices  # noqa: E402
from feedback.db import open_store  # noqa: E402
from gateway_profile import cpu_seconds  # noqa: E402  (this folder; own CPU time, not the engine's)
from serve.guard import load_guard  # noqa: E402
from serve.registry import Registry  # noqa: E402

QUESTION = [{"role": "user", "content": "What are the warning signs of spinal cord compression?"}]


async def one_stream(client: httpx.AsyncClient, url: str, model: str, max_tokens: int,
                     extra: dict, headers: dict | None = None) -> tuple[float, float, int]:
    """(time to first token, total time, content chunks) of one streamed answer."""
    started = time.perf_counter()
    first, chunks = None, 0
    body = {"model": model, "messages": QUESTION, "max_tokens": max_tokens, "stream": True, **extra}
    async with client.stream("POST", f"{url}/v1/chat/completions", json=body, headers=headers) as r:
        r.raise_for_status()
        async for line in r.aiter_lines():
            if line.startswith("data: {") and '"content"' in line:
                chunks += 1
                first = first or time.perf_counter() - started
    return first or float("nan"), time.perf_counter() - started, chunks


async def load(url: str, model: str, clients: int, requests: int, max_tokens: int, extra: dict | None = None,
               headers: dict | None = None) -> dict:
    """``clients`` concurrent clients, each streaming ``requests`` answers one after another."""
    async with httpx.AsyncClient(timeout=600, limits=httpx.Limits(max_connections=clients * 2),
                                 headers=headers) as client:
        async def worker():
            return [await one_stream(client, url, model, max_tokens, extra or {}) for _ in range(requests)]

        started = time.perf_counter()
        results = [r for rs in await asyncio.gather(*(worker() for _ in range(clients))) for r in rs]
        wall = time.perf_counter() - started
    chunks = sum(r[2] for r in results)
    return {"tokens_per_s": chunks / wall, "ttft_ms": statistics.median(r[0] for r in results) * 1e3,
            "latency_ms": statistics.median(r[1] for r in results) * 1e3, "requests": len(results), "chunks": chunks}


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


def bench_key(home: Path) -> dict:
    """The benchmark's own gateway key in ``home`` (scope eval: ``/ready`` details), as request headers."""
    from feedback.keys import local_key

    return {"Authorization": f"Bearer {local_key('benchmark', ('eval',), get_settings({'ONCOLOOP_HOME': str(home)}))}"}


def wait_ready(proc: subprocess.Popen, url: str, headers: dict) -> dict:
    deadline = time.monotonic() + 900
    while True:
        try:
            state = httpx.get(f"{url}/ready?details=true", timeout=5, headers=headers).json()
            if state["ready"]:
                return state
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline or proc.poll() is not None:
            raise RuntimeError(f"the gateway at {url} did not become ready")
        time.sleep(1)


async def paired(targets: dict, a: str, b: str, n: int, max_tokens: int) -> dict:
    """One client, ``n`` requests to ``a`` and to ``b`` alternately: median (b - a) with a 95% interval, in ms."""
    diffs: dict[str, list[float]] = {"ttft_ms": [], "latency_ms": [], "chunks": []}
    async with httpx.AsyncClient(timeout=600) as client:
        for i in range(n):
            order = (a, b) if i % 2 == 0 else (b, a)  # neither side always goes first
            got = {name: await one_stream(client, *targets[name][:2], max_tokens, *targets[name][2:])
                   for name in order}
            diffs["ttft_ms"].append(1e3 * (got[b][0] - got[a][0]))
            diffs["latency_ms"].append(1e3 * (got[b][1] - got[a][1]))
            diffs["chunks"].append(got[b][2] - got[a][2])  # both sides must stream the same number of tokens
    out = {}
    for key, values in diffs.items():
        d = np.asarray(values)
        medians = np.median(d[resample_indices(len(d), 2000, 0)], axis=1)
        out[key] = (float(np.median(d)), *np.percentile(medians, [2.5, 97.5]))
    return out


def pin(gateways: list[int]) -> None:
    """Engines (the gateways' child processes, every thread) on CPU 0; gateways and this process elsewhere."""
    rest = os.sched_getaffinity(0) - {0}
    for gateway in gateways:
        for child in Path(f"/proc/{gateway}/task/{gateway}/children").read_text().split():
            for task in Path(f"/proc/{child}/task").iterdir():
                os.sched_setaffinity(int(task.name), {0})
        for task in Path(f"/proc/{gateway}/task").iterdir():
            os.sched_setaffinity(int(task.name), rest)
    os.sched_setaffinity(0, rest)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", type=Path, default=REPO / "assets" / "tiny-oncology-llama")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--requests", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--engine", default="transformers")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--baseline-repo", type=Path, help="also measure the gateway of this source tree")
    parser.add_argument("--paired", type=int, default=100, help="request pairs for the added latency (0: skip)")
    parser.add_argument("--pin", action="store_true", help="engine on CPU 0 (1 thread), the rest on the other CPUs")
    args = parser.parse_args()
    if args.pin:
        if len(os.sched_getaffinity(0)) < 2:
            parser.error("--pin needs at least 2 CPUs")
        os.environ["OMP_NUM_THREADS"] = "1"  # the engine's torch: one thread on its one CPU

    started = {"gateway": start_gateway(REPO, args.model, args.engine)}
    if args.baseline_repo:
        started["baseline"] = start_gateway(args.baseline_repo.resolve(), args.model, args.engine)
    failed = True
    try:
        keys = {name: bench_key(home) for name, (_, home, _) in started.items()}
        states = {name: wait_ready(proc, url, keys[name]) for name, (proc, _, url) in started.items()}
        if args.pin:
            pin([proc.pid for proc, _, _ in started.values()])
        engine = states["gateway"]["engines"]["bench"]
        # what the gateway's guard sends the engine for this question (the preamble, nothing else here)
        engine_messages = load_guard(None).prepare({"messages": QUESTION}, {}).body["messages"]
        targets = {"direct": (engine["url"], engine["served_name"], {"messages": engine_messages}, {})}
        targets |= {name: (url, "champion", {"ab": False}, keys[name]) for name, (_, _, url) in started.items()}
        for url, model, extra, headers in targets.values():  # warm every path up
            asyncio.run(load(url, model, 2, 1, 4, extra, headers))
        load_before = os.getloadavg()[0]
        runs: dict[str, list[dict]] = {name: [] for name in targets}
        for _ in range(args.rounds):
            for name, (url, model, extra, headers) in targets.items():
                pid = started[name][0].pid if name in started else None
                cpu = cpu_seconds(pid) if pid else 0.0
                run = asyncio.run(load(url, model, args.clients, args.requests, args.max_tokens, extra, headers))
                run["gateway_cpu_s"] = cpu_seconds(pid) - cpu if pid else 0.0
                runs[name].append(run)
        mean = {k: {m: statistics.mean(r[m] for r in v) for m in v[0]} for k, v in runs.items()}
        print(f"{args.engine} engine, {args.model.name}, {args.clients} concurrent streaming clients x "
              f"{args.requests} requests x {args.max_tokens} tokens, {args.rounds} rounds each, alternating "
              f"({', '.join(targets)}){'; engine pinned to CPU 0' if args.pin else ''}; load average before: "
              f"{load_before:.1f}, after: {os.getloadavg()[0]:.1f}")
        for k, m in mean.items():
            rounds = ", ".join(f"{r['tokens_per_s']:.1f}" for r in runs[k])
            per_chunk = 1e6 * sum(r["gateway_cpu_s"] for r in runs[k]) / sum(r["chunks"] for r in runs[k])
            cpu = f"; gateway CPU {per_chunk:.0f} us per chunk" if k != "direct" else ""
            print(f"  {k:8s} {m['tokens_per_s']:8.1f} tokens/s  median TTFT {m['ttft_ms']:7.1f} ms  "
                  f"median latency {m['latency_ms']:7.1f} ms  (rounds: {rounds} tokens/s{cpu})")
        for k in (k for k in mean if k != "direct"):
            ratio = mean[k]["tokens_per_s"] / mean["direct"]["tokens_per_s"]
            print(f"{k}: throughput ratio {k}/direct: {ratio:.3f} (target >= 0.95); added median TTFT: "
                  f"{mean[k]['ttft_ms'] - mean['direct']['ttft_ms']:+.1f} ms; added median latency: "
                  f"{mean[k]['latency_ms'] - mean['direct']['latency_ms']:+.1f} ms (target <= 5 ms)")
        for k in (k for k in targets if k != "direct" and args.paired):
            added = asyncio.run(paired(targets, "direct", k, args.paired, args.max_tokens))
            print(f"{k}: paired, 1 client, {args.paired} requests each way: added median TTFT "
                  "{:+.1f} ms [{:+.1f}, {:+.1f}]; added median latency {:+.1f} ms [{:+.1f}, {:+.1f}] "
                  "(95% bootstrap intervals; target <= 5 ms); chunks per answer, gateway minus direct: median "
                  "{:+.0f}".format(*added["ttft_ms"], *added["latency_ms"], added["chunks"][0]))
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
