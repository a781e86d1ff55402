"""The engine for versions no stock server can load: a PEFT adapter (e.g. P-tuning) on its base model.

Started by the gateway like the other engines::

    python -m serve.adapter_engine --base <base dir> --adapter <version dir> --served-model-name <version> \
        --host 127.0.0.1 --port 8101

It loads the adapter onto the base in its own process and answers the OpenAI chat API (plain and
streaming) with the tokenizer's chat template, one generation at a time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import threading
import time
import uuid

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse


def load(base: str, adapter: str):
    """Tokenizer and the adapter-wrapped model (fp32, eval mode)."""
    from pathlib import Path

    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok_dir = adapter if (Path(adapter) / "tokenizer_config.json").is_file() else base
    tokenizer = AutoTokenizer.from_pretrained(tok_dir)
    model = AutoModelForCausalLM.from_pretrained(base, dtype="float32")
    return tokenizer, PeftModel.from_pretrained(model, adapter).eval()


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": "invalid_request_error", "param": None,
                                   "code": status}}, status_code=status)


class _AdapterEngine:
    """One model answering OpenAI chat requests, one generation at a time (the model is not re-entrant)."""

    def __init__(self, tokenizer, model, served_name: str):
        self.tokenizer, self.model, self.served_name = tokenizer, model, served_name
        self.lock = threading.Lock()

    def generate_kwargs(self, body: dict) -> dict:
        tokenizer = self.tokenizer
        text = tokenizer.apply_chat_template(body["messages"], tokenize=False, add_generation_prompt=True)
        enc = tokenizer(text, return_tensors="pt", add_special_tokens=False)
        temperature = float(body.get("temperature") or 0.0)
        kwargs = dict(**enc, max_new_tokens=int(body.get("max_tokens") or 256), pad_token_id=tokenizer.pad_token_id,
                      eos_token_id=tokenizer.eos_token_id, do_sample=temperature > 0)
        if temperature > 0:
            kwargs |= {"temperature": temperature, "top_p": float(body.get("top_p") or 1.0)}
        return kwargs

    async def chat(self, request: Request):
        body = await request.json()
        if body.get("model") != self.served_name:
            return _error(404, f"this engine serves {self.served_name}, not {body.get('model')!r}.")
        if not body.get("messages"):
            return _error(400, "messages must not be empty.")
        kwargs = self.generate_kwargs(body)
        rid, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
        if body.get("stream"):
            return StreamingResponse(self.events(kwargs, rid, created), media_type="text/event-stream")
        return await self.whole(kwargs, rid, created)

    async def whole(self, kwargs: dict, rid: str, created: int) -> dict:
        import torch

        prompt_tokens = kwargs["input_ids"].shape[1]

        def run():
            with self.lock, torch.no_grad():
                return self.model.generate(**kwargs)[0, prompt_tokens:]

        out = await asyncio.to_thread(run)
        text = self.tokenizer.decode(out, skip_special_tokens=True)
        finish = "length" if len(out) >= kwargs["max_new_tokens"] else "stop"
        return {"id": rid, "object": "chat.completion", "created": created, "model": self.served_name,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}],
                "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": len(out),
                          "total_tokens": prompt_tokens + len(out)}}

    async def events(self, kwargs: dict, rid: str, created: int):
        """Server-sent chunks of the answer as the model writes it (a generation thread feeds a streamer)."""
        import torch
        from transformers import TextIteratorStreamer

        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True, timeout=600)

        def run_stream():
            with self.lock, torch.no_grad():
                self.model.generate(**kwargs, streamer=streamer)

        def chunk(delta: dict, finish: str | None = None) -> str:
            return "data: " + json.dumps({"id": rid, "object": "chat.completion.chunk", "created": created,
                                          "model": self.served_name, "choices": [{"index": 0, "delta": delta,
                                                                                  "finish_reason": finish}]}) + "\n\n"

        threading.Thread(target=run_stream, daemon=True).start()
        yield chunk({"role": "assistant"})
        pieces = iter(streamer)
        while True:
            piece = await asyncio.to_thread(next, pieces, None)
            if piece is None:
                break
            if piece:
                yield chunk({"content": piece})
        yield chunk({}, "stop")
        yield "data: [DONE]\n\n"


def create_app(tokenizer, model, served_name: str, secret: str = ""):
    """The engine's app; with ``secret`` (the gateway's per-start key), ``/v1`` refuses requests without it."""
    import hmac

    from fastapi import Depends

    def authorized(request: Request) -> None:
        from fastapi import HTTPException

        sent = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        if secret and not hmac.compare_digest(sent.encode(), secret.encode()):
            raise HTTPException(401, "this engine answers only its gateway")

    engine = _AdapterEngine(tokenizer, model, served_name)
    app = FastAPI(title=f"OncoLoop adapter engine ({served_name})", dependencies=[Depends(authorized)],
                  docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/health")
    async def health():
        return {"status": "ok"}

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [{"id": served_name, "object": "model", "owned_by": "oncoloop"}]}

    app.add_api_route("/v1/chat/completions", engine.chat, methods=["POST"])
    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m serve.adapter_engine", description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True)
    parser.add_argument("--adapter", required=True)
    parser.add_argument("--served-model-name", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8101)
    args = parser.parse_args(argv)
    import uvicorn

    tokenizer, model = load(args.base, args.adapter)
    secret = os.environ.pop("ONCOLOOP_ENGINE_KEY", "")  # serve.engines.ENGINE_KEY_ENV (this module stays import-light)
    uvicorn.run(create_app(tokenizer, model, args.served_model_name, secret), host=args.host, port=args.port,
                log_level="warning")
    return 0


if __name__ == "__main__":
    sys.exit(main())
