"""Pure routing rules of the gateway: conversation keys, the A/B arm, request checks, OpenAI errors."""

from __future__ import annotations

import hashlib

CONVERSATION_HEADER = "x-oncoloop-conversation"
AB_HEADER = "x-oncoloop-ab"  # "off": the request is pinned to the model it names (evaluation)
VERSION_HEADER = "X-OncoLoop-Version"
ALIAS_HEADER = "X-OncoLoop-Alias"
GATEWAY_FIELDS = ("conversation_id", "ab", "retrieval")  # body fields the gateway reads and does not forward


class RequestError(Exception):
    """A request the gateway answers with an OpenAI-format error instead of forwarding it."""

    def __init__(self, status: int, message: str, code: str, param: str | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.param = status, message, code, param
        self.headers = headers


def error_body(message: str, code: str, status: int, param: str | None = None) -> dict:
    """The OpenAI error object.

    >>> error_body("no such model", "model_not_found", 404)["error"]["type"]
    'invalid_request_error'
    """
    kind = "invalid_request_error" if status < 500 else "service_unavailable" if status == 503 else "server_error"
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def conversation_key(body: dict, headers: dict[str, str]) -> str:
    """What keeps a conversation on one version: an explicit id, else the ``user``, else the first user message.

    The first user message stays the same for every turn of a chat, so a client that sends no id
    still gets the same version throughout.

    >>> conversation_key({"conversation_id": "c1", "messages": []}, {})
    'id:c1'
    >>> conversation_key({"messages": [{"role": "user", "content": "Hi"}]}, {})
    'first:Hi'
    """
    explicit = headers.get(CONVERSATION_HEADER) or body.get("conversation_id")
    if explicit:
        return f"id:{explicit}"
    if body.get("user"):
        return f"user:{body['user']}"
    first = next((m.get("content") for m in body.get("messages", []) if m.get("role") == "user"), "")
    return f"first:{first}"


def ab_arm(key: str, share: float) -> str:
    """``challenger`` for a stable ``share`` of conversation keys, ``champion`` for the rest.

    >>> ab_arm("id:c1", 0.0), ab_arm("id:c1", 1.0)
    ('champion', 'challenger')
    >>> sum(ab_arm(f"id:{i}", 0.3) == "challenger" for i in range(1000))
    321
    """
    bucket = int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big") / 2**64
    return "challenger" if bucket < share else "champion"


def ab_enabled(body: dict, headers: dict[str, str]) -> bool:
    """Whether this request takes part in the A/B split (``ab: false`` or ``X-OncoLoop-AB: off`` pins it).

    >>> ab_enabled({}, {}), ab_enabled({"ab": False}, {}), ab_enabled({}, {"x-oncoloop-ab": "off"})
    (True, False, False)
    """
    if str(headers.get(AB_HEADER, "")).lower() in ("off", "0", "false", "no"):
        return False
    return body.get("ab", True) is not False


def check_context(prompt_tokens: int, max_tokens: int | None, context: int) -> None:
    """Refuse a prompt (plus the requested answer) longer than the model's context.

    >>> check_context(10, 5, 16)
    >>> check_context(10, 10, 16)
    Traceback (most recent call last):
    ...
    serve.routing.RequestError: this model's context is 16 tokens; the prompt has 10 and 10 more were requested. Shorten the chat or lower max_tokens.
    """
    if prompt_tokens + (max_tokens or 1) > context:
        more = f" and {max_tokens} more were requested" if max_tokens else ""
        raise RequestError(400, f"this model's context is {context} tokens; the prompt has {prompt_tokens}"
                           f"{more}. Shorten the chat or lower max_tokens.", "context_length_exceeded",
                           "messages")
