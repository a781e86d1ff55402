"""Issue 16, points 2 and 3: the gateway tried as an attacker would, over real HTTP.

The gateway app runs in process in front of a scripted engine that records what reaches it and answers with
whatever a test sets (logprobs, tool calls, reasoning text), in one piece; keys live in a store of the test's own.
"""

from __future__ import annotations

import json
import stat

import httpx
import pytest

from core.errors import OncoLoopError
from core.settings import get_settings
from feedback.db import open_store
from feedback.keys import KeyStore, key_hash, local_key
from feedback.keys import main as keys_cli
from serve.config import ServeConfig
from serve.engines import ENGINE_KEY_ENV, Engine, EngineSpec, engine_spec
from serve.gateway import create_app
from serve.guard import Guard, GuardConfig
from tests.helpers.scripted_engine import ScriptedEngine, ScriptedPool, serve_in_thread, stop_servers

IDENTIFIED = "Patient Jane Doe, MRN 00482913, has grade 2 hand-foot syndrome on capecitabine. How is it managed?"
ASK = [{"role": "user", "content": "What is febrile neutropenia?"}]


@pytest.fixture(scope="module")
def gw(tmp_path_factory):
    """(url, engine, keys, {scope: key}) of a gateway with keys re-checked on every request (key_cache_s=0)."""
    engine = ScriptedEngine("Fine.", step=10_000)
    engine_url, engine_server, engine_thread = serve_in_thread(engine.app)
    spec = EngineSpec("transformers", "v1", ["scripted", "--host", "127.0.0.1"], int(engine_url.rsplit(":", 1)[1]),
                      "/models/v1")
    pool = ScriptedPool(Engine(spec, tmp_path_factory.mktemp("logs")), ServeConfig(
        key_cache_s=0, max_body_bytes=200_000, max_messages=8, max_message_chars=5_000, max_answer_tokens=512, max_n=2))
    home = tmp_path_factory.mktemp("keys") / "home"
    keys = KeyStore(open_store(get_settings({"ONCOLOOP_HOME": str(home)})))
    url, server, thread = serve_in_thread(create_app(pool, Guard(GuardConfig(urgent_model=False)), keys=keys))
    secrets = {scope: keys.create(f"k-{scope}", [scope])[1] for scope in ("chat", "eval", "admin")}
    yield url, engine, keys, secrets
    stop_servers((server, thread), (engine_server, engine_thread))


def post(url: str, key: str | None, body=None, headers: dict | None = None, **kw) -> httpx.Response:
    auth = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.post(f"{url}/v1/chat/completions", json=body if body is not None else {"model": "champion",
                      "messages": ASK}, headers={**auth, **(headers or {})}, timeout=60, **kw)


def error_code(r: httpx.Response) -> str:
    return r.json()["error"]["code"]


# ---- keys -------------------------------------------------------------------------------------------------

def test_no_key_wrong_key_and_revoked_key_get_401(gw):
    url, engine, keys, secrets = gw
    sent = len(engine.received)
    for path in ("/v1/models", "/ready"):
        assert httpx.get(f"{url}{path}").status_code == 401
    r = post(url, None)
    assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
    assert "python -m feedback.keys create" in r.json()["error"]["message"]
    assert post(url, "onk_" + "x" * 43).status_code == 401
    assert post(url, secrets["chat"][:-1]).status_code == 401  # one character short
    assert httpx.get(f"{url}/health").status_code == 200  # the one open route
    for schema in ("/docs", "/openapi.json", "/redoc"):
        assert httpx.get(f"{url}{schema}").status_code == 404
    _, doomed = keys.create("doomed", ["chat"])
    assert post(url, doomed).status_code == 200
    keys.revoke("doomed")
    r = post(url, doomed)
    assert r.status_code == 401 and error_code(r) == "invalid_key"
    assert len(engine.received) == sent + 1  # only the request with a valid key reached the engine


def test_ready_details_need_the_eval_or_admin_scope(gw):
    url, _, _, secrets = gw

    def ready(key, details):
        return httpx.get(f"{url}/ready", params={"details": "true"} if details else None,
                         headers={"Authorization": f"Bearer {key}"})

    r = ready(secrets["chat"], True)
    assert r.status_code == 403 and error_code(r) == "insufficient_scope"
    assert ready(secrets["chat"], False).status_code == 200
    assert ready(secrets["eval"], True).status_code == 200 and ready(secrets["admin"], True).status_code == 200


def test_ready_summary_hides_engine_urls_and_pids():
    from serve.gateway import ready_summary

    state = {"ready": True, "routes": {"champion": "v1"}, "engines": {"v1": {
        "state": "ready", "engine": "vllm", "pid": 4242, "url": "http://127.0.0.1:40001", "log": "/x.log",
        "served_name": "v1", "inflight": 0, "restarts": 0}}}
    summary = json.dumps(ready_summary(state))
    assert "4242" not in summary and "40001" not in summary and "x.log" not in summary
    assert json.loads(summary)["engines"]["v1"]["state"] == "ready"


@pytest.mark.parametrize("value", ["no-audit", "audit,trace", "xaudit", "AUDIT please"])
def test_audit_header_must_match_exactly(gw, value):
    url, engine, _, secrets = gw
    sent = len(engine.received)
    r = post(url, secrets["admin"], {"model": "champion", "messages": [{"role": "user", "content": IDENTIFIED}]},
             {"X-OncoLoop-Guard": value})
    assert r.status_code == 400 and error_code(r) == "invalid_guard_option"
    assert len(engine.received) == sent


def test_audit_mode_needs_the_eval_scope(gw):
    url, engine, _, secrets = gw
    body = {"model": "champion", "messages": [{"role": "user", "content": IDENTIFIED}]}
    r = post(url, secrets["chat"], body, {"X-OncoLoop-Guard": "audit"})
    assert r.status_code == 403 and error_code(r) == "insufficient_scope"
    assert post(url, secrets["chat"], body).status_code == 200
    assert "Jane Doe" not in json.dumps(engine.received[-1])  # stripped, as without the header
    r = post(url, secrets["eval"], body, {"X-OncoLoop-Guard": "audit"})
    assert r.status_code == 200 and "audit" in r.json()["oncoloop"]["guard"]
    assert "Jane Doe" in json.dumps(engine.received[-1])


def test_keys_cli_creates_lists_revokes_and_stores_only_hashes(oncoloop_home, capsys):
    assert keys_cli(["create", "--name", "lab", "--scopes", "chat,eval"]) == 0
    secret = capsys.readouterr().out.strip().splitlines()[1]
    assert secret.startswith("onk_") and len(secret) > 40
    keys = KeyStore(open_store())
    assert keys.verify(secret).scopes == ("chat", "eval")
    db = b"".join(f.read_bytes() for f in oncoloop_home.glob("oncoloop.db*"))  # the WAL too
    assert secret.encode() not in db and key_hash(secret).encode() in db
    assert keys_cli(["create", "--name", "lab", "--scopes", "chat"]) == 2  # one active key per name
    assert keys_cli(["create", "--name", "x", "--scopes", "root"]) == 2
    assert keys_cli(["list"]) == 0 and "lab" in capsys.readouterr().out
    assert keys_cli(["revoke", "lab"]) == 0 and keys.verify(secret) is None
    assert keys_cli(["revoke", "lab"]) == 2


def test_local_keys_are_owner_only_and_reused(oncoloop_home):
    first = local_key("ui", ["chat"])
    path = oncoloop_home / "keys" / "ui.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert local_key("ui", ["chat"]) == first
    KeyStore(open_store()).revoke("local-ui")
    second = local_key("ui", ["chat"])  # a revoked local key is replaced
    assert second != first and KeyStore(open_store()).verify(second).name == "local-ui"


# ---- request validation -----------------------------------------------------------------------------------

def test_oversized_body_gets_413_before_it_is_read(gw):
    url, engine, _, secrets = gw
    sent = len(engine.received)
    big = {"model": "champion", "messages": [{"role": "user", "content": "x" * 300_000}]}
    r = post(url, secrets["chat"], big)
    assert r.status_code == 413 and error_code(r) == "body_too_large" and "max_body_bytes" in r.text

    def chunked():  # no Content-Length: the gateway counts as it reads
        yield b'{"model": "champion", "messages": [{"role": "user", "content": "'
        for _ in range(30):
            yield b"y" * 10_000
        yield b'"}]}'
    r = httpx.post(f"{url}/v1/chat/completions", content=chunked(), timeout=60,
                   headers={"Authorization": f"Bearer {secrets['chat']}", "Content-Type": "application/json"})
    assert r.status_code == 413
    assert len(engine.received) == sent


@pytest.mark.parametrize("extra,code,param", [
    ({"messages": ASK * 9}, "too_many_messages", "messages"),
    ({"messages": [{"role": "user", "content": "q" * 5_001}]}, "message_too_long", "messages[0]"),
    ({"max_tokens": 100_000}, "max_tokens_too_large", "max_tokens"),
    ({"max_completion_tokens": 100_000}, "max_tokens_too_large", "max_completion_tokens"),
    ({"n": 50}, "n_too_large", "n"),
    ({"logprobs": True, "top_logprobs": 5}, "logprobs_unsupported", "logprobs"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://x"}}]}]},
     "unsupported_content", "messages[0].content[0]"),
])
def test_limits_refuse_with_400_and_say_what_to_do(gw, extra, code, param):
    url, engine, _, secrets = gw
    sent = len(engine.received)
    r = post(url, secrets["chat"], {"model": "champion", "messages": ASK, **extra})
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["code"] == code and error["param"] == param and error["message"].endswith(".")
    assert len(engine.received) == sent


def test_unknown_fields_never_reach_the_engine(gw):
    url, engine, _, secrets = gw
    body = {"model": "champion", "messages": ASK, "temperature": 0.2, "max_tokens": 5, "tools": [
        {"type": "function", "function": {"name": "shell", "parameters": {}}}], "tool_choice": "auto",
        "response_format": {"type": "json_object"}, "guided_regex": ".*", "conversation_id": "c1", "ab": False,
        "retrieval": False, "x_anything": {"nested": 1}}
    assert post(url, secrets["chat"], body).status_code == 200
    sent = engine.received[-1]
    assert set(sent) == {"model", "messages", "temperature", "max_tokens"}
    assert sent["temperature"] == 0.2 and sent["max_tokens"] == 5


def test_content_part_arrays_are_accepted_and_flattened(gw):
    url, engine, _, secrets = gw
    parts = [{"type": "text", "text": "What is febrile"}, {"type": "text", "text": "neutropenia?"}]
    r = post(url, secrets["chat"], {"model": "champion", "messages": [{"role": "user", "content": parts}]})
    assert r.status_code == 200, r.text
    assert engine.received[-1]["messages"][-1] == {"role": "user", "content": "What is febrile\nneutropenia?"}


def test_every_role_is_scrubbed(gw):
    url, engine, _, secrets = gw
    chat = [{"role": "system", "content": "Context: Mrs Jane Doe, tel 07700 900123."},
            {"role": "user", "content": "How is hand-foot syndrome managed?"},
            {"role": "assistant", "content": "For Jane Doe (MRN 00482913): emollients."},
            {"role": "tool", "content": "record: Jane Doe, jane.doe@example.org"},
            {"role": "user", "content": "And if it gets worse?"}]
    assert post(url, secrets["chat"], {"model": "champion", "messages": chat}).status_code == 200
    sent = json.dumps(engine.received[-1])
    for phi in ("Jane Doe", "00482913", "07700 900123", "jane.doe@example.org"):
        assert phi not in sent
    assert [m["role"] for m in engine.received[-1]["messages"][1:]] == ["system", "user", "assistant", "tool", "user"]


@pytest.mark.parametrize("stream", [False, True])
def test_logprobs_and_tool_calls_are_removed_and_other_text_redacted(gw, stream):
    url, engine, _, secrets = gw
    engine.answer = "Emollients."
    engine.choice_extra = {"logprobs": {"content": [{"token": "Jane", "logprob": -0.1, "top_logprobs": []}]}}
    engine.message_extra = {"reasoning_content": "The patient Jane Doe, MRN 00482913, needs care.",
                            "tool_calls": [{"id": "t1", "type": "function", "function": {
                                "name": "lookup", "arguments": json.dumps({"mrn": "00482913"})}}]}
    try:
        body = {"model": "champion", "stream": stream, "messages": [{"role": "user", "content": IDENTIFIED}]}
        r = post(url, secrets["chat"], body)
        text = r.text
        assert r.status_code == 200
        assert "Jane" not in text and "00482913" not in text and '"tool_calls":' not in text, text
        assert '"logprobs": {' not in text and '"logprobs":{' not in text
        assert "redacted" in text  # the reasoning text came through, redacted
        assert "logprobs_removed" in text and "tool_calls_removed" in text  # and the guard's record says so
        # without identifiers in the question (the fast path), tool calls and logprobs still go
        r = post(url, secrets["chat"], {"model": "champion", "stream": stream, "messages": ASK})
        assert '"tool_calls":' not in r.text and '"top_logprobs"' not in r.text
    finally:
        engine.choice_extra, engine.message_extra = {}, {}


# ---- engines ----------------------------------------------------------------------------------------------

class _Version:
    def __init__(self, path, mergeable=True):
        self.id, self.path, self.mergeable = "v1", str(path), mergeable


def test_engines_bind_to_loopback_with_a_secret_per_start(bundled_model, monkeypatch):
    monkeypatch.setattr("serve.engines.vllm_command", lambda cfg: ["vllm"])
    cfg = ServeConfig()
    specs = [engine_spec("transformers", _Version(bundled_model), cfg),
             engine_spec("vllm", _Version(bundled_model), cfg),
             engine_spec("vllm", _Version(bundled_model), cfg),
             engine_spec("transformers", _Version(bundled_model, mergeable=False), cfg, str(bundled_model))]
    for spec in specs:
        assert spec.command[spec.command.index("--host") + 1] == "127.0.0.1"
        assert not any(spec.secret and spec.secret in part for part in spec.command)  # not visible in `ps`
    assert specs[0].secret == ""  # transformers serve takes no key: loopback only (README)
    assert specs[1].env["VLLM_API_KEY"] == specs[1].secret and len(specs[1].secret) > 30
    assert specs[1].secret != specs[2].secret  # a new one each start
    assert specs[3].kind == "adapter" and specs[3].env[ENGINE_KEY_ENV] == specs[3].secret
    with pytest.raises(OncoLoopError, match="loopback"):
        engine_spec("transformers", _Version(bundled_model), ServeConfig(engine_host="0.0.0.0"))


def test_adapter_engine_refuses_requests_without_its_secret():
    from fastapi.testclient import TestClient

    from serve.adapter_engine import create_app as adapter_app

    client = TestClient(adapter_app(None, None, "v1", secret="s3cret"))
    assert client.get("/v1/models").status_code == 401
    assert client.get("/v1/models", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get("/v1/models", headers={"Authorization": "Bearer s3cret"}).status_code == 200


def test_a_big_body_is_guarded_in_a_worker_process(tmp_path):
    """Bodies over guard_process_min_bytes go to a worker process: identifiers are stripped there too."""
    engine = ScriptedEngine("Fine.", step=10_000)
    engine_url, engine_server, engine_thread = serve_in_thread(engine.app)
    spec = EngineSpec("transformers", "v1", ["scripted", "--host", "127.0.0.1"], int(engine_url.rsplit(":", 1)[1]),
                      "/models/v1")
    pool = ScriptedPool(Engine(spec, tmp_path), ServeConfig(guard_process_min_bytes=1_000))
    keys = KeyStore(open_store(get_settings({"ONCOLOOP_HOME": str(tmp_path / "home")})))
    url, server, thread = serve_in_thread(create_app(pool, Guard(GuardConfig(urgent_model=False)), keys=keys))
    try:
        _, key = keys.create("t", ["chat"])
        question = IDENTIFIED + " " + "Grade 2 hand-foot syndrome on capecitabine. " * 40
        r = post(url, key, {"model": "champion", "messages": [{"role": "user", "content": question}]})
        assert r.status_code == 200, r.text
        assert "Jane Doe" not in json.dumps(engine.received[-1]) and "[MRN]" in json.dumps(engine.received[-1])
        assert "identifier_stripped:mrn" in r.json()["oncoloop"]["guard"]
    finally:
        stop_servers((server, thread), (engine_server, engine_thread))

