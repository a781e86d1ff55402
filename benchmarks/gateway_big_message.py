"""Does one huge message slow everyone else down? p50 latency of small chats with and without a 1 MB message in flight.

    python benchmarks/gateway_big_message.py [--clients 4] [--seconds 20] [--rounds 2] [--big-kb 1024]

A scripted engine (benchmarks/gateway_profile.py's: streams a short answer at once) stands in for the model, so
what is timed is the gateway: keys, parsing, the real clinical guard (MiniLM urgent detector, Presidio/spaCy
scrubber), retrieval off, token counting with the tiny model's tokenizer. ``--clients`` clients send small,
distinct questions (no cache helps) one after another; in the "big" phases one more client keeps a 1 MB
message in flight all the time (one after another). The gateway's limits are raised for the run so that the big
message is not refused at the door (413) but goes all the way through the guard and the token count (and is
then refused as longer than the model's context): the worst case. Phases alternate (quiet, big, quiet, big ...)
and the script prints p50 and p90 of the small requests in each, and the ratio of the p50s (target: < 1.20).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from gateway_profile import ENGINE, stop_all, wait_up  # noqa: E402  (this folder)
from core.process import free_port  # noqa: E402

GATEWAY = textwrap.dedent('''
    import asyncio, os, sys, tempfile, uvicorn
    from pathlib import Path
    from feedback.db import open_store
    from feedback.keys import KeyStore
    from serve.config import ServeConfig
    from serve.engines import Engine, EngineSpec, context_length
    from serve.gateway import create_app
    from serve.guard import load_guard
    from serve.pool import EnginePool

    class Pool:
        """One scripted engine as the champion; token counting as the real pool does it."""
        prompt_tokens = EnginePool.prompt_tokens
        def __init__(self, engine, cfg):
            self.cfg, self.engine, self.routes, self.engines = cfg, engine, {"champion": "v1"}, {"v1": engine}
            self._tokenizers = {}
        async def run(self): await asyncio.Event().wait()
        async def close(self): pass
        def pick(self, model, arm): return self.engine, "champion"
        def ready(self): return True, {"ready": True}

    port, engine_port, key_file, model = int(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3]), sys.argv[4]
    cfg = ServeConfig(max_body_bytes=4 << 20, max_message_chars=4 << 20)  # let the big message reach the guard
    spec = EngineSpec("transformers", "v1", ["x", "--host", "127.0.0.1"], engine_port, "/models/v1",
                      context=context_length(model), model_dir=model)
    keys = KeyStore(open_store())
    app = create_app(Pool(Engine(spec, Path(tempfile.mkdtemp())), cfg), load_guard(Path("configs/guard/default.yaml")),
                     keys=keys)
    key_file.write_text(keys.create("benchmark", ["chat"])[1])
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")
''')

PARAGRAPH = ("Mrs Jane Doe, MRN 4417823, seen in clinic on 14/03/2026 with grade 2 hand-foot syndrome on capecitabine "
             "1250 mg/m2 twice daily; creatinine clearance 48 mL/min, ECOG 1. Tel 07700 900123. ")


def big_message(n: int, kb: int) -> str:
    """About ``kb`` KB of clinical notes, different each time (the scrubber caches whole texts)."""
    return f"Notes batch {n}. " + PARAGRAPH * (kb * 1024 // len(PARAGRAPH)) + "What should be done?"


async def small_client(client: httpx.AsyncClient, url: str, seed: int, until: float, out: list[float]) -> None:
    n = 0
    while time.monotonic() < until:
        n += 1
        body = {"model": "champion", "stream": True, "max_tokens": 8, "retrieval": False, "messages": [
            {"role": "user", "content": f"Case {seed}-{n}: what are the first signs of febrile neutropenia?"}]}
        started = time.perf_counter()
        async with client.stream("POST", f"{url}/v1/chat/completions", json=body) as r:
            r.raise_for_status()
            async for _ in r.aiter_lines():
                pass
        out.append(time.perf_counter() - started)


async def big_client(client: httpx.AsyncClient, url: str, kb: int, until: float, sent: list[float]) -> None:
    n = 0
    while time.monotonic() < until:
        n += 1
        body = {"model": "champion", "max_tokens": 8, "retrieval": False,
                "messages": [{"role": "user", "content": big_message(n, kb)}]}
        started = time.perf_counter()
        r = await client.post(f"{url}/v1/chat/completions", json=body)
        assert r.status_code == 400 and r.json()["error"]["code"] == "context_length_exceeded", r.text[:300]
        sent.append(time.perf_counter() - started)


async def phase(url: str, key: str, clients: int, seconds: float, big_kb: int) -> tuple[list[float], list[float]]:
    small: list[float] = []
    big: list[float] = []
    until = time.monotonic() + seconds
    async with httpx.AsyncClient(timeout=300, headers={"Authorization": f"Bearer {key}"},
                                 limits=httpx.Limits(max_connections=clients + 2)) as client:
        tasks = [small_client(client, url, i, until, small) for i in range(clients)]
        if big_kb:
            tasks.append(big_client(client, url, big_kb, until, big))
        await asyncio.gather(*tasks)
    return small, big


def p(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] * 1000 if len(values) > 1 else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each phase")
    parser.add_argument("--rounds", type=int, default=2, help="quiet/big phase pairs")
    parser.add_argument("--big-kb", type=int, default=1024)
    parser.add_argument("--model", type=Path, default=REPO / "assets" / "tiny-oncology-llama",
                        help="whose tokenizer counts tokens, and whose context refuses the big message")
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="oncoloop-bench-"))
    engine_port, port, key_file = free_port(), free_port(), home / "key"
    env = {**os.environ, "PYTHONPATH": str(REPO), "ONCOLOOP_HOME": str(home)}
    procs = [subprocess.Popen([sys.executable, "-c", ENGINE, str(engine_port), "8"], cwd=REPO, env=env)]
    try:
        wait_up(f"http://127.0.0.1:{engine_port}/docs", procs[0])
        procs.append(subprocess.Popen([sys.executable, "-c", GATEWAY, str(port), str(engine_port), str(key_file),
                                       str(args.model.absolute())], cwd=REPO, env=env))
        url = f"http://127.0.0.1:{port}"
        wait_up(f"{url}/health", procs[1])
        key = key_file.read_text()
        asyncio.run(phase(url, key, 2, 8, args.big_kb))  # warm-up: the guard's models, the tokenizer, both paths
        quiet: list[float] = []
        busy: list[float] = []
        big: list[float] = []
        for _ in range(args.rounds):
            quiet += asyncio.run(phase(url, key, args.clients, args.seconds, 0))[0]
            small, sent = asyncio.run(phase(url, key, args.clients, args.seconds, args.big_kb))
            busy += small
            big += sent
        print(f"{args.clients} clients sending small streamed chats, {args.rounds} x {args.seconds:.0f} s per phase, "
              f"alternating; {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
        print(f"  without a big message: {len(quiet):5d} requests  p50 {p(quiet, 50):7.1f} ms  p90 {p(quiet, 90):7.1f} ms")
        print(f"  with a {args.big_kb} KB message in flight: {len(busy):5d} requests  p50 {p(busy, 50):7.1f} ms  "
              f"p90 {p(busy, 90):7.1f} ms  ({len(big)} big messages, {statistics.median(big):.1f} s each)")
        print(f"p50 ratio with/without: {p(busy, 50) / p(quiet, 50):.2f} (target < 1.20)")
    finally:
        stop_all(procs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
