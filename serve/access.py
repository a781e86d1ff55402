"""Who may call the gateway: ``Authorization: Bearer <key>`` on every route but ``/health``, checked against the
store's keys (:mod:`feedback.keys`), and the scopes that guard ``/ready``'s details and the guard's audit mode.

A checked key is trusted for ``key_cache_s`` (2 s): the lookup runs in a worker thread, and a burst of requests
with one key costs one lookup. A revoked key stops working within that time.
"""

from __future__ import annotations

import asyncio
import time

from fastapi import Request

from feedback.keys import ApiKey, KeyStore
from serve.routing import RequestError

AUDIT_SCOPES = ("eval", "admin")  # the guard's audit mode and /ready?details=true


class GatewayAuth:
    """A FastAPI dependency: the request's :class:`ApiKey`, or a 401."""

    def __init__(self, keys: KeyStore, cache_s: float = 2.0):
        self.keys, self.cache_s = keys, cache_s
        self._cache: dict[str, tuple[float, ApiKey | None]] = {}

    def _lookup(self, secret: str) -> ApiKey | None:
        now = time.monotonic()
        hit = self._cache.get(secret)
        if hit is not None and now - hit[0] < self.cache_s:
            return hit[1]
        key = self.keys.verify(secret)
        if len(self._cache) > 10_000:  # wrong keys must not grow it without bound
            self._cache.clear()
        self._cache[secret] = (now, key)
        return key

    async def __call__(self, request: Request) -> ApiKey:
        scheme, _, secret = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not secret.strip():
            raise RequestError(401, "this gateway needs a key: send `Authorization: Bearer <key>`. An admin creates "
                               "one with `python -m feedback.keys create --name NAME --scopes chat`.", "missing_key",
                               headers={"WWW-Authenticate": "Bearer"})
        key = await asyncio.to_thread(self._lookup, secret.strip())
        if key is None:
            raise RequestError(401, "the key is not valid (unknown or revoked); ask an admin for a new one "
                               "(`python -m feedback.keys list`).", "invalid_key",
                               headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
        return key


def require(key: ApiKey, scopes: tuple[str, ...], what: str) -> None:
    """Refuse (403) a key that has none of ``scopes``."""
    if not key.allows(*scopes):
        raise RequestError(403, f"{what} needs a key with the {' or '.join(scopes)} scope; key {key.name!r} has "
                           f"{', '.join(key.scopes)}. An admin creates one with `python -m feedback.keys create "
                           f"--name NAME --scopes {scopes[0]}`.", "insufficient_scope")
