"""The UI's only way to a model: the gateway's OpenAI API, through the ``openai`` client.

Every request names a stable conversation key, so the gateway's A/B split keeps a chat on one
version; every answer comes back with the version that gave it and what the clinical guard did
(``oncoloop.version`` / ``oncoloop.alias`` / ``oncoloop.guard`` in each stream chunk).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx

from core.errors import OncoLoopError
from feedback.keys import client_key
from ui.config import UIConfig


class ContextTooLong(OncoLoopError):
    """The chat no longer fits the model's context (the UI retries with fewer earlier turns)."""


@dataclass
class Streamed:
    """An answer as it streams: text so far, and the gateway's record of who answered."""

    text: str = ""
    version: str | None = None
    alias: str | None = None
    guard: list[str] = field(default_factory=list)
    context: list[int] = field(default_factory=list)  # review ids of the approved answers given as context
    finished: bool = False


def chunk_meta(chunk) -> dict:
    """The ``oncoloop`` object of a stream chunk (an extra field the openai client keeps), or {}."""
    extra = getattr(chunk, "model_extra", None) or {}
    meta = extra.get("oncoloop")
    return meta if isinstance(meta, dict) else {}


class GatewayClient:
    """Streams chat answers from the gateway and tells whether an A/B test runs there."""

    def __init__(self, cfg: UIConfig, api_key: str | None = None):
        """Args:
            api_key: the gateway key (default: ``$ONCOLOOP_API_KEY``, else the UI's own local key, scope ``chat``).
        """
        from openai import OpenAI

        self.cfg = cfg
        self.base = cfg.gateway_url.rstrip("/").removesuffix("/v1")
        self.api_key = api_key or client_key("ui", ("chat",))
        self.client = OpenAI(base_url=f"{self.base}/v1", api_key=self.api_key, timeout=cfg.request_timeout_s,
                             max_retries=cfg.max_retries)
        self._status: tuple[float, tuple] = (-1e9, (None, None))
        self._lock = threading.Lock()

    def stream(self, messages: list[dict], conversation_key: str) -> Iterator[Streamed]:
        """Yield the growing answer after each chunk; the last one has ``finished`` set.

        Raises:
            OncoLoopError: the gateway is down, refused the request, or the stream broke.
        """
        import openai

        out = Streamed()
        try:
            stream = self.client.chat.completions.create(
                model=self.cfg.model, messages=messages, stream=True, max_tokens=self.cfg.max_tokens,
                temperature=self.cfg.temperature, extra_body={"conversation_id": conversation_key},
                extra_headers={"X-OncoLoop-Conversation": conversation_key})
            for chunk in stream:
                meta = chunk_meta(chunk)
                out.version = meta.get("version", out.version)
                out.alias = meta.get("alias", out.alias)
                if isinstance(meta.get("guard"), list):
                    out.guard = [str(a) for a in meta["guard"]]
                if isinstance(meta.get("context"), list):
                    out.context = [int(c["review"]) for c in meta["context"] if isinstance(c, dict) and "review" in c]
                if chunk.choices:
                    out.text += chunk.choices[0].delta.content or ""
                    out.finished = out.finished or chunk.choices[0].finish_reason is not None
                yield out
        except openai.APITimeoutError:
            raise OncoLoopError(f"the assistant took longer than {self.cfg.request_timeout_s:.0f} s to answer; "
                                "your question is saved. Ask again, or ask a shorter question.") from None
        except openai.APIConnectionError:
            raise OncoLoopError(f"the assistant cannot be reached (gateway {self.base} is down or restarting); "
                                "your question is saved. Try again in a moment or tell your admin.") from None
        except openai.APIStatusError as e:
            if "context_length_exceeded" in str(e.body):
                raise ContextTooLong(f"the chat is too long for the model ({_error_message(e)}); "
                                     "start a new conversation.") from None
            raise OncoLoopError(f"the assistant refused the question ({e.status_code}: {_error_message(e)}); "
                                "your question is saved." + (" Try again in a few seconds."
                                                             if e.status_code >= 500 else "")) from None
        except openai.APIError as e:  # an error event in the middle of the stream
            raise OncoLoopError(f"the answer broke off ({e.message}); your question is saved. Ask again.") from None
        except httpx.HTTPError as e:  # the connection dropped mid-stream (the client does not wrap these)
            raise OncoLoopError(f"the answer broke off (connection to the gateway lost: {type(e).__name__}); "
                                "your question is saved. Ask again.") from None
        out.finished = True
        yield out

    def status(self) -> tuple[dict[str, str] | None, float | None]:
        """The gateway's routes and, if its ``/ready`` reports it, its challenger share (cached a few seconds)."""
        with self._lock:
            at, status = self._status
            if time.monotonic() - at < self.cfg.ab_status_ttl_s:
                return status
        try:
            state = httpx.get(f"{self.base}/ready", timeout=3.0,
                              headers={"Authorization": f"Bearer {self.api_key}"}).json()
            share = state.get("challenger_share")
            status = (dict(state.get("routes") or {}), float(share) if share is not None else None)
        except (httpx.HTTPError, ValueError, AttributeError, TypeError):
            status = (None, None)
        with self._lock:
            self._status = (time.monotonic(), status)
        return status


def _error_message(e) -> str:
    body = e.body if isinstance(getattr(e, "body", None), dict) else {}
    error = body.get("error", body) if isinstance(body, dict) else {}
    return (error.get("message") if isinstance(error, dict) else None) or e.message
