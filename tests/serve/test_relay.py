"""The gateway's hold on an engine (``inflight``) is given back exactly once, however a relayed stream ends.

A swap drains the old engine until its in-flight count is zero; a hold that is never given back makes every
later swap wait out the drain timeout, and one given back twice lets a swap stop an engine mid-answer.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from serve.gateway import _EngineStream, _Lease, _relay
from serve.upstream import UpstreamError

HTTP = {"type": "http", "asgi": {"spec_version": "2.3"}}  # uvicorn's: the disconnect listener runs beside the body


class FakeUpstream:
    def __init__(self, chunks: list[bytes], fail: bool = False):
        self.chunks, self.fail, self.closed, self.started = chunks, fail, 0, False

    async def aiter_raw(self):
        self.started = True
        for chunk in self.chunks:
            yield chunk
        if self.fail:
            raise UpstreamError("the engine closed the connection before the end of its answer")

    async def aclose(self):
        self.closed += 1


def _stream(upstream: FakeUpstream):
    engine = SimpleNamespace(inflight=0, spec=SimpleNamespace(version="v1"))
    lease = _Lease(engine)
    lease.upstream = upstream
    response = _EngineStream(_relay(lease, lambda line: line + b"\n\n"), lease,
                             media_type="text/event-stream")
    return engine, response


def _play(response, receive, send) -> None:
    asyncio.run(asyncio.wait_for(response(HTTP, receive, send), 10))


def test_a_client_that_hangs_up_before_the_first_byte_gives_the_engine_back():
    upstream = FakeUpstream([b'data: {"choices": []}\n\n'])
    engine, response = _stream(upstream)
    assert engine.inflight == 1

    async def gone():
        return {"type": "http.disconnect"}

    async def never_delivered(message):  # the client left: the response's first message never gets through
        await asyncio.sleep(30)

    _play(response, gone, never_delivered)
    # Starlette never started the body generator, so only the response's own `finally` could give it back
    assert not upstream.started
    assert engine.inflight == 0 and upstream.closed == 1


def _listening():
    sent: list[dict] = []

    async def receive():
        await asyncio.sleep(30)  # the client stays connected
        return {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    return sent, receive, send


def test_a_stream_read_to_its_end_gives_the_engine_back_once():
    upstream = FakeUpstream([b'data: {"a": 1}\n\ndata: [DONE]\n\n'])
    engine, response = _stream(upstream)
    sent, receive, send = _listening()
    _play(response, receive, send)
    body = b"".join(m.get("body", b"") for m in sent)
    assert b'data: {"a": 1}' in body and b"data: [DONE]" in body
    assert engine.inflight == 0 and upstream.closed == 1  # the generator's finally and the response's: one release


def test_an_engine_that_breaks_mid_stream_gives_the_engine_back_once():
    upstream = FakeUpstream([b'data: {"a": 1}\n\n'], fail=True)
    engine, response = _stream(upstream)
    sent, receive, send = _listening()
    _play(response, receive, send)
    body = b"".join(m.get("body", b"") for m in sent)
    assert b"engine_failed" in body
    assert engine.inflight == 0 and upstream.closed == 1
