"""A small HTTP/1.1 client for the gateway's requests to its engines: keep-alive, chunked bodies, raw bytes.

Why not httpx here: profiling 16 streaming clients through the gateway (benchmarks/gateway_profile.py)
showed ~85% of the relay's CPU per streamed chunk inside httpx/httpcore/h11/anyio, and on a small CPU
machine every cycle the gateway spends is taken from the engine beside it. Engines are local
OpenAI-compatible servers (``transformers serve``, ``vllm serve``, the adapter engine), so plain
asyncio streams with a few dozen lines of HTTP/1.1 suffice: one POST, a status line, headers, and a
body that is chunked, sized, or read until close.
"""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit


_timeout = getattr(asyncio, "timeout", None)  # Python 3.11+


class UpstreamError(Exception):
    """The engine could not be reached, hung up, or spoke broken HTTP."""


class UpstreamResponse:
    """One engine response: ``status``, ``headers`` (lower-case names), the body as it arrives."""

    def __init__(self, pool: "Upstream", key: tuple[str, int], reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter, status: int, headers: dict[str, str]):
        self._pool, self._key, self._reader, self._writer = pool, key, reader, writer
        self.status_code, self.headers = status, headers
        self._done = False
        self._chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        length = headers.get("content-length")
        self._left = int(length) if length is not None and not self._chunked else None
        self._reusable = headers.get("connection", "").lower() != "close" and (self._chunked or self._left is not None)

    async def _read(self, coro):
        try:
            if _timeout is None:  # Python 3.10
                return await asyncio.wait_for(coro, self._pool.timeout)
            async with _timeout(self._pool.timeout):  # cheaper than wait_for: no task per read
                return await coro
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, asyncio.TimeoutError,
                OSError) as e:
            self._reusable = False
            raise UpstreamError(f"the engine's response broke off ({type(e).__name__}: {e})") from None

    async def aiter_raw(self):
        """The body's bytes, piece by piece as the engine sends them (chunked encoding removed)."""
        reader = self._reader
        if self._chunked:
            while True:
                line = await self._read(reader.readline())
                try:
                    size = int(line.split(b";", 1)[0].strip(), 16)
                except ValueError:
                    self._reusable = False
                    raise UpstreamError(f"the engine sent a bad chunk header {line[:40]!r}") from None
                if size == 0:
                    while (await self._read(reader.readline())).strip():  # trailers, then the blank line
                        pass
                    break
                data = await self._read(reader.readexactly(size + 2))
                yield data[:-2]
        elif self._left is not None:
            while self._left > 0:
                data = await self._read(reader.read(min(self._left, 65536)))
                if not data:
                    self._reusable = False
                    raise UpstreamError("the engine closed the connection before the end of its answer")
                self._left -= len(data)
                yield data
        else:
            while data := await self._read(reader.read(65536)):
                yield data
        self._done = True

    async def aread(self) -> bytes:
        return b"".join([piece async for piece in self.aiter_raw()])

    async def aclose(self) -> None:
        """Give the connection back for reuse when the body was read to its end; close it otherwise."""
        if self._writer is None:
            return
        writer, self._writer = self._writer, None
        if self._done and self._reusable:
            self._pool._release(self._key, self._reader, writer)
        else:
            writer.close()


class Upstream:
    """Keep-alive connections to the engines, at most ``max_idle`` idle ones per engine."""

    def __init__(self, timeout: float, connect_timeout: float = 5.0, max_idle: int = 64):
        self.timeout, self.connect_timeout, self.max_idle = timeout, connect_timeout, max_idle
        self._idle: dict[tuple[str, int], list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]] = {}

    async def post(self, url: str, body: bytes, headers: dict[str, str] | None = None) -> UpstreamResponse:
        """POST ``body`` (JSON) to ``url`` with extra ``headers`` (the engine's key); returns once the status line
        and headers are in.

        Raises:
            UpstreamError: the engine cannot be reached or answers with broken HTTP.
        """
        parts = urlsplit(url)
        key = (parts.hostname or "127.0.0.1", parts.port or 80)
        head = (f"POST {parts.path or '/'} HTTP/1.1\r\nHost: {key[0]}:{key[1]}\r\nContent-Type: application/json\r\n"
                f"Accept: */*\r\nContent-Length: {len(body)}\r\n"
                + "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items()) + "\r\n").encode()
        for attempt in (0, 1):  # a kept-alive connection the engine closed as we sent: retry on a fresh one
            idle = self._take_idle(key) if attempt == 0 else None
            reused = idle is not None
            reader, writer = idle or await self._connect(key)
            try:
                writer.write(head + body)
                await writer.drain()
                status_line = await asyncio.wait_for(reader.readline(), self.timeout)
                if not status_line:
                    raise ConnectionResetError("connection closed before the status line")
                headers = await asyncio.wait_for(self._headers(reader), self.timeout)
            except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError) as e:
                writer.close()
                if reused and attempt == 0:
                    continue
                raise UpstreamError(f"the engine at {key[0]}:{key[1]} did not answer ({type(e).__name__}: {e})") \
                    from None
            except asyncio.TimeoutError:
                writer.close()
                raise UpstreamError(f"the engine at {key[0]}:{key[1]} did not answer within {self.timeout:.0f} s") \
                    from None
            try:
                status = int(status_line.split(b" ", 2)[1])
            except (IndexError, ValueError):
                writer.close()
                raise UpstreamError(f"the engine sent a bad status line {status_line[:60]!r}") from None
            return UpstreamResponse(self, key, reader, writer, status, headers)
        raise AssertionError("unreachable")

    def _take_idle(self, key: tuple[str, int]):
        """A kept-alive connection to ``key`` the engine has not closed, or None.

        Engines close idle connections after a few seconds (uvicorn: 5 s), so after a pause every
        pooled connection may be closed; those whose end has arrived are dropped here.
        """
        idle = self._idle.get(key) or []
        while idle:
            reader, writer = idle.pop()
            if not reader.at_eof() and not writer.is_closing():
                return reader, writer
            writer.close()
        return None

    async def _connect(self, key: tuple[str, int]):
        try:
            return await asyncio.wait_for(asyncio.open_connection(*key, limit=2**20), self.connect_timeout)
        except (OSError, asyncio.TimeoutError) as e:
            raise UpstreamError(f"cannot connect to the engine at {key[0]}:{key[1]} ({type(e).__name__}: {e})") \
                from None

    @staticmethod
    async def _headers(reader: asyncio.StreamReader) -> dict[str, str]:
        headers = {}
        while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        return headers

    def _release(self, key, reader, writer) -> None:
        idle = self._idle.setdefault(key, [])
        if len(idle) < self.max_idle and not reader.at_eof():
            idle.append((reader, writer))
        else:
            writer.close()

    async def aclose(self) -> None:
        for idle in self._idle.values():
            for _, writer in idle:
                writer.close()
        self._idle.clear()
