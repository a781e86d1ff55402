"""UI fixtures: a store with accounts, and a scripted OpenAI-compatible gateway over real HTTP.

The scripted gateway replays queued replies (like simonw/llm's fake model) in the gateway's wire
format: SSE chunks carrying ``oncoloop`` (version, alias, guard), ``/ready`` with routes. The
browser and load tests use the real gateway over a tiny model instead.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from feedback.dedup import lexical_embed
from feedback.store import FeedbackStore
from tests.conftest import REPO
from ui.config import UIConfig
from ui.handlers import Handlers


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


@pytest.fixture
def store(oncoloop_home):
    fs = FeedbackStore.open()
    yield fs
    fs.store.engine.dispose()


@pytest.fixture
def accounts(store):
    """A clinician, a reviewer and an admin (passwords: '<name>-password')."""
    return {role: store.add_user(name, f"{name}-password", role)
            for name, role in (("carla", "clinician"), ("rita", "reviewer"), ("adam", "admin"))}


@pytest.fixture
def handlers(store, accounts, scripted_gateway) -> Handlers:
    cfg = UIConfig(gateway_url=scripted_gateway.url, max_retries=0, request_timeout_s=10, ab_status_ttl_s=0,
                   reviewed_refresh_s=0, reviewed_min_similarity=0.3)
    return Handlers.create(cfg, store, embed=lexical_embed)


PEOPLE = (("carla", "clinician"), ("rita", "reviewer"), ("adam", "admin"))


@pytest.fixture(scope="session")
def ui_stack(tmp_path_factory, bundled_model):
    """The real thing: ``python -m serve`` (transformers engine, the tiny fixture as champion, served as it was
    trained: without the preamble) and ``python -m ui`` in their own home, with accounts carla (clinician),
    rita (reviewer), adam (admin); password '<name>-password'."""
    from core.settings import get_settings
    from tests.serve.conftest import Gateway, add_version, registry_at
    from tests.ui.clinician import UIServer

    home = tmp_path_factory.mktemp("ui_stack") / "home"
    add_version(home, bundled_model, "v1")
    registry_at(home).set_alias("champion", "v1", "test", "first")
    store = FeedbackStore.open(get_settings({"ONCOLOOP_HOME": str(home)}))
    for name, role in PEOPLE:
        store.add_user(name, f"{name}-password", role)
    gateway = Gateway(home, "--engine", "transformers", "--guard", str(REPO / "configs/guard/tiny_cpu.yaml"),
                      "challenger_share=0")
    ui = None
    try:
        gateway.wait(lambda s: s.get("ready") is True, timeout=300)
        ui = UIServer(home, gateway.url, "max_tokens=16", "embedder=lexical", "reviewed_refresh_s=1").wait()
        yield {"home": home, "gateway": gateway, "ui": ui, "store": store}
    finally:
        if ui is not None:
            ui.stop()
        gateway.stop()
        store.store.engine.dispose()
