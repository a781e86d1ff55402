"""The OpenAI-compatible gateway: a thin FastAPI router in front of the engine pool.

Clients name ``champion``, ``challenger`` or a version id in ``model``; ``champion`` requests take part
in the A/B split (a stable share of conversations goes to the challenger) unless they opt out with
``"ab": false`` or ``X-OncoLoop-AB: off``. Every answer names the version that gave it: the header
``X-OncoLoop-Version``, ``model`` set to the version id, and an ``oncoloop`` object
(``version``, ``alias``, ``engine``), in every stream chunk too.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from serve.engines import Engine, engine_payload
from serve.pool import EnginePool
from serve.routing import (ALIAS_HEADER, GATEWAY_FIELDS, VERSION_HEADER, RequestError, ab_arm, ab_enabled,
                           check_chat, check_context, conversation_key, error_body)

log = logging.getLogger("oncoloop.serve")


def error_response(status: int, message: str, code: str, param: str | None = None) -> JSONResponse:
    return JSONResponse(error_body(message, code, status, param), status_code=status)


def _annotate(obj: dict, engine: Engine, alias: str | None) -> dict:
    obj["model"] = engine.spec.version
    obj["oncoloop"] = {"version": engine.spec.version, "alias": alias, "engine": engine.spec.kind}
    return obj


def create_app(pool: EnginePool, guard=None) -> FastAPI:
    """The gateway app over ``pool``.

    Args:
        guard: optional hook ``guard(body: dict, headers: dict) -> dict`` applied to every chat request
            before routing (the clinical guard plugs in here); it returns the body to forward and may
            raise :class:`serve.routing.RequestError`.
    """
    client = httpx.AsyncClient(timeout=httpx.Timeout(pool.cfg.request_timeout_s, connect=5.0),
                               limits=httpx.Limits(max_connections=512, max_keepalive_connections=64))

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        runner = asyncio.create_task(pool.run())
        try:
            yield
        finally:
            runner.cancel()
            await pool.close()
            await client.aclose()

    app = FastAPI(title="OncoLoop gateway", lifespan=lifespan)
    app.state.pool = pool

    @app.exception_handler(RequestError)
    async def _request_error(_request: Request, e: RequestError):
        return error_response(e.status, e.message, e.code, e.param)

    @app.get("/health")
    async def health():
        return {"status": "ok"}

    @app.get("/ready")
    async def ready():
        ok, state = pool.ready()
        return JSONResponse(state, status_code=200 if ok else 503)

    @app.get("/v1/models")
    async def models():
        now = int(time.time())
        data = [{"id": alias, "object": "model", "created": now, "owned_by": "oncoloop",
                 "oncoloop": {"alias": alias, "version": version}} for alias, version in pool.routes.items()]
        data += [{"id": version, "object": "model", "created": now, "owned_by": "oncoloop",
                  "oncoloop": {"version": version, "engine": engine.spec.kind}}
                 for version, engine in pool.engines.items()]
        return {"object": "list", "data": data}

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        try:
            body = json.loads(await request.body())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise RequestError(400, f"the request body is not valid JSON ({e}).", "invalid_json")
        headers = {k.lower(): v for k, v in request.headers.items()}
        messages = check_chat(body)
        if guard is not None:
            body = guard(body, headers)
        arm = None
        if body["model"] == "champion" and ab_enabled(body, headers):
            arm = ab_arm(conversation_key(body, headers), pool.cfg.challenger_share)
        engine, alias = pool.pick(body["model"], arm)
        max_tokens = body.get("max_tokens", body.get("max_completion_tokens"))
        tokens = pool.prompt_tokens(engine, messages)
        if tokens is not None:
            check_context(tokens, max_tokens, engine.spec.context)
        payload = engine_payload(engine.spec.kind, {k: v for k, v in body.items() if k not in GATEWAY_FIELDS},
                                 engine.spec.served_name)
        engine.inflight += 1  # before any await, so a swap never stops an engine with a request on its way
        try:
            upstream = await client.send(client.build_request(
                "POST", f"{engine.base_url}/v1/chat/completions", json=payload), stream=True)
        except httpx.HTTPError as e:
            engine.inflight -= 1
            return _engine_failure(engine, e)
        headers_out = {VERSION_HEADER: engine.spec.version, ALIAS_HEADER: alias or ""}
        if upstream.status_code != 200:
            engine.inflight -= 1
            return await _engine_error(upstream, headers_out)
        if payload.get("stream"):
            return StreamingResponse(_relay(upstream, engine, alias), media_type="text/event-stream",
                                     headers=headers_out)
        try:
            answer = json.loads(await upstream.aread())
        except (httpx.HTTPError, json.JSONDecodeError) as e:
            return _engine_failure(engine, e)
        finally:
            await upstream.aclose()
            engine.inflight -= 1
        return JSONResponse(_annotate(answer, engine, alias), headers=headers_out)

    return app


async def _relay(upstream: httpx.Response, engine: Engine, alias: str | None):
    """Pass an engine's event stream on, each chunk naming the version; always release the engine."""
    try:
        async for line in upstream.aiter_lines():
            if line.startswith("data: {"):
                yield "data: " + json.dumps(_annotate(json.loads(line[6:]), engine, alias)) + "\n\n"
            elif line.startswith("data:"):
                yield line + "\n\n"
            elif line:
                yield line + "\n"
    except httpx.HTTPError as e:
        log.error("the stream from %s broke: %s", engine.spec.version, e)
        err = error_body(f"the engine serving {engine.spec.version} stopped mid-answer; retry.", "engine_failed",
                         502)
        yield "data: " + json.dumps(err) + "\n\n"
    finally:  # also on a client that hangs up (the task is cancelled): free the engine for a swap
        await upstream.aclose()
        engine.inflight -= 1


def _engine_failure(engine: Engine, e: Exception) -> JSONResponse:
    if not engine.alive():
        return error_response(503, f"the engine serving {engine.spec.version} is down and being restarted; "
                              "retry in a few seconds.", "engine_unavailable")
    return error_response(502, f"the engine serving {engine.spec.version} failed: {e}", "engine_failed")


async def _engine_error(upstream: httpx.Response, headers: dict) -> Response:
    """An engine's error, passed on in the OpenAI format (engines differ in how they word it)."""
    raw = await upstream.aread()
    await upstream.aclose()
    try:
        body = json.loads(raw)
    except json.JSONDecodeError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return JSONResponse(body, status_code=upstream.status_code, headers=headers)
    detail = body.get("detail") if isinstance(body, dict) else raw.decode(errors="replace")[:500]
    status = upstream.status_code
    code = "engine_rejected" if status < 500 else "engine_failed"
    return JSONResponse(error_body(f"the engine refused the request: {detail}", code, status), status_code=status,
                        headers=headers)
