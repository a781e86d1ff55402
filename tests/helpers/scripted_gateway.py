"""A scripted OpenAI-compatible gateway over real HTTP, for the UI's handlers and the security tests.

It replays queued replies (like simonw/llm's fake model) in the gateway's wire format: SSE chunks carrying
``oncoloop`` (version, alias, guard), ``/ready`` with routes; every request it gets is kept in ``requests``.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from feedback.store import FeedbackStore


@dataclass
class Reply:
    """One scripted answer: text chunks, or a failure (``status`` >= 400, or ``break_after`` chunks)."""

    chunks: tuple[str, ...] = ("Hold ", "the drug ", "and check bloods.")
    version: str = "v1"
    alias: str = "champion"
    guard: tuple[str, ...] = ("preamble",)
    status: int = 200
    break_after: int | None = None


@dataclass
class ScriptedGateway:
    url: str
    replies: list[Reply] = field(default_factory=list)
    requests: list[dict] = field(default_factory=list)
    routes: dict = field(default_factory=lambda: {"champion": "v1"})
    challenger_share: float | None = None  # reported by /ready when set


def _serve(gw: ScriptedGateway, server_box: list):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def _json(self, status, obj):
            body = json.dumps(obj).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            if self.path == "/ready":
                state = {"ready": True, "routes": gw.routes, "engines": {}}
                if gw.challenger_share is not None:
                    state["challenger_share"] = gw.challenger_share
                self._json(200, state)
            else:
                self._json(404, {"error": {"message": "not found"}})

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            gw.requests.append({"body": body, "headers": dict(self.headers)})
            reply = gw.replies.pop(0) if gw.replies else Reply()
            if reply.status >= 400:
                self._json(reply.status, {"error": {"message": "the engine is starting", "code": "engine_starting"}})
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Connection", "close")
            self.end_headers()
            meta = {"version": reply.version, "alias": reply.alias, "engine": "scripted", "guard": list(reply.guard)}
            for i, text in enumerate(reply.chunks):
                if reply.break_after is not None and i == reply.break_after:
                    err = {"error": {"message": "the engine stopped mid-answer; retry.", "code": "engine_failed"}}
                    self.wfile.write(f"data: {json.dumps(err)}\n\n".encode())
                    self.wfile.flush()
                    return
                last = i == len(reply.chunks) - 1
                chunk = {"id": "c1", "object": "chat.completion.chunk", "created": 0, "model": reply.version,
                         "choices": [{"index": 0, "delta": {"content": text},
                                      "finish_reason": "stop" if last else None}], "oncoloop": meta}
                self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                self.wfile.flush()
            self.wfile.write(b"data: [DONE]\n\n")
            self.wfile.flush()
            self.close_connection = True

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server_box.append(server)
    gw.url = f"http://127.0.0.1:{server.server_address[1]}"
    server.serve_forever()


def register_versions(store: FeedbackStore, home, names=("v1", "v2"), champion: str = "v1"):
    """Register placeholder model versions (meta.json and a dummy weights file) and set the champion."""
    from serve.registry import Registry

    registry = Registry(store.store)
    for name in names:
        path = home / "models" / name
        path.mkdir(parents=True)
        (path / "meta.json").write_text(json.dumps({"method": "bootstrap", "base": "tiny"}))
        (path / "model.safetensors").write_bytes(b"weights")
        registry.register(path)
    registry.set_alias("champion", champion, "setup", "first")
    return registry


@pytest.fixture
def scripted_gateway():
    gw = ScriptedGateway(url="")
    box: list = []
    thread = threading.Thread(target=_serve, args=(gw, box), daemon=True)
    thread.start()
    while not box or not gw.url:
        threading.Event().wait(0.01)
    yield gw
    box[0].shutdown()
    box[0].server_close()
