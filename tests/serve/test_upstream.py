"""The gateway's HTTP/1.1 client for engines, against real sockets (asyncio servers speaking raw HTTP)."""

from __future__ import annotations

import asyncio

import pytest

from core.process import free_port
from serve.upstream import Upstream, UpstreamError

CHUNKED = (b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
           b"6\r\ndata: \r\n" b"a;ext=1\r\n{\"a\": 1}\n\n\r\n" b"0\r\n\r\n")
SIZED = b"HTTP/1.1 404 Not Found\r\ncontent-length: 11\r\ncontent-type: application/json\r\n\r\n{\"e\": \"no\"}"


async def serve(replies: list[bytes], close_after: bool = False, keep_alive_s: float | None = None):
    """A server answering each request on a connection with the next reply; records (connection, request).

    ``keep_alive_s``: close a connection idle that long, as uvicorn does (5 s by default).
    """
    seen: list[tuple[int, bytes]] = []
    connections = [0]

    async def handle(reader, writer):
        connections[0] += 1
        conn = connections[0]
        while True:
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), keep_alive_s)
            except (asyncio.IncompleteReadError, asyncio.CancelledError, ConnectionError, asyncio.TimeoutError):
                break
            length = int(next(h.split(b":")[1] for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")))
            seen.append((conn, head + await reader.readexactly(length)))
            writer.write(replies[(len(seen) - 1) % len(replies)])
            await writer.drain()
            if close_after:
                break
        writer.close()

    port = free_port()
    server = await asyncio.start_server(handle, "127.0.0.1", port)
    return server, f"http://127.0.0.1:{port}/v1/chat/completions", seen


def test_chunked_and_sized_bodies_on_one_kept_alive_connection():
    async def go():
        server, url, seen = await serve([CHUNKED, SIZED])
        client = Upstream(timeout=10)
        r = await client.post(url, b'{"stream": true}')
        pieces = [p async for p in r.aiter_raw()]
        await r.aclose()
        r2 = await client.post(url, b"{}")
        body = await r2.aread()
        await r2.aclose()
        await client.aclose()
        server.close()
        return r, pieces, r2, body, seen

    r, pieces, r2, body, seen = asyncio.run(go())
    assert r.status_code == 200 and r.headers["content-type"] == "text/event-stream"
    assert pieces == [b"data: ", b'{"a": 1}\n\n']
    assert (r2.status_code, body) == (404, b'{"e": "no"}')
    assert [c for c, _ in seen] == [1, 1]  # the second request reused the connection
    assert seen[0][1].startswith(b"POST /v1/chat/completions HTTP/1.1\r\n") and seen[0][1].endswith(b'{"stream": true}')


def test_a_connection_the_engine_closed_is_replaced():
    async def go():
        server, url, seen = await serve([SIZED], close_after=True)
        client = Upstream(timeout=10)
        for _ in range(2):
            r = await client.post(url, b"{}")
            assert await r.aread() == b'{"e": "no"}'
            await r.aclose()
            await asyncio.sleep(0.05)
        server.close()
        return seen

    assert [c for c, _ in asyncio.run(go())] == [1, 2]


def test_after_a_pause_longer_than_the_engines_keep_alive_no_request_fails():
    """Many pooled connections, all closed by the engine while idle: the next requests open fresh ones."""
    async def go():
        server, url, seen = await serve([SIZED], keep_alive_s=0.2)
        client = Upstream(timeout=10)

        async def one():
            r = await client.post(url, b"{}")
            body = await r.aread()
            await r.aclose()
            return body

        first = await asyncio.gather(*(one() for _ in range(4)))
        await asyncio.sleep(0.5)  # the engine closes all four idle connections
        second = [await one() for _ in range(4)]  # one at a time: the first meets four closed connections
        await client.aclose()
        server.close()
        return first + second, seen

    bodies, seen = asyncio.run(go())
    assert bodies == [b'{"e": "no"}'] * 8
    assert len({c for c, _ in seen}) == 5  # four connections, then one fresh one, kept alive


def test_unreachable_engine_and_a_stream_cut_short_raise_upstream_error():
    async def go():
        with pytest.raises(UpstreamError, match="cannot connect"):
            await Upstream(timeout=5).post(f"http://127.0.0.1:{free_port()}/v1/chat/completions", b"{}")
        server, url, _ = await serve([CHUNKED[:-10]], close_after=True)  # dies mid-body
        r = await Upstream(timeout=5).post(url, b"{}")
        with pytest.raises(UpstreamError, match="broke off"):
            async for _ in r.aiter_raw():
                pass
        await r.aclose()
        server.close()

    asyncio.run(go())
