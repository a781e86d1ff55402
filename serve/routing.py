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

    def __init__(self, status: int, message: str, code: str, param: str | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.param = status, message, code, param


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


def check_chat(body) -> list[dict]:
    """The request's messages, checked; raises :class:`RequestError` for what an engine would choke on.

    >>> check_chat({"model": "champion", "messages": [{"role": "user", "content": "Hi"}]})
    [{'role': 'user', 'content': 'Hi'}]
    """
    if not isinstance(body, dict):
        raise RequestError(400, "the request body must be a JSON object.", "invalid_body")
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise RequestError(400, "`model` is required: champion, challenger or a version id.", "missing_model",
                           "model")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise RequestError(400, "`messages` must be a non-empty list of {role, content} objects.",
                           "empty_messages", "messages")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ("system", "user", "assistant") \
                or not isinstance(m.get("content"), str):
            raise RequestError(400, f"messages[{i}] must be an object with role system, user or assistant "
                               "and string content.", "invalid_message", f"messages[{i}]")
    if not any(m["role"] == "user" and m["content"].strip() for m in messages):
        raise RequestError(400, "the chat has no user message with text; ask a question.", "empty_messages",
                           "messages")
    max_tokens = body.get("max_tokens", body.get("max_completion_tokens"))
    if max_tokens is not None and (not isinstance(max_tokens, int) or isinstance(max_tokens, bool)
                                   or max_tokens < 1):
        raise RequestError(400, "`max_tokens` must be a positive integer.", "invalid_max_tokens", "max_tokens")
    return messages


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
