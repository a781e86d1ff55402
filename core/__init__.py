"""The ground floor: contracts every OncoLoop package shares.

Settings and ``$ONCOLOOP_HOME`` (``settings``), the error type and how commands report it (``errors``),
typed configs from YAML and ``key=value`` overrides (``config``), the prompt format (``prompt``), Alpaca,
safety and preference JSONL (``data``), the text normaliser (``text``), sentence embeddings (``embed``)
and child-process supervision (``process``).

Floors, lowest first: core < feedback < serve < eval < finetune < ui. A package imports only from
floors below it; this one imports none of them, and never torch or transformers at import time
(``lint-imports``, configured in ``pyproject.toml``, checks both).
"""
