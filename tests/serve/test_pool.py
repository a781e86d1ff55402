"""The pool's drain rule with real processes standing in for engines (their HTTP side is not needed)."""

import asyncio
import sys

from serve.config import ServeConfig
from serve.engines import Engine, EngineSpec
from serve.pool import EnginePool
from serve.routing import RequestError


def sleeper(version: str, tmp_path) -> Engine:
    spec = EngineSpec("transformers", version, [sys.executable, "-c", "import time; time.sleep(120)"], 1, version)
    engine = Engine(spec, tmp_path)
    engine.start()
    return engine


def test_a_replaced_engine_stops_only_after_its_requests_finish(tmp_path):
    async def scenario():
        pool = EnginePool(None, ServeConfig(drain_timeout_s=60), "transformers", tmp_path)
        old, new = sleeper("v1", tmp_path), sleeper("v2", tmp_path)
        pool.engines = {"v1": old, "v2": new}
        pool.wanted, pool.routes = {"champion": "v2"}, {"champion": "v1"}
        old.inflight = 2  # two streams still reading from v1
        pool._route()
        assert pool.routes == {"champion": "v2"} and pool.pick("champion", None)[0] is new
        await asyncio.sleep(1.0)
        assert old.alive() and "v1" in pool.engines  # still draining
        assert pool.pick("v1", None)[0] is old  # a request naming v1 still reaches it meanwhile
        old.inflight = 0
        for _ in range(100):
            await asyncio.sleep(0.1)
            if "v1" not in pool.engines:
                break
        assert "v1" not in pool.engines and not old.alive() and new.alive()
        await pool.close()
        assert not new.alive()

    asyncio.run(scenario())


def test_a_dead_engine_answers_503(tmp_path):
    async def scenario():
        pool = EnginePool(None, ServeConfig(), "transformers", tmp_path)
        engine = sleeper("v1", tmp_path)
        pool.engines, pool.routes = {"v1": engine}, {"champion": "v1"}
        engine.proc.kill()
        engine.proc.wait()
        try:
            pool.pick("champion", None)
            raise AssertionError("a dead engine was picked")
        except RequestError as e:
            assert e.status == 503 and "restarted" in e.message
        assert pool.ready()[0] is False

    asyncio.run(scenario())


def test_the_admin_tabs_ab_share_reaches_the_pool_but_not_a_private_gateway(oncoloop_home):
    from feedback.abtest import set_challenger_share as set_share
    from feedback.db import open_store
    from serve.registry import Registry

    registry = Registry(open_store())
    pool = EnginePool(registry, ServeConfig(challenger_share=0.1), "transformers", oncoloop_home)
    asyncio.run(pool.sync())
    assert pool.cfg.challenger_share == 0.1  # nothing set in the store: the config's share
    set_share(registry.store, 0.4, "adam", "more traffic to the challenger")
    asyncio.run(pool.sync())
    assert pool.cfg.challenger_share == 0.4 and pool.ready()[1]["challenger_share"] == 0.4
    private = EnginePool(registry, ServeConfig(challenger_share=0.0, versions=["v9"]), "transformers", oncoloop_home)
    private.wanted = {}
    private.failed = {"v9": 1e12}  # do not try to start v9
    asyncio.run(private.sync())
    assert private.cfg.challenger_share == 0.0
