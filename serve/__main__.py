"""Start the OpenAI-compatible gateway and the engines for the champion and challenger.

Usage::

    python -m serve                                   # 127.0.0.1:8000, engine chosen automatically
    python -m serve --engine vllm --port 9000 challenger_share=0.2
    python -m serve --config configs/serve/cpu.yaml --guard configs/guard/default.yaml

Then talk to it with any OpenAI client (``base_url="http://127.0.0.1:8000/v1"``, ``model="champion"``).

A gateway that seems stuck: ``kill -USR1 <pid>`` writes every thread's stack to its log, ``kill -USR2 <pid>``
every asyncio task's (what hot-swaps, restarts and requests are waiting on).
"""

from __future__ import annotations

import argparse
import faulthandler
import logging
import signal
import sys
from pathlib import Path

from core.errors import OncoLoopError, cli_command
from core.settings import get_settings


@cli_command
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m serve", description=__doc__.splitlines()[0])
    parser.add_argument("--host", help="listen address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="listen port (default 8000)")
    parser.add_argument("--engine", choices=("auto", "vllm", "transformers"), help="default: auto")
    parser.add_argument("--config", type=Path, help="a ServeConfig YAML file")
    parser.add_argument("--guard", type=Path, help="a GuardConfig YAML file (default: the built-in rules, "
                        "as in configs/guard/default.yaml); the guard cannot be switched off")
    parser.add_argument("overrides", nargs="*", help="key=value ServeConfig overrides, e.g. challenger_share=0.2")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # works even when the event loop is blocked
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    from feedback.scrub import scrub_logs

    scrub_logs()  # no identifier reaches a log line
    import uvicorn

    from core.config import load_config
    from feedback.db import open_store
    from serve.config import ServeConfig
    from serve.engines import choose_engine
    from serve.gateway import create_app
    from serve.guard import load_guard
    from serve.pool import EnginePool
    from serve.registry import Registry

    overrides = list(args.overrides) + [f"{k}={v}" for k, v in
                                        (("host", args.host), ("port", args.port), ("engine", args.engine))
                                        if v is not None]
    cfg = load_config(ServeConfig, args.config, overrides)
    guard = load_guard(args.guard)
    if not 0.0 <= cfg.challenger_share <= 1.0:
        raise OncoLoopError(f"challenger_share must lie between 0 and 1, not {cfg.challenger_share}.")
    settings = get_settings()
    registry = Registry(open_store(settings))
    if "champion" not in registry.aliases():
        raise OncoLoopError("no champion to serve: run `python -m finetune.bootstrap` or move the alias "
                            "with `python -m serve.registry alias champion <version>`.")
    kind = choose_engine(cfg.engine)
    log_dir = Path(cfg.log_dir) if cfg.log_dir else settings.runs_dir / "serve"
    pool = EnginePool(registry, cfg, kind, log_dir)
    print(f"serve: {kind} engines, gateway on http://{cfg.host}:{cfg.port}/v1 (engine logs in {log_dir})",
          flush=True)
    uvicorn.run(create_app(pool, guard, cfg.retriever()), host=cfg.host, port=cfg.port, log_level="warning",
                timeout_keep_alive=int(cfg.keep_alive_s))
    return 0


if __name__ == "__main__":
    sys.exit(main())
