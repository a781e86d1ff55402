"""The gateway's request models (pydantic) and limits: what a chat request may hold, and what reaches an engine.

Fields the models do not name are dropped, never forwarded (``tools``, ``response_format``, anything an engine
might act on unchecked). Message content may be a string or OpenAI content parts; text parts are joined, other
parts (images, audio, files) are refused. Each violation is a :class:`serve.routing.RequestError` (400, or 413
for the body size) whose message says what to change.

>>> limits = RequestLimits()
>>> body = parse_chat(b'{"model": "champion", "tools": [], "messages": [{"role": "user", '
...                   b'"content": [{"type": "text", "text": "Hi"}]}]}', limits)
>>> body
{'model': 'champion', 'messages': [{'role': 'user', 'content': 'Hi'}]}
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from serve.routing import RequestError

ROLES = ("system", "user", "assistant", "tool")


@dataclass(frozen=True)
class RequestLimits:
    """What one request may hold (``ServeConfig``'s ``max_*`` fields; ``configs/serve/cpu.yaml``)."""

    max_body_bytes: int = 1_048_576
    max_messages: int = 64
    max_message_chars: int = 32_000
    max_answer_tokens: int = 4096
    max_n: int = 4


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: str
    text: str | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "user", "assistant", "tool"]
    content: str | list[ContentPart]


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")
    include_usage: bool | None = None


class ChatRequest(BaseModel):
    """An OpenAI chat completion request, as far as the gateway forwards it, plus the gateway's own fields."""

    model_config = ConfigDict(extra="ignore")
    model: str = Field(min_length=1, max_length=200)
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    n: int | None = Field(default=None, ge=1)
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    stop: str | list[str] | None = None
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    seed: int | None = None
    user: str | None = Field(default=None, max_length=256)
    ignore_eos: bool | None = None  # vLLM's; benchmarks ask for fixed-length answers with it
    # refused when set: per-token text and alternatives cannot be redacted
    logprobs: bool | None = None
    top_logprobs: int | None = None
    # the gateway's own (serve.routing.GATEWAY_FIELDS): read here, never forwarded
    conversation_id: str | None = Field(default=None, max_length=256)
    ab: bool | None = None
    retrieval: bool | None = None


def _flatten(i: int, content: str | list[ContentPart]) -> str:
    if isinstance(content, str):
        return content
    texts = []
    for j, part in enumerate(content):
        if part.type != "text" or part.text is None:
            raise RequestError(400, f"messages[{i}].content[{j}] is a {part.type!r} part; the gateway takes text "
                               "only. Send text parts ({\"type\": \"text\", \"text\": ...}) or a string.",
                               "unsupported_content", f"messages[{i}].content[{j}]")
        texts.append(part.text)
    return "\n".join(texts)


def _validation_error(e: ValidationError) -> RequestError:
    first = e.errors(include_url=False)[0]
    where = ".".join(f"[{p}]" if isinstance(p, int) else str(p) for p in first["loc"]).replace(".[", "[")
    kinds = {"missing": "is required", "extra_forbidden": "is not allowed"}
    problem = kinds.get(first["type"], first["msg"].rstrip(".").lower())
    hint = (" `model` is champion, challenger or a version id; `messages` a list of {role, content}."
            if where.split("[")[0] in ("model", "messages", "") else "")
    return RequestError(400, f"`{where or 'body'}` {problem}; fix it and send the request again.{hint}",
                        "invalid_request", where or None)


def parse_chat(raw: bytes, limits: RequestLimits) -> dict[str, Any]:
    """A chat request body checked against the models and ``limits``, as a plain dict with string contents.

    Unknown fields are gone; fields left unset are absent (the engine's defaults apply).

    Raises:
        RequestError: not JSON, not a chat request, or over a limit.
    """
    if len(raw) > limits.max_body_bytes:
        raise too_large(len(raw), limits)
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RequestError(400, f"the request body is not valid JSON ({e}).", "invalid_json") from None
    if not isinstance(data, dict):
        raise RequestError(400, "the request body must be a JSON object.", "invalid_body")
    messages = data.get("messages")
    if isinstance(messages, list) and len(messages) > limits.max_messages:
        raise RequestError(400, f"the chat has {len(messages)} messages; this gateway takes at most "
                           f"{limits.max_messages} (max_messages). Send fewer earlier turns.", "too_many_messages",
                           "messages")
    try:
        req = ChatRequest.model_validate(data)
    except ValidationError as e:
        raise _validation_error(e) from None
    if req.logprobs or req.top_logprobs:
        raise RequestError(400, "logprobs are not available through the gateway: per-token text would bypass "
                           "the redaction of identifiers. Leave logprobs and top_logprobs out.",
                           "logprobs_unsupported", "logprobs")
    body = req.model_dump(exclude_none=True, exclude={"messages", "logprobs", "top_logprobs"})
    body["messages"] = []
    for i, m in enumerate(req.messages):
        content = _flatten(i, m.content)
        if len(content) > limits.max_message_chars:
            raise RequestError(400, f"messages[{i}] has {len(content):,} characters; this gateway takes at most "
                               f"{limits.max_message_chars:,} per message (max_message_chars). Shorten it or send "
                               "the part that matters.", "message_too_long", f"messages[{i}]")
        body["messages"].append({"role": m.role, "content": content})
    if not any(m["role"] == "user" and m["content"].strip() for m in body["messages"]):
        raise RequestError(400, "the chat has no user message with text; ask a question.", "empty_messages",
                           "messages")
    for name in ("max_tokens", "max_completion_tokens"):
        if body.get(name, 0) > limits.max_answer_tokens:
            raise RequestError(400, f"{name} {body[name]} is above this gateway's limit of {limits.max_answer_tokens}"
                               " (max_answer_tokens); ask for fewer tokens.", "max_tokens_too_large", name)
    if body.get("n", 1) > limits.max_n:
        raise RequestError(400, f"n {body['n']} is above this gateway's limit of {limits.max_n} (max_n); ask for "
                           "fewer answers per request.", "n_too_large", "n")
    return body


def too_large(size: int, limits: RequestLimits) -> RequestError:
    """The 413 for a body of ``size`` bytes."""
    return RequestError(413, f"the request body is {size:,} bytes; this gateway takes at most "
                        f"{limits.max_body_bytes:,} (max_body_bytes). Shorten the chat.", "body_too_large")
