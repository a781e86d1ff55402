"""The gateway's configuration: one typed dataclass, loaded like every other OncoLoop config.

``python -m serve --config my.yaml key=value ...`` reads it with ``core.config.load_config``;
``configs/serve/cpu.yaml`` is the shipped example.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

VLLM_VENV_ENV = "ONCOLOOP_VLLM_VENV"
DEFAULT_VLLM_VENV = "~/.cache/oncoloop/vllm-cpu-venv"


@dataclass
class ServeConfig:
    """How the gateway listens, which engine serves the versions, and how it routes."""

    host: str = "127.0.0.1"
    port: int = 8000
    engine: str = "auto"  # auto | vllm | transformers (auto: CUDA GPU and vllm importable -> vllm)
    engine_host: str = "127.0.0.1"  # engines listen here, on free ports chosen at start
    challenger_share: float = 0.1  # share of conversations the challenger answers (A/B); 0 turns A/B off
    # version ids served in addition to the aliases, addressable by id in `model` and never retired while
    # listed: `versions=[v7] challenger_share=0` is the evaluation gate's private gateway (champion + candidate)
    versions: list[str] = field(default_factory=list)
    poll_interval_s: float = 2.0  # how often the registry is read for alias moves
    engine_start_timeout_s: float = 300.0  # a new engine must answer within this, or the swap is abandoned
    drain_timeout_s: float = 600.0  # in-flight streams on a replaced engine get this long to finish
    request_timeout_s: float = 600.0  # one engine request (a whole stream) at most
    restart_backoff_s: float = 2.0  # wait before restarting an engine that died
    vllm_venv: str = ""  # the vllm-cpu virtual environment; empty: $ONCOLOOP_VLLM_VENV or the default
    vllm_dtype: str = "auto"  # vllm casts fp32 checkpoints to bf16 unless "float32"
    vllm_kvcache_gib: int = 1  # VLLM_CPU_KVCACHE_SPACE on CPU
    vllm_max_model_len: int = 0  # 0: the checkpoint's max_position_embeddings
    vllm_enforce_eager: bool = False  # skip torch.compile: starts ~1.5 min sooner on CPU, decodes slower
    transformers_continuous_batching: bool = False  # costs ~7.6 GiB RAM even for a tiny model
    keep_alive_s: float = 75.0  # idle client connections stay open this long (uvicorn's 5 s races busy clients)
    log_dir: str = ""  # engine logs; empty: $ONCOLOOP_HOME/runs/serve
    # approved answers given to the model as context (serve/retrieval.py): on by default
    retrieval: bool = True
    retrieval_k: int = 2  # at most this many approved answers per question
    # MiniLM cosine of the questions; below it nothing is added. 0.5: 23 of 24 reworded questions of
    # benchmarks/data/closed_loop_corrections.jsonl find their correction; other questions reach 0.52 at most
    retrieval_min_similarity: float = 0.5
    retrieval_refresh_s: float = 10.0  # how often the store is checked for new approvals
    # what one request may hold (serve/protocol.py); over a limit: 413 for the body, 400 for the rest
    max_body_bytes: int = 1_048_576  # 1 MiB of JSON
    max_messages: int = 64  # messages in one chat
    max_message_chars: int = 32_000  # characters in one message (about 8k tokens)
    max_answer_tokens: int = 4096  # the largest max_tokens / max_completion_tokens a client may ask for
    max_n: int = 4  # answers per request
    # bodies this large (bytes) are parsed and guarded in a worker process, so that scrubbing them (spaCy: about a
    # minute per megabyte) takes no CPU, GIL or scrubber lock from other requests; 0: always in a thread
    guard_process_min_bytes: int = 65_536
    key_cache_s: float = 2.0  # a checked gateway key is trusted this long; a revocation takes effect within it

    def limits(self):
        """The request limits (:class:`serve.protocol.RequestLimits`)."""
        from serve.protocol import RequestLimits

        return RequestLimits(self.max_body_bytes, self.max_messages, self.max_message_chars, self.max_answer_tokens,
                             self.max_n)

    def retriever(self):
        """The gateway's retrieval step, or None when ``retrieval`` is off."""
        if not self.retrieval:
            return None
        from serve.retrieval import Retriever

        return Retriever(self.retrieval_k, self.retrieval_min_similarity, self.retrieval_refresh_s)

    def vllm_venv_path(self) -> Path:
        """The vllm-cpu venv: the config field, else ``$ONCOLOOP_VLLM_VENV``, else the default."""
        return Path(self.vllm_venv or os.environ.get(VLLM_VENV_ENV) or DEFAULT_VLLM_VENV).expanduser()
