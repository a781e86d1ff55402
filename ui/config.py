"""The chat UI's configuration: one typed dataclass, loaded like every other OncoLoop config.

``python -m ui --config my.yaml key=value ...`` reads it with ``core.config.load_config``;
``configs/ui/default.yaml`` is the shipped example.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class UIConfig:
    """Where the UI listens, which gateway it talks to, and how it talks to it."""

    host: str = "127.0.0.1"
    port: int = 7860
    gateway_url: str = "http://127.0.0.1:8000"  # the OpenAI-compatible gateway (`python -m serve`); /v1 is added
    model: str = "champion"  # what the UI asks for; champion takes part in the gateway's A/B split
    max_tokens: int = 256  # answer length cap sent to the gateway
    temperature: float = 0.0
    history_turns: int = 3  # earlier answered turns sent with each question (multi-turn context)
    request_timeout_s: float = 300.0  # one whole streamed answer at most
    max_retries: int = 1  # openai client retries on connection errors and 5xx before the page shows an error
    embedder: str = "auto"  # reviewed-answers panel: auto | minilm | lexical (see feedback/dedup.py)
    reviewed_k: int = 3  # approved answers shown beside each question
    reviewed_min_similarity: float = 0.3  # below this cosine an approved answer is not "similar"
    reviewed_refresh_s: float = 10.0  # how often other replicas' approvals are picked up
    ab_status_ttl_s: float = 5.0  # how long the gateway's routes (is an A/B test running?) are cached
    session_hours: float = 12.0  # a login lasts this long; then the page asks to log in again
    concurrency: int = 64  # Gradio events running at once (50 clinicians chatting is the tested load)
    queue_size: int = 512  # Gradio events waiting beyond that before new ones are refused
