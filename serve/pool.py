"""The engines the gateway runs, which alias points at which, hot-swap and supervision.

Lifecycle in one place: :meth:`EnginePool.run` starts the engines for the aliases, then polls the
registry; when an alias moves it starts the new version's engine, waits until it answers, switches
the route, lets in-flight requests on the old engine finish and only then stops it. A watchdog
restarts an engine that dies; while it is down, requests for it get 503.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

from core.errors import OncoLoopError
from feedback.abtest import challenger_share
from serve.ask import base_directory
from serve.config import ServeConfig
from serve.engines import Engine, engine_spec
from serve.registry import ALIASES, Registry
from serve.routing import RequestError

log = logging.getLogger("oncoloop.serve")
RETRY_FAILED_AFTER_S = 60.0


class EnginePool:
    """Engines by version id and routes by alias; all mutation happens on the gateway's event loop."""

    def __init__(self, registry: Registry, cfg: ServeConfig, kind: str, log_dir: Path):
        self.registry, self.cfg, self.kind, self.log_dir = registry, cfg, kind, log_dir
        self.engines: dict[str, Engine] = {}
        self.routes: dict[str, str] = {}
        self.restarting: set[str] = set()
        self.retiring: set[str] = set()
        self.wanted: dict[str, str] = {}  # alias -> version, as last read from the registry
        self.failed: dict[str, float] = {}  # version -> when its engine last failed to start
        self.launching: dict[str, float] = {}  # version -> when its engine started starting
        self.started = False
        self.synced_at: float | None = None  # when the registry was last read (/ready shows how long ago)
        self._tokenizers: dict[str, object] = {}
        self._tasks: set[asyncio.Task] = set()

    # ---- lifecycle -------------------------------------------------------------------------
    async def run(self) -> None:
        """Start engines for the current aliases, then follow the registry and watch the engines."""
        await self.sync()
        self.started = True
        self._spawn(self._watch())
        while True:
            await asyncio.sleep(self.cfg.poll_interval_s)
            try:
                await self.sync()
            except Exception:  # a bug in one round must not end hot-swapping for the life of the gateway
                log.exception("following the registry failed; trying again in %ss", self.cfg.poll_interval_s)

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(min(1.0, self.cfg.poll_interval_s))
            try:
                await self.supervise()
            except Exception:
                log.exception("watching the engines failed; trying again")

    async def sync(self) -> None:
        """Make the routes match the registry's aliases (hot-swap)."""
        try:
            aliases = await asyncio.to_thread(self.registry.aliases)
            # the admin tab's A/B share (a private evaluation gateway pins its own)
            share = None if self.cfg.versions else await asyncio.to_thread(challenger_share, self.registry.store)
        except Exception as e:  # a locked or unreachable store must not stop serving
            log.warning("cannot read the registry: %s", e)
            return
        if share is not None and share != self.cfg.challenger_share:
            log.info("challenger share: %s -> %s (set in the store)", self.cfg.challenger_share, share)
            self.cfg.challenger_share = share
        self.synced_at = time.monotonic()
        wanted = {alias: aliases[alias] for alias in ALIASES if alias in aliases}
        for alias in sorted(set(wanted) | set(self.wanted)):
            if wanted.get(alias) != self.wanted.get(alias):
                log.info("registry: %s now names %s (was %s)", alias, wanted.get(alias), self.wanted.get(alias))
        self.wanted = wanted
        now = time.monotonic()
        to_start = sorted({v for v in [*self.wanted.values(), *self.cfg.versions] if v not in self.engines
                           and now - self.failed.get(v, -1e9) >= RETRY_FAILED_AFTER_S})
        # start new engines side by side; each alias switches as soon as its engine answers
        await asyncio.gather(*(self._launch_and_route(v) for v in to_start))
        self._route()

    async def _launch_and_route(self, version: str) -> None:
        try:
            await self.launch(version)
        except Exception as e:  # a broken version directory must not stop the gateway
            self.failed[version] = time.monotonic()
            log.error("cannot serve %s: %s", version, e)
        self._route()

    def _route(self) -> None:
        """Point each alias at its wanted version if that engine runs; retire engines no alias needs."""
        for alias, target in self.wanted.items():
            if self.routes.get(alias) != target and target in self.engines:
                log.info("%s: %s -> %s", alias, self.routes.get(alias), target)
                self.routes[alias] = target
        for alias in set(self.routes) - set(self.wanted):
            del self.routes[alias]
        for version in set(self.engines) - set(self.routes.values()) - set(self.cfg.versions) - self.retiring:
            self.retiring.add(version)
            self._spawn(self.retire(version))

    async def launch(self, version_id: str) -> Engine:
        """Start the engine for a version and wait until it answers; it then joins the pool."""
        version = await asyncio.to_thread(self.registry.get, version_id)
        base_dir = None
        if not version.mergeable:  # meta.json's base: the base version's directory, or its id
            base_dir = await asyncio.to_thread(base_directory, self.registry, version)
        engine = Engine(engine_spec(self.kind, version, self.cfg, base_dir), self.log_dir)
        log.info("starting the %s engine for %s on port %d", engine.spec.kind, version_id, engine.spec.port)
        self.launching[version_id] = time.monotonic()
        try:
            engine.start()
            await engine.wait_ready(self.cfg.engine_start_timeout_s)
        except BaseException:
            engine.stop()
            raise
        finally:
            self.launching.pop(version_id, None)
        self.engines[version_id] = engine
        return engine

    async def retire(self, version: str) -> None:
        """Drop a version from the pool once its in-flight requests finish (or the drain timeout passes)."""
        try:
            await self._drain_and_stop(version)
        finally:
            self.retiring.discard(version)

    async def _drain_and_stop(self, version: str) -> None:
        engine = self.engines.get(version)
        if engine is None:
            return
        deadline = time.monotonic() + self.cfg.drain_timeout_s
        while engine.inflight > 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        if version in self.routes.values() or version in self.cfg.versions:  # routed again while draining
            return
        self.engines.pop(version, None)
        log.info("stopping the engine for %s", version)
        await asyncio.to_thread(engine.stop)

    async def supervise(self) -> None:
        """Restart engines that died (not those being stopped)."""
        for version, engine in list(self.engines.items()):
            if engine.alive() or engine.stopping or version in self.restarting:
                continue
            log.error("the engine for %s died (exit %s); restarting. Last log lines:\n%s",
                      version, engine.proc.returncode if engine.proc else None, engine.log_tail())
            self.restarting.add(version)
            self._spawn(self._restart(version, engine))

    async def _restart(self, version: str, dead: Engine) -> None:
        try:
            while version in self.engines and self.engines[version] is dead:
                await asyncio.sleep(self.cfg.restart_backoff_s)
                try:
                    fresh = await self.launch(version)
                    fresh.restarts = dead.restarts + 1
                    return
                except Exception as e:
                    log.error("restarting %s failed: %s", version, e)
        finally:
            self.restarting.discard(version)

    def _spawn(self, coro) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for engine in list(self.engines.values()):
            await asyncio.to_thread(engine.stop)
        self.engines.clear()

    # ---- routing ---------------------------------------------------------------------------
    def pick(self, model: str, arm: str | None) -> tuple[Engine, str | None]:
        """The engine that answers a request naming ``model``, and the alias it answers as.

        Args:
            arm: for ``champion`` requests in the A/B split, the arm of the conversation.

        Raises:
            RequestError: unknown model (404), or its engine starting or down (503).
        """
        alias = model if model in ALIASES else None
        if model == "champion" and arm == "challenger" and "challenger" in self.routes:
            alias = "challenger"
        version = self.routes.get(alias) if alias else model
        if version is None:
            if not self.started:
                raise RequestError(503, "the gateway is starting its engines; retry in a few seconds.",
                                   "engine_starting")
            raise RequestError(404, f"no version is {model} yet; move the alias with `python -m serve.registry "
                               f"alias {model} <version>`.", "model_not_found", "model")
        engine = self.engines.get(version)
        if engine is None:
            if alias is None and not self._registered(version):
                raise RequestError(404, f"unknown model or version {model!r}; use champion, challenger or one "
                                   f"of: {', '.join(self.served()) or 'none yet'}.", "model_not_found", "model")
            raise RequestError(404 if alias is None else 503, f"version {version} is not served by this gateway "
                               "now; it serves " + (", ".join(self.served()) or "nothing yet") + ".",
                               "model_not_found" if alias is None else "engine_starting", "model")
        if version in self.restarting or not engine.alive():
            raise RequestError(503, f"the engine serving {version} stopped and is being restarted; retry in a "
                               "few seconds.", "engine_unavailable")
        return engine, alias

    def served(self) -> list[str]:
        return sorted(self.engines)

    def _registered(self, version: str) -> bool:
        try:
            self.registry.get(version)
            return True
        except OncoLoopError:
            return False

    def ready(self) -> tuple[bool, dict]:
        """Whether the champion answers, and a status object for ``/ready``."""
        state = {v: {"state": "restarting" if v in self.restarting or not e.alive() else "ready",
                     "engine": e.spec.kind, "pid": e.proc.pid if e.proc else None, "inflight": e.inflight,
                     "restarts": e.restarts, "log": str(e.log_path),
                     "url": e.base_url, "served_name": e.spec.served_name}
                 for v, e in self.engines.items()}
        champion = self.routes.get("champion")
        ok = champion is not None and state.get(champion, {}).get("state") == "ready"
        return ok, {"ready": ok, "routes": dict(self.routes), "wanted": dict(self.wanted), "engines": state,
                    "engine": self.kind,
                    "pinned": list(self.cfg.versions), "failed": sorted(self.failed),
                    "starting_s": {v: round(time.monotonic() - t, 1) for v, t in self.launching.items()},
                    "challenger_share": self.cfg.challenger_share,
                    "registry_read_s_ago": None if self.synced_at is None else round(time.monotonic() - self.synced_at, 1)}

    def prompt_tokens(self, engine: Engine, messages: list[dict]) -> int | None:
        """Tokens of the rendered prompt, by the version's own tokenizer (None if it has no tokenizer.json)."""
        from core.prompt import format_chat

        path = engine.spec.model_dir
        if path not in self._tokenizers:
            from tokenizers import Tokenizer

            file = Path(path) / "tokenizer.json"
            self._tokenizers[path] = Tokenizer.from_file(str(file)) if file.is_file() else None
        tokenizer = self._tokenizers[path]
        if tokenizer is None:
            return None
        return len(tokenizer.encode(format_chat(messages), add_special_tokens=False).ids)
