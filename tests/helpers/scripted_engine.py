"""A scripted OpenAI-style engine and the gateway app in process in front of it, both on real uvicorn servers.

The engine records every request it is sent and answers with whatever a test sets, streamed in small pieces
(so redaction across chunk boundaries is exercised deterministically); extra fields in its choices and messages
play a misbehaving engine (logprobs, tool calls, reasoning text)::

    engine = ScriptedEngine("Emollients.")
    engine_url, engine_server, engine_thread = serve_in_thread(engine.app)
    url, server, thread = serve_gateway(ScriptedPool(Engine(spec, log_dir)), home)
    headers, text, guard, chunks = ask(url, "What is febrile neutropenia?", stream=True)
    stop_servers((server, thread), (engine_server, engine_thread))
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path

import openai
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

from feedback.db import open_store
from feedback.keys import KeyStore
from core.settings import get_settings
from serve.config import ServeConfig
from core.process import free_port
from serve.engines import Engine
from serve.gateway import create_app
from serve.guard import Guard


class ScriptedEngine:
    """Answers every chat with ``answer``, streamed in ``step``-character pieces; ``choice_extra`` and
    ``message_extra`` are merged into each choice and message (or stream delta)."""

    def __init__(self, answer: str = "", step: int = 3):
        self.answer, self.step, self.received = answer, step, []
        self.choice_extra: dict = {}
        self.message_extra: dict = {}
        app = FastAPI()

        @app.post("/v1/chat/completions")
        async def chat(request: Request):
            body = await request.json()
            self.received.append(body)
            base = {"id": "chatcmpl-1", "created": 1, "model": body["model"]}
            if not body.get("stream"):
                message = {"role": "assistant", "content": self.answer, **self.message_extra}
                return JSONResponse({**base, "object": "chat.completion", "choices": [
                    {"index": 0, "message": message, "finish_reason": "stop", **self.choice_extra}]})

            async def events():
                pieces = [self.answer[i:i + self.step] for i in range(0, len(self.answer), self.step)]
                for n, piece in enumerate(pieces):
                    done = n == len(pieces) - 1
                    delta = {"role": "assistant", "content": piece, **self.message_extra}
                    chunk = {**base, "object": "chat.completion.chunk", "choices": [
                        {"index": 0, "delta": delta, "finish_reason": "stop" if done else None, **self.choice_extra}]}
                    yield f"data: {json.dumps(chunk)}\n\n"
                yield "data: [DONE]\n\n"
            return StreamingResponse(events(), media_type="text/event-stream")

        self.app = app


class ScriptedPool:
    """Just enough of :class:`serve.pool.EnginePool` for the gateway: one engine, the champion."""

    def __init__(self, engine: Engine, cfg: ServeConfig | None = None):
        self.cfg, self.engine, self.routes, self.engines = cfg or ServeConfig(), engine, {"champion": "v1"}, {"v1": engine}

    async def run(self):
        await asyncio.Event().wait()

    async def close(self):
        pass

    def pick(self, model, arm):
        return self.engine, "champion"

    def prompt_tokens(self, engine, messages):
        return None

    def ready(self):
        return True, {"ready": True}


KEYS: dict[str, str] = {}  # gateway URL -> the tests' key there (scope admin)


def serve_in_thread(app) -> tuple[str, uvicorn.Server, threading.Thread]:
    """``app`` on a free loopback port, served by uvicorn in a daemon thread; returns (url, server, thread)."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "the test server did not start"
        time.sleep(0.02)
    return f"http://127.0.0.1:{port}", server, thread


def stop_servers(*served: tuple[uvicorn.Server, threading.Thread]) -> None:
    """Stop servers started by :func:`serve_in_thread`, given as (server, thread) pairs."""
    for server, thread in served:
        server.should_exit = True
        thread.join(10)


def serve_gateway(pool, home: Path, guard: Guard | None = None, retriever=None):
    """The gateway app over ``pool`` in a thread, its keys in a store of ``home``; the tests' key in :data:`KEYS`."""
    keys = KeyStore(open_store(get_settings({"ONCOLOOP_HOME": str(home)})))
    url, server, thread = serve_in_thread(create_app(pool, guard or Guard(), retriever, keys=keys))
    KEYS[url] = keys.create("tests", ["admin"])[1]
    return url, server, thread


def client(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key=KEYS[url], max_retries=0, timeout=60)


def ask(url: str, question: str, stream: bool, **extra):
    """(headers, text, guard actions, chunks or [answer]) of one question to the gateway at ``url``."""
    messages = [{"role": "user", "content": question}]
    if not stream:
        raw = client(url).chat.completions.with_raw_response.create(model="champion", messages=messages, **extra)
        answer = raw.parse()
        return raw.headers, answer.choices[0].message.content, answer.model_extra["oncoloop"]["guard"], [answer]
    with client(url).chat.completions.with_streaming_response.create(model="champion", messages=messages,
                                                                       stream=True, **extra) as raw:
        chunks = list(raw.parse())
        headers = raw.headers
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    return headers, text, chunks[-1].model_extra["oncoloop"]["guard"], chunks
