"""The OpenAI-compatible gateway: a thin FastAPI router in front of the engine pool.

Clients name ``champion``, ``challenger`` or a version id in ``model``; ``champion`` requests take part
in the A/B split (a stable share of conversations goes to the challenger) unless they opt out with
``"ab": false`` or ``X-OncoLoop-AB: off``. Every answer names the version that gave it: the header
``X-OncoLoop-Version``, ``model`` set to the version id, and an ``oncoloop`` object
(``version``, ``alias``, ``engine``, ``guard``, ``context``), in every stream chunk too.

With retrieval on (:mod:`serve.retrieval`, the default), the approved answers closest to the question go
to the model as context after the guard's preamble; ``oncoloop.context`` lists their review ids.

Every chat passes the clinical guard (:mod:`serve.guard`): ``oncoloop.guard`` lists what it did
(complete in the last stream chunk, the one with ``finish_reason``), the header ``X-OncoLoop-Guard``
the request-side actions. Streams whose answer needs no redaction are relayed as raw bytes with the
``oncoloop`` fields spliced into each chunk's text (no JSON round trip per chunk); the others are
parsed chunk by chunk and redacted with a hold-back buffer. Requests to the engines go through
:mod:`serve.upstream` (a lean HTTP/1.1 client: httpx cost more CPU per chunk than the rest of the relay).
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import signal
import threading
import time
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from feedback.keys import ApiKey, KeyStore
from serve.access import AUDIT_SCOPES, GatewayAuth, require
from serve.engines import Engine, engine_payload
from serve.guard import ACTIONS_HEADER, OPTIONS_HEADER, Guard, GuardedChat, audit_requested
from serve.pool import EnginePool
from serve.protocol import RequestLimits, parse_chat, too_large
from serve.routing import (ALIAS_HEADER, GATEWAY_FIELDS, VERSION_HEADER, RequestError, ab_arm, ab_enabled,
                           check_context, conversation_key, error_body)
from serve.retrieval import Retriever
from serve.upstream import Upstream, UpstreamError, UpstreamResponse

log = logging.getLogger("oncoloop.serve")


def error_response(status: int, message: str, code: str, param: str | None = None) -> JSONResponse:
    return JSONResponse(error_body(message, code, status, param), status_code=status)


def _fields(engine: Engine, alias: str | None, guarded: GuardedChat, guard: list[str]) -> dict:
    return {"version": engine.spec.version, "alias": alias, "engine": engine.spec.kind, "guard": guard,
            "context": guarded.context}


def _annotate(obj: dict, engine: Engine, alias: str | None, guarded: GuardedChat, guard: list[str]) -> dict:
    obj["model"] = engine.spec.version
    obj["oncoloop"] = _fields(engine, alias, guarded, guard)
    return obj


# text fields of an answer's message (or stream delta) besides ``content`` that the guard redacts too
EXTRA_TEXT_FIELDS = ("reasoning_content", "reasoning", "refusal")
LOGPROBS_REMOVED, TOOL_CALLS_REMOVED = "logprobs_removed", "tool_calls_removed"


def _remove_unredactable(choice: dict, part: dict, guarded: GuardedChat) -> None:
    """Drop what cannot be redacted from an answer: per-token log-probabilities and tool calls (the gateway asks for
    neither; an engine that sends them anyway loses them, and the guard's record says so)."""
    for holder, name, action in ((choice, "logprobs", LOGPROBS_REMOVED), (part, "tool_calls", TOOL_CALLS_REMOVED)):
        if holder.get(name) is not None:
            holder.pop(name)
            if action not in guarded.actions:
                guarded.actions.append(action)


def _guard_answer(answer: dict, guarded: GuardedChat) -> dict:
    """A whole answer through the guard: notices first, identifiers and doses redacted in every text field."""
    for choice in answer.get("choices") or []:
        message = choice.get("message") or {}
        _remove_unredactable(choice, message, guarded)
        index = choice.get("index", 0)
        for name in ("content", *EXTRA_TEXT_FIELDS):
            text = message.get(name)
            if isinstance(text, str):
                redactor = guarded.redactor_for(index, name)
                message[name] = (guarded.prefix if name == "content" else "") + (
                    redactor.redact(text) if redactor else text)
    return answer


async def read_body(request: Request, limits: RequestLimits) -> bytes:
    """The request body, refused (413) as soon as it is longer than ``max_body_bytes``, before it is all read."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limits.max_body_bytes:
        raise too_large(int(declared), limits)
    parts, size = [], 0
    async for part in request.stream():
        size += len(part)
        if size > limits.max_body_bytes:
            raise too_large(size, limits)
        parts.append(part)
    return b"".join(parts)


def prepare_chat(raw: bytes, headers: dict[str, str], limits: RequestLimits, guard: Guard) -> GuardedChat:
    """Parse and check a request, then the guard's request side: CPU work (JSON, MiniLM, spaCy), never on the
    event loop."""
    return guard.prepare(parse_chat(raw, limits), headers)


_worker: tuple[Guard, RequestLimits] | None = None


def _start_worker(guard_cfg, limits: RequestLimits) -> None:
    global _worker
    _worker = (Guard(guard_cfg), limits)
    _worker[0].warm()


def _prepare_in_worker(raw: bytes, headers: dict[str, str]) -> GuardedChat:
    return prepare_chat(raw, headers, _worker[1], _worker[0])


class Preparer:
    """Runs :func:`prepare_chat` and retrieval: in a worker thread, or for a body over ``process_min_bytes`` in a
    worker process of its own. Scrubbing a megabyte takes a minute of spaCy, which in this process would hold the
    GIL and the scrubber's lock against every other request; in its own process it takes one CPU and nothing else.
    """

    def __init__(self, guard: Guard, retriever: Retriever | None, limits: RequestLimits, process_min_bytes: int):
        self.guard, self.retriever, self.limits, self.process_min_bytes = guard, retriever, limits, process_min_bytes
        self._processes = None

    async def __call__(self, raw: bytes, headers: dict[str, str]) -> GuardedChat:
        if self.process_min_bytes and len(raw) >= self.process_min_bytes:
            if self._processes is None:  # started at the first big request (it loads the guard's models: seconds)
                import multiprocessing
                from concurrent.futures import ProcessPoolExecutor

                self._processes = ProcessPoolExecutor(1, multiprocessing.get_context("spawn"), _start_worker,
                                                      (self.guard.cfg, self.limits))
            guarded = await asyncio.get_running_loop().run_in_executor(self._processes, _prepare_in_worker, raw,
                                                                       headers)
        else:
            guarded = await asyncio.to_thread(prepare_chat, raw, headers, self.limits, self.guard)
        if self.retriever is not None and guarded.body.get("retrieval") is not False:  # "retrieval": false opts out
            await asyncio.to_thread(self.retriever.add_context, guarded)
        return guarded

    def close(self) -> None:
        if self._processes is not None:
            self._processes.shutdown(wait=False, cancel_futures=True)


def log_tasks() -> None:
    """Log where every asyncio task of the gateway waits (``kill -USR2 <gateway pid>``)."""
    out = io.StringIO()
    for task in asyncio.all_tasks():
        task.print_stack(limit=8, file=out)
    log.info("asyncio tasks (SIGUSR2):\n%s", out.getvalue())


def ready_summary(state: dict) -> dict:
    """``/ready`` for any key: routes and each engine's state, without URLs, process ids or log paths."""
    engines = {v: {"state": e["state"], "engine": e["engine"]} for v, e in state.get("engines", {}).items()}
    return {**state, "engines": engines}


class _Gateway:
    """What the gateway's routes share: the pool, the guard, the engine client, the key check and the limits."""

    def __init__(self, pool: EnginePool, guard: Guard, retriever: Retriever | None, keys: KeyStore | None):
        self.pool, self.guard = pool, guard
        self.client = Upstream(timeout=pool.cfg.request_timeout_s, connect_timeout=5.0, max_idle=64)
        self.auth = GatewayAuth(keys or KeyStore(pool.registry.store), pool.cfg.key_cache_s)
        self.limits = pool.cfg.limits()
        self.prepare = Preparer(guard, retriever, self.limits, pool.cfg.guard_process_min_bytes)

    @asynccontextmanager
    async def lifespan(self, _app: FastAPI):
        runner = asyncio.create_task(self.pool.run())
        main_thread = threading.current_thread() is threading.main_thread()  # not so in a test's in-process app
        if main_thread:
            asyncio.get_running_loop().add_signal_handler(signal.SIGUSR2, log_tasks)  # see `python -m serve`'s help
        # the urgent detector and the scrubber load in a worker thread (seconds): /health answers meanwhile, and
        # a chat that arrives first waits for them there, never on the event loop
        warming = asyncio.create_task(asyncio.to_thread(self.guard.warm))
        try:
            yield
        finally:
            if main_thread:
                asyncio.get_running_loop().remove_signal_handler(signal.SIGUSR2)
            runner.cancel()
            warming.cancel()
            await self.pool.close()
            await self.client.aclose()
            self.prepare.close()

    def models(self) -> dict:
        now = int(time.time())
        data = [{"id": alias, "object": "model", "created": now, "owned_by": "oncoloop",
                 "oncoloop": {"alias": alias, "version": version}} for alias, version in self.pool.routes.items()]
        data += [{"id": version, "object": "model", "created": now, "owned_by": "oncoloop",
                  "oncoloop": {"version": version, "engine": engine.spec.kind}}
                 for version, engine in self.pool.engines.items()]
        return {"object": "list", "data": data}

    async def chat(self, request: Request, key: ApiKey) -> Response:
        """One chat: checked, guarded (off the event loop), routed, relayed, and the answer guarded."""
        headers = {k.lower(): v for k, v in request.headers.items()}
        check_guard_option(headers, key)
        # parsing, the guard (MiniLM, spaCy) and retrieval cost milliseconds of CPU per message, a minute for a
        # megabyte: in a worker thread (a process for big bodies), off the event loop that relays every other stream
        guarded = await self.prepare(await read_body(request, self.limits), headers)
        engine, alias = await self.route(guarded, headers)
        payload = engine_payload(engine.spec.kind, {k: v for k, v in guarded.body.items() if k not in GATEWAY_FIELDS},
                                 engine.spec.served_name)
        lease = _Lease(engine)  # taken before any await, so a swap never stops an engine with a request on its way
        handed_off = False
        try:
            try:
                upstream = await self.client.post(f"{engine.base_url}/v1/chat/completions",
                                                  json.dumps(payload).encode(), engine.auth_headers)
            except UpstreamError as e:
                return _engine_failure(engine, e)
            lease.upstream = upstream
            headers_out = {VERSION_HEADER: engine.spec.version, ALIAS_HEADER: alias or "",
                           ACTIONS_HEADER: ",".join(guarded.actions)}
            if upstream.status_code != 200:
                return await _engine_error(upstream, headers_out)
            if payload.get("stream"):
                rewriter = _raw_rewriter if guarded.redactor is None else _guarded_rewriter
                response = _EngineStream(_relay(lease, rewriter(engine, alias, guarded)), lease,
                                         media_type="text/event-stream", headers=headers_out)
                handed_off = True
                return response
            return await _whole_answer(upstream, engine, alias, guarded, headers_out)
        finally:
            if not handed_off:  # an answer read whole, an engine error, or anything raised (a cancelled request)
                await lease.end()

    async def route(self, guarded: GuardedChat, headers: dict[str, str]) -> tuple[Engine, str | None]:
        """The engine for this chat (the A/B split for ``champion``), after checking the prompt fits its context."""
        body = guarded.body
        arm = None
        if body["model"] == "champion" and ab_enabled(body, headers):
            arm = ab_arm(conversation_key(body, headers), self.pool.cfg.challenger_share)
        engine, alias = self.pool.pick(body["model"], arm)
        tokens = await asyncio.to_thread(self.pool.prompt_tokens, engine, body["messages"])
        if tokens is not None:
            check_context(tokens, body.get("max_tokens", body.get("max_completion_tokens")), engine.spec.context)
        return engine, alias


def check_guard_option(headers: dict[str, str], key: ApiKey) -> None:
    """The guard's audit mode needs an eval or admin key; ``X-OncoLoop-Guard`` takes no other value."""
    if audit_requested(headers):
        require(key, AUDIT_SCOPES, "the guard's audit mode (X-OncoLoop-Guard: audit)")
    elif headers.get(OPTIONS_HEADER, "").strip():
        raise RequestError(400, f"X-OncoLoop-Guard takes one value, `audit`, not {headers[OPTIONS_HEADER]!r}; "
                           "leave the header out for the normal guard.", "invalid_guard_option")


async def _whole_answer(upstream: UpstreamResponse, engine: Engine, alias: str | None, guarded: GuardedChat,
                        headers_out: dict[str, str]) -> Response:
    """A non-streamed answer read whole, through the guard, annotated with its version and the guard's actions."""
    try:
        answer = json.loads(await upstream.aread())
    except (UpstreamError, json.JSONDecodeError) as e:
        return _engine_failure(engine, e)
    finally:
        await upstream.aclose()
    answer = _guard_answer(answer, guarded)
    headers_out[ACTIONS_HEADER] = ",".join(guarded.actions)
    return JSONResponse(_annotate(answer, engine, alias, guarded, guarded.all_actions()), headers=headers_out)


async def _request_error(_request: Request, e: RequestError) -> JSONResponse:
    return JSONResponse(error_body(e.message, e.code, e.status, e.param), status_code=e.status, headers=e.headers)


def create_app(pool: EnginePool, guard: Guard | None = None, retriever: Retriever | None = None,
               keys: KeyStore | None = None) -> FastAPI:
    """The gateway app over ``pool``.

    Args:
        guard: the clinical guard every chat passes (default: ``Guard()`` with the built-in config).
        retriever: approved answers given to the model as context (None: no retrieval).
        keys: the gateway keys clients must present (default: those of the pool's registry store).
    """
    gw = _Gateway(pool, guard or Guard(), retriever, keys)
    # no /docs, /redoc or /openapi.json: every route but /health needs a key
    app = FastAPI(title="OncoLoop gateway", lifespan=gw.lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.pool = pool
    app.add_exception_handler(RequestError, _request_error)

    @app.get("/health")
    async def health():
        return {"status": "ok"}

    @app.get("/ready")
    async def ready(details: bool = False, key: ApiKey = Depends(gw.auth)):
        ok, state = pool.ready()
        if details:
            require(key, AUDIT_SCOPES, "/ready?details=true (engine URLs and process ids)")
        return JSONResponse(state if details else ready_summary(state), status_code=200 if ok else 503)

    @app.get("/v1/models")
    async def models(_key: ApiKey = Depends(gw.auth)):
        return gw.models()

    @app.post("/v1/chat/completions")
    async def chat(request: Request, key: ApiKey = Depends(gw.auth)):
        return await gw.chat(request, key)

    return app


class _Lease:
    """One request's hold on an engine (``engine.inflight``) and its upstream response, given back exactly once.

    A swap drains an engine until its in-flight count is zero, so every way a request can end must give its hold
    back: an answer read whole, an engine error, an exception, a stream that ends or breaks, and a stream whose
    client hung up before its first byte (Starlette then never starts the body generator, so the generator's
    ``finally`` alone would leak the hold and the engine could never be retired in time).
    """

    def __init__(self, engine: Engine):
        self.engine = engine
        self.upstream: UpstreamResponse | None = None
        self.held = True
        engine.inflight += 1

    async def end(self) -> None:
        if not self.held:
            return
        self.held = False
        self.engine.inflight -= 1
        if self.upstream is not None:
            await self.upstream.aclose()


class _EngineStream(StreamingResponse):
    """A relayed engine stream that gives its :class:`_Lease` back however the response ends."""

    def __init__(self, content, lease: _Lease, **kwargs):
        super().__init__(content, **kwargs)
        self.lease = lease

    async def __call__(self, scope, receive, send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self.lease.end()


def _notice_chunk(first: dict, text: str, engine: Engine, alias: str | None, guarded: GuardedChat,
                  guard: list[str]) -> bytes:
    """The guard's notices as a stream chunk of their own, shaped like the engine's first chunk."""
    chunk = {"id": first.get("id", ""), "object": "chat.completion.chunk", "created": first.get("created", 0),
             "choices": [{"index": 0, "delta": {"role": "assistant", "content": text}, "finish_reason": None}]}
    return b"data: " + json.dumps(_annotate(chunk, engine, alias, guarded, guard)).encode() + b"\n\n"


def _stream_error(engine: Engine, e: Exception) -> bytes:
    log.error("the stream from %s broke: %s", engine.spec.version, e)
    err = error_body(f"the engine serving {engine.spec.version} stopped mid-answer; retry.", "engine_failed", 502)
    return b"data: " + json.dumps(err).encode() + b"\n\n"


async def _lines(upstream: UpstreamResponse):
    """The engine's event stream as lists of complete lines (bytes), one list per network read."""
    rest = b""
    async for block in upstream.aiter_raw():
        lines = (rest + block).split(b"\n")
        rest = lines.pop()
        if lines:
            yield lines
    if rest:
        yield [rest]


async def _relay(lease: _Lease, rewrite):
    """Pass the event stream of the lease's engine on, each event's ``data:`` line through ``rewrite``.

    ``rewrite(line)`` returns the bytes to send for one ``data:`` line (one or more events); other
    lines pass unchanged. Lines read together are sent together. A broken engine stream ends with an
    error event. Always releases the engine, also on a client that hangs up (the task is cancelled), so
    that a swap can stop the old engine.
    """
    try:
        async for lines in _lines(lease.upstream):
            out = []
            for line in lines:
                line = line.rstrip(b"\r")
                if line.startswith(b"data:"):
                    out.append(rewrite(line))
                elif line:
                    out.append(line + b"\n")
            if out:
                yield b"".join(out)
    except UpstreamError as e:
        yield _stream_error(lease.engine, e)
    finally:
        await lease.end()


def _raw_rewriter(engine: Engine, alias: str | None, guarded: GuardedChat):
    """Splice ``model`` and ``oncoloop`` into each chunk's text, without parsing it.

    Nothing in the answer needs redacting here, so the guard's record is known before the first chunk.
    """
    spec = engine.spec
    tail = b',"oncoloop":' + json.dumps(_fields(engine, alias, guarded, guarded.actions)).encode() + b"}"
    names = [(f'"model":{json.dumps(spec.served_name)}'.encode(), f'"model":{json.dumps(spec.version)}'.encode()),
             (f'"model": {json.dumps(spec.served_name)}'.encode(), f'"model": {json.dumps(spec.version)}'.encode())]
    notice = guarded.prefix

    def rewrite(line: bytes) -> bytes:
        nonlocal notice
        if not (line.startswith(b"data: {") and line.endswith(b"}")):
            return line + b"\n\n"  # [DONE]
        first = b""
        if notice:
            first, notice = _notice_chunk(json.loads(line[6:]), notice, engine, alias, guarded, guarded.actions), ""
        if not _unredactable(line):
            for old, new in names:
                if old in line:
                    return first + line.replace(old, new, 1)[:-1] + tail + b"\n\n"
        # an engine that words "model" differently, or sends what must go: the slow, sure way
        chunk = json.loads(line[6:])
        for choice in chunk.get("choices") or []:
            _remove_unredactable(choice, choice.get("delta") or {}, guarded)
        return first + b"data: " + json.dumps(_annotate(chunk, engine, alias, guarded, guarded.actions)
                                              ).encode() + b"\n\n"

    return rewrite


def _unredactable(line: bytes) -> bool:
    """Whether a chunk's text may carry tool calls or log-probabilities (not ``"logprobs": null``).

    >>> _unredactable(b'data: {"choices": [{"delta": {"content": "x"}, "logprobs": null}]}')
    False
    >>> _unredactable(b'data: {"choices": [{"delta": {"content": "x"}, "logprobs": {"content": []}}]}')
    True
    """
    if b'"tool_calls"' in line:
        return True
    return line.count(b'"logprobs"') > line.count(b'"logprobs":null') + line.count(b'"logprobs": null')


def _guarded_rewriter(engine: Engine, alias: str | None, guarded: GuardedChat):
    """Redact the answer (identifiers, doses) as it streams.

    The redactor holds back the last few dozen characters so a value split across chunks is still
    caught; the held text goes out with the chunk that carries ``finish_reason`` (or before ``[DONE]``).
    """
    notice, last = guarded.prefix, None

    def rewrite(line: bytes) -> bytes:
        nonlocal notice, last
        if not line.startswith(b"data: {"):
            held = guarded.flush_all()
            if held and last is not None:  # no finish_reason chunk came: send what was held back
                return _notice_chunk(last, held, engine, alias, guarded, guarded.all_actions()) + line + b"\n\n"
            return line + b"\n\n"
        chunk, first = json.loads(line[6:]), b""
        if notice and "error" not in chunk:
            first, notice = _notice_chunk(chunk, notice, engine, alias, guarded, guarded.actions), ""
        for choice in chunk.get("choices") or []:
            delta = choice.get("delta") or {}
            _remove_unredactable(choice, delta, guarded)
            index = choice.get("index", 0)
            for name in ("content", *EXTRA_TEXT_FIELDS):
                if name != "content" and delta.get(name) is None and (index, name) not in guarded.redactors:
                    continue
                redactor = guarded.redactor_for(index, name)
                text = redactor.feed(delta.get(name) or "")
                if choice.get("finish_reason") is not None:
                    text += redactor.flush()
                if delta.get(name) is not None or text:
                    delta[name] = text
                    choice["delta"] = delta
        last = chunk
        return first + b"data: " + json.dumps(_annotate(chunk, engine, alias, guarded, guarded.all_actions())
                                              ).encode() + b"\n\n"

    return rewrite


def _engine_failure(engine: Engine, e: Exception) -> JSONResponse:
    log.warning("a request to %s failed: %s", engine.spec.version, e)
    if not engine.alive():
        return error_response(503, f"the engine serving {engine.spec.version} is down and being restarted; "
                              "retry in a few seconds.", "engine_unavailable")
    return error_response(502, f"the engine serving {engine.spec.version} failed: {e}", "engine_failed")


async def _engine_error(upstream: UpstreamResponse, headers: dict) -> Response:
    """An engine's error, passed on in the OpenAI format (engines differ in how they word it)."""
    try:
        raw = await upstream.aread()
    except UpstreamError as e:
        raw = str(e).encode()
    finally:
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
