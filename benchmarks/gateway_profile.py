"""Where the gateway spends CPU per streamed chunk, with no model in the way.

    python benchmarks/gateway_profile.py [--clients 16] [--requests 4] [--chunks 32] [--baseline-repo DIR] [--profile]

A scripted engine (a uvicorn process that streams ``--chunks`` OpenAI chunks per answer as fast as it
can) stands in for the model; the gateway (``serve.gateway.create_app`` over a one-engine pool) runs in a
process of its own and 16 clients stream through it. Printed: the gateway process's CPU time per chunk
and chunks per second, for this tree and (``--baseline-repo``, e.g. ``git archive HEAD | tar -x -C DIR``)
another one, measured alternately in one run. ``--profile`` prints the gateway's top functions (cProfile).
Every microsecond here is taken from the engine when both share the CPU (benchmarks/gateway_overhead.py).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from core.process import free_port  # noqa: E402

ENGINE = textwrap.dedent('''
    import json, sys, uvicorn
    from fastapi import FastAPI, Request
    from fastapi.responses import StreamingResponse
    app, chunks = FastAPI(), int(sys.argv[2])

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        body = await request.json()
        def events():
            for i in range(chunks):
                c = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": body["model"],
                     "choices": [{"index": 0, "delta": {"content": " token"},
                                  "finish_reason": "length" if i == chunks - 1 else None}]}
                yield "data: " + json.dumps(c) + "\\n\\n"
            yield "data: [DONE]\\n\\n"
        return StreamingResponse(events(), media_type="text/event-stream")

    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
''')

GATEWAY = textwrap.dedent('''
    import asyncio, cProfile, os, pstats, signal, sys, tempfile, time, uvicorn
    from pathlib import Path
    from serve.config import ServeConfig
    from serve.engines import Engine, EngineSpec
    from serve.gateway import create_app

    class Pool:
        def __init__(self, engine):
            self.cfg, self.engine, self.routes, self.engines = ServeConfig(), engine, {"champion": "v1"}, {"v1": engine}
        async def run(self): await asyncio.Event().wait()
        async def close(self): pass
        def pick(self, model, arm): return self.engine, "champion"
        def prompt_tokens(self, engine, messages): return None
        def ready(self): return True, {"ready": True}

    port, engine_port, profile = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "1"
    spec = EngineSpec("transformers", "v1", ["x", "--host", "127.0.0.1"], engine_port, "/models/v1")
    os.environ["ONCOLOOP_HOME"] = tempfile.mkdtemp()  # a throwaway store for the benchmark's key
    try:
        from feedback.db import open_store
        from feedback.keys import KeyStore
        keys = KeyStore(open_store())
        app = create_app(Pool(Engine(spec, Path(tempfile.mkdtemp()))), keys=keys)
        Path(sys.argv[4]).write_text(keys.create("benchmark", ["chat"])[1])
    except ImportError:  # a baseline tree from before gateway keys
        app = create_app(Pool(Engine(spec, Path(tempfile.mkdtemp()))))
        Path(sys.argv[4]).write_text("")
    prof = cProfile.Profile(time.process_time) if profile else None  # CPU, not wall: the machine is shared
    def stop(*_):
        if prof:
            prof.disable()
            pstats.Stats(prof, stream=sys.stderr).sort_stats("tottime").print_stats(25)
        os._exit(0)
    signal.signal(signal.SIGTERM, stop)
    if prof:
        prof.enable()
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")
''')


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def load(url: str, clients: int, requests: int, key: str = "") -> int:
    body = {"model": "champion", "messages": [{"role": "user", "content": "What is ECOG 2?"}], "stream": True,
            "ab": False}
    async with httpx.AsyncClient(timeout=120, limits=httpx.Limits(max_connections=clients * 2),
                                 headers={"Authorization": f"Bearer {key}"} if key else None) as client:
        async def worker():
            n = 0
            for _ in range(requests):
                async with client.stream("POST", f"{url}/v1/chat/completions", json=body) as r:
                    r.raise_for_status()
                    async for line in r.aiter_lines():
                        n += line.startswith("data: {")
            return n
        return sum(await asyncio.gather(*(worker() for _ in range(clients))))


def stop_all(procs: list[subprocess.Popen]) -> None:
    """Stop the benchmark's processes, the last started first (the gateway before its engine)."""
    for proc in reversed(procs):
        proc.terminate()
        proc.wait(30)


def wait_up(url: str, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            httpx.get(url, timeout=2)
            return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--requests", type=int, default=4)
    parser.add_argument("--chunks", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--baseline-repo", type=Path)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    engine_port = free_port()
    procs = [subprocess.Popen([sys.executable, "-c", ENGINE, str(engine_port), str(args.chunks)], cwd=REPO)]
    trees = {"gateway": REPO} | ({"baseline": args.baseline_repo.resolve()} if args.baseline_repo else {})
    gateways = {}
    try:
        wait_up(f"http://127.0.0.1:{engine_port}/docs", procs[0])
        for name, tree in trees.items():
            port = free_port()
            key_file = Path(tempfile.mkdtemp()) / "key"
            proc = subprocess.Popen([sys.executable, "-c", GATEWAY, str(port), str(engine_port),
                                     "1" if args.profile else "0", str(key_file)], cwd=tree,
                                    env={**os.environ, "PYTHONPATH": str(tree)})
            procs.append(proc)
            wait_up(f"http://127.0.0.1:{port}/health", proc)
            gateways[name] = (proc, f"http://127.0.0.1:{port}", key_file.read_text())
        totals = {name: [0.0, 0, 0.0] for name in gateways}  # cpu s, chunks, wall s
        for name, (_, url, key) in gateways.items():
            asyncio.run(load(url, 2, 1, key))
        for _ in range(args.rounds):
            for name, (proc, url, key) in gateways.items():
                cpu, started = cpu_seconds(proc.pid), time.perf_counter()
                chunks = asyncio.run(load(url, args.clients, args.requests, key))
                totals[name][0] += cpu_seconds(proc.pid) - cpu
                totals[name][1] += chunks
                totals[name][2] += time.perf_counter() - started
        print(f"{args.clients} streaming clients x {args.requests} requests x {args.chunks} chunks, "
              f"{args.rounds} rounds, scripted engine (load average {os.getloadavg()[0]:.1f})")
        for name, (cpu, chunks, wall) in totals.items():
            print(f"  {name:8s} {cpu / chunks * 1e6:7.1f} us gateway CPU per chunk  {chunks / wall:8.0f} chunks/s")
    finally:
        stop_all(procs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
