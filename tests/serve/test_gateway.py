"""The gateway over real `transformers serve` engines, driven with the unchanged `openai` client.

One gateway (v1 champion, v2 challenger, A/B share 0.5, the default guard) serves the whole module; the tests
run in file order and the last one promotes v3, so each test reads the routes it relies on.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time

import httpx
import openai
import pytest

from serve.routing import ab_arm
from tests.helpers.gateway import registry_at
from tests.helpers.scripted_engine import KEYS, ask

pytestmark = pytest.mark.slow
ASK = [{"role": "user", "content": "What is febrile neutropenia?"}]


def client(gw) -> openai.OpenAI:
    return gw.client()


def test_openai_client_unchanged_plain_and_streaming(gateway):
    raw = client(gateway).chat.completions.with_raw_response.create(
        model="champion", messages=ASK, max_tokens=5, extra_body={"ab": False})
    answer = raw.parse()
    assert raw.headers["x-oncoloop-version"] == "v1" and answer.model == "v1"
    assert answer.model_extra["oncoloop"] == {"version": "v1", "alias": "champion", "engine": "transformers",
                                              "guard": ["preamble"], "context": []}
    assert answer.choices[0].message.role == "assistant" and answer.usage.completion_tokens >= 1

    for model, version, engine in (("champion", "v1", "transformers"), ("challenger", "v2", "adapter")):
        chunks = list(client(gateway).chat.completions.create(model=model, messages=ASK, max_tokens=5, stream=True,
                                                              extra_body={"ab": False}))
        assert chunks and {c.model for c in chunks} == {version}
        assert all(c.model_extra["oncoloop"] == {"version": version, "alias": model, "engine": engine,
                                                 "guard": ["preamble"], "context": []}
                   for c in chunks)
        assert chunks[-1].choices[0].finish_reason in ("length", "stop")
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    adapter = client(gateway).chat.completions.create(model="v2", messages=ASK, max_tokens=4)
    assert adapter.model == "v2" and adapter.choices[0].message.content

    models = {m.id for m in client(gateway).models.list()}
    assert {"champion", "challenger", "v1", "v2"} <= models


def test_ab_split_is_sticky_per_conversation(gateway):
    seen: dict[str, str] = {}
    for turn in range(2):
        for i in range(10):
            cid = f"conv-{i}"
            chat = ASK + [{"role": "assistant", "content": "..."}, {"role": "user", "content": "And then?"}] * turn
            answer = client(gateway).chat.completions.create(
                model="champion", messages=chat, max_tokens=1, extra_body={"conversation_id": cid})
            expected = {"champion": "v1", "challenger": "v2"}[ab_arm(f"id:{cid}", 0.5)]
            assert answer.model == expected
            assert seen.setdefault(cid, answer.model) == answer.model
    assert set(seen.values()) == {"v1", "v2"}
    # the same key by header, the `user` field, or the first message when nothing else is given
    by_header = httpx.post(f"{gateway.url}/v1/chat/completions",
                           headers={"X-OncoLoop-Conversation": "conv-3", **gateway.headers},
                           json={"model": "champion", "messages": ASK, "max_tokens": 1}, timeout=60)
    assert by_header.headers["x-oncoloop-version"] == seen["conv-3"]
    for _ in range(3):
        first = client(gateway).chat.completions.create(model="champion", messages=ASK, max_tokens=1)
        assert first.model == {"champion": "v1", "challenger": "v2"}[ab_arm(f"first:{ASK[0]['content']}", 0.5)]
    # the OpenAI `user` field keys the split too (and is not passed to engines that refuse it)
    by_user = {client(gateway).chat.completions.create(model="champion", messages=ASK, max_tokens=1,
                                                       user="dr-a").model for _ in range(3)}
    assert by_user == {{"champion": "v1", "challenger": "v2"}[ab_arm("user:dr-a", 0.5)]}
    # evaluation pins a version: A/B off, or naming the alias or the version id
    for cid in seen:
        pinned = client(gateway).chat.completions.create(
            model="champion", messages=ASK, max_tokens=1, extra_body={"conversation_id": cid, "ab": False})
        assert pinned.model == "v1"
    assert client(gateway).chat.completions.create(model="v2", messages=ASK, max_tokens=1).model == "v2"


@pytest.mark.parametrize("body,status,code", [
    (b"{not json", 400, "invalid_json"),
    (json.dumps({"model": "champion", "messages": []}).encode(), 400, "invalid_request"),
    (json.dumps({"model": "champion", "messages": [{"role": "user", "content": "  "}]}).encode(), 400,
     "empty_messages"),
    (json.dumps({"model": "champion", "messages": [{"role": "wizard", "content": "x"}]}).encode(), 400,
     "invalid_request"),
    (json.dumps({"model": "v99", "messages": ASK}).encode(), 404, "model_not_found"),
    (json.dumps({"model": "v3", "messages": ASK}).encode(), 404, "model_not_found"),  # registered, not served
    (json.dumps({"model": "champion", "messages": [{"role": "user", "content": "neutropenia " * 2500}]}).encode(),
     400, "context_length_exceeded"),
    (json.dumps({"model": "champion", "messages": ASK, "max_tokens": 4000}).encode(), 400,
     "context_length_exceeded"),
])
def test_bad_input_gets_openai_errors_and_serving_goes_on(gateway, body, status, code):
    r = httpx.post(f"{gateway.url}/v1/chat/completions", content=body, timeout=60,
                   headers={"content-type": "application/json", **gateway.headers})
    assert r.status_code == status
    error = r.json()["error"]
    assert error["code"] == code and error["message"] and error["type"] == "invalid_request_error"
    assert client(gateway).chat.completions.create(model="champion", messages=ASK, max_tokens=1).choices


def test_openai_client_raises_its_own_errors(gateway):
    with pytest.raises(openai.NotFoundError, match="unknown model or version 'nope'"):
        client(gateway).chat.completions.create(model="nope", messages=ASK)
    with pytest.raises(openai.BadRequestError, match="at least 1 item"):
        client(gateway).chat.completions.create(model="champion", messages=[])


def test_guard_on_the_real_gateway_and_tiny_model(gateway):
    """The default guard in ``python -m serve``: the urgent notice first, the preamble, bad input refused first."""
    KEYS[gateway.url] = gateway.key
    question = "Man on treatment for prostate cancer now has back pain and leg weakness since this morning."
    for stream in (False, True):
        headers, text, guard, chunks = ask(gateway.url, question, stream, max_tokens=4, extra_body={"ab": False})
        assert text.startswith("URGENT:") and guard == ["preamble", "urgent_notice:spinal_cord_compression"]
        assert headers["x-oncoloop-version"] == "v1" and {c.model for c in chunks} == {"v1"}
    _, _, guard, _ = ask(gateway.url, "What is febrile neutropenia?", True, max_tokens=4, extra_body={"ab": False})
    assert guard == ["preamble"]
    r = httpx.post(f"{gateway.url}/v1/chat/completions", json={"model": "champion", "messages": []}, timeout=30,
                   headers=gateway.headers)
    assert r.status_code == 400  # bad input is still refused before the guard


def test_stream_cut_by_the_client_frees_the_engine(gateway):
    with httpx.stream("POST", f"{gateway.url}/v1/chat/completions", timeout=60, headers=gateway.headers, json={
            "model": "champion", "messages": ASK, "max_tokens": 400, "stream": True, "ab": False}) as r:
        assert r.status_code == 200
        next(r.iter_lines())  # one chunk, then hang up
    gateway.wait(lambda s: all(e["inflight"] == 0 for e in s["engines"].values()), 60, "in-flight count 0")
    assert client(gateway).chat.completions.create(model="champion", messages=ASK, max_tokens=1).model


def test_dead_engine_answers_503_then_is_restarted(gateway):
    before = gateway.ready()["engines"]["v2"]
    os.killpg(before["pid"], signal.SIGKILL)
    time.sleep(0.5)
    r = httpx.post(f"{gateway.url}/v1/chat/completions", json={"model": "challenger", "messages": ASK}, timeout=60,
                   headers=gateway.headers)
    assert r.status_code == 503
    assert r.json()["error"]["code"] == "engine_unavailable" and "restart" in r.json()["error"]["message"]
    assert client(gateway).chat.completions.create(model="v1", messages=ASK, max_tokens=1).model == "v1"
    after = gateway.wait(lambda s: s["engines"].get("v2", {}).get("restarts") == 1
                         and s["engines"]["v2"]["state"] == "ready", 600, "the challenger's restart")
    assert after["engines"]["v2"]["pid"] != before["pid"]
    assert client(gateway).chat.completions.create(model="challenger", messages=ASK, max_tokens=1).model == "v2"


def test_signals_write_every_thread_and_task_to_the_log_and_serving_goes_on(gateway):
    start = len(gateway.log.read_text())
    os.kill(gateway.proc.pid, signal.SIGUSR1)
    os.kill(gateway.proc.pid, signal.SIGUSR2)
    deadline = time.monotonic() + 30
    while "asyncio tasks (SIGUSR2)" not in (new := gateway.log.read_text()[start:]) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert "Thread 0x" in new and "(most recent call first)" in new  # faulthandler: every thread's stack
    assert "asyncio tasks (SIGUSR2)" in new and "in run" in new  # the pool's loop that follows the registry
    assert gateway.proc.poll() is None
    assert client(gateway).chat.completions.create(model="champion", messages=ASK, max_tokens=1,
                                                   extra_body={"ab": False}).model == "v1"


def test_promotion_hot_swaps_without_a_failed_request(gateway, served_home):
    results: list[tuple[str, str]] = []  # (version or "FAILED: ...", kind)
    stop = threading.Event()

    def steady(stream: bool):
        c = client(gateway)
        while not stop.is_set():
            try:
                if stream:
                    chunks = list(c.chat.completions.create(model="champion", messages=ASK, max_tokens=3,
                                                            stream=True, extra_body={"ab": False}))
                    results.append(({chunk.model for chunk in chunks}.pop(), "stream"))
                else:
                    results.append((c.chat.completions.create(model="champion", messages=ASK, max_tokens=3,
                                                              extra_body={"ab": False}).model, "plain"))
            except Exception as e:  # any failure counts
                results.append((f"FAILED: {e!r}", "stream" if stream else "plain"))

    # a stream opened on v1 before the move is read only after it: it must finish whole on v1
    slow = httpx.stream("POST", f"{gateway.url}/v1/chat/completions", timeout=300, headers=gateway.headers, json={
        "model": "champion", "messages": ASK, "max_tokens": 400, "stream": True, "ab": False})
    slow_response = slow.__enter__()
    slow_lines = slow_response.iter_lines()
    assert slow_response.headers["x-oncoloop-version"] == "v1"
    next(slow_lines)
    # daemon threads, stopped in `finally`: a failed wait below must not leave them looping (pytest would hang)
    workers = [threading.Thread(target=steady, args=(s,), daemon=True) for s in (False, True)]
    for w in workers:
        w.start()
    try:
        time.sleep(2)
        registry_at(served_home).set_alias("champion", "v3", "test", "gate passed")
        v1_pid = gateway.ready()["engines"]["v1"]["pid"]
        rest = [json.loads(line[6:]) for line in slow_lines if line.startswith("data: {")]
        slow.__exit__(None, None, None)
        assert rest and {c["model"] for c in rest} == {"v1"} and rest[-1]["choices"][0]["finish_reason"]
        gateway.wait(lambda s: s["routes"].get("champion") == "v3", 600, "the swap to v3")
        gateway.wait(lambda s: "v1" not in s["engines"], 60, "v1's engine to stop after draining")
        time.sleep(2)
    finally:
        stop.set()
        for w in workers:
            w.join(120)

    failures = [r for r in results if r[0].startswith("FAILED")]
    assert not failures, failures
    for kind in ("plain", "stream"):
        versions = [v for v, k in results if k == kind]
        assert versions[0] == "v1" and versions[-1] == "v3"
        switched = versions.index("v3")
        assert set(versions[switched:]) == {"v3"}  # one client: after the switch, never back
    with pytest.raises(ProcessLookupError):
        os.kill(v1_pid, 0)
    assert registry_at(served_home).history("champion")[-1].to_version == "v3"
