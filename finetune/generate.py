"""Synthetic Alpaca data from any OpenAI-compatible endpoint ("ChatGPT data generation").

Usage::

    export OPENAI_API_KEY=...   # local servers (transformers serve, vllm serve) accept the default "EMPTY"
    python -m finetune.generate --base-url http://127.0.0.1:8000/v1 --model my-model \\
        --out var/datasets/generated.jsonl --n 200 --topics toxicities emergencies

Self-instruct, seeded by topic: each request shows a few seed records of one topic
(``data/oncology_seed.jsonl``) and asks for one new record as a JSON object. The
answer must parse and validate as Alpaca (instruction, input, output); transport
errors and invalid answers are retried with exponential backoff. Records whose
question nearly repeats a seed question or an earlier generated one are dropped, by
the rules the feedback export decontaminates with (``feedback.dedup``: MiniLM
embeddings + faiss; hashed character n-grams when MiniLM is unavailable). Each kept
record gets ``meta.source = "generated:<model>"``. Generated data is unreviewed:
a clinician should review it before it trains a model that is served.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import random
import re
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from core.data import TOPICS, load_jsonl, record_problems, write_jsonl
from core.errors import OncoLoopError, cli_command
from feedback.dedup import THRESHOLDS, DuplicateIndex, choose_embedder

REPO = Path(__file__).resolve().parent.parent
SEED = REPO / "data" / "oncology_seed.jsonl"
SYSTEM = ("You write training data for an oncology decision-support assistant used by clinicians. "
          "Reply with exactly one JSON object and nothing else.")
MIN_INSTRUCTION, MIN_OUTPUT = 10, 20  # characters: shorter answers are fragments, not records


class InvalidAnswer(ValueError):
    """The model answered, but not with a usable Alpaca record; ``reason`` says why."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass
class GenerationStats:
    """What happened, for the summary line and for tests."""

    requests: int = 0  # records asked for (each may take several attempts)
    attempts: int = 0  # HTTP calls
    transport_errors: int = 0
    invalid: int = 0
    invalid_reasons: Counter = field(default_factory=Counter)
    duplicates_of_seed: int = 0
    duplicates_of_generated: int = 0
    kept: int = 0
    waits: list[float] = field(default_factory=list)  # backoff delays, seconds
    last_invalid: str = ""

    def summary(self) -> str:
        reasons = ", ".join(f"{n} {r}" for r, n in self.invalid_reasons.most_common())
        return (f"{self.kept} kept from {self.requests} requests ({self.attempts} calls): {self.transport_errors} "
                f"transport errors, {self.invalid} invalid answers{f' ({reasons})' if reasons else ''}, "
                f"{self.duplicates_of_seed} near-duplicates of the seed, {self.duplicates_of_generated} of each other")


def build_messages(topic: str, examples: list[dict]) -> list[dict]:
    """The chat asking for one new record on ``topic``, with seed records as few-shot examples.

    >>> m = build_messages("staging", [{"instruction": "Define T2.", "input": "", "output": "A tumour ..."}])
    >>> [x["role"] for x in m], '"instruction": "Define T2."' in m[1]["content"], 'topic "staging"' in m[1]["content"]
    (['system', 'user'], True, True)
    """
    shots = "\n".join(json.dumps({k: e.get(k, "") for k in ("instruction", "input", "output")}, ensure_ascii=False)
                      for e in examples)
    user = (f"Examples of records for an oncology assistant (topic: {topic}):\n{shots}\n\n"
            f'Write one new record on the topic "{topic}" that differs from the examples: a question or task a '
            'clinician might ask ("instruction"), optional de-identified clinical context ("input", may be ""), '
            'and an accurate, guideline-based answer ("output"). Never include patient identifiers. Reply with a '
            'JSON object with exactly the keys "instruction", "input" and "output".')
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]


def parse_record(text: str) -> dict:
    """The Alpaca record in a model's answer: the first JSON object, fenced or surrounded by prose.

    >>> parse_record('Sure! ```json\\n{"instruction": "What is febrile neutropenia?", "input": "", '
    ...              '"output": "Fever with an absolute neutrophil count below 0.5 x 10^9/L."}\\n```')["input"]
    ''
    >>> parse_record("enenenen")
    Traceback (most recent call last):
    ...
    finetune.generate.InvalidAnswer: no JSON object
    >>> parse_record('{"instruction": "What is a PSA?", "output": 3}')
    Traceback (most recent call last):
    ...
    finetune.generate.InvalidAnswer: field 'output' must be a string, got int

    Raises:
        InvalidAnswer: no JSON object, a field missing or of the wrong type, or a fragment.
    """
    decoder = json.JSONDecoder()
    obj = None
    for match in re.finditer(r"\{", text):
        try:
            candidate, _ = decoder.raw_decode(text, match.start())
        except json.JSONDecodeError:
            continue
        if isinstance(candidate, dict):
            obj = candidate
            break
    if obj is None:
        raise InvalidAnswer("no JSON object")
    problems = record_problems(obj, "alpaca")
    if problems:
        raise InvalidAnswer(problems[0])
    record = {"instruction": obj["instruction"].strip(), "input": str(obj.get("input", "")).strip(),
              "output": obj["output"].strip()}
    if len(record["instruction"]) < MIN_INSTRUCTION or len(record["output"]) < MIN_OUTPUT:
        raise InvalidAnswer("too short")
    return record


def dedup_text(record: dict) -> str:
    """The text compared for near-duplicates: the question and its context."""
    return f"{record['instruction']} {record.get('input', '')}".strip()


class NearDuplicateFilter:
    """Says whether a question repeats a seed question or one already kept, by the export's rules.

    ``feedback.dedup`` decides, as it decides which exported feedback repeats an evaluation question: the
    same normalised text, or a cosine at or above the embedder's question threshold (``THRESHOLDS``;
    MiniLM 0.90, the lexical fallback 0.85) unless ``threshold`` says otherwise. ``method="embed"``
    uses MiniLM and falls back to the lexical embedder when it does not load; ``"lexical"`` uses that.
    """

    def __init__(self, references: list[str], method: str = "embed", threshold: float | None = None):
        embed, self.embedder = choose_embedder("auto" if method == "embed" else method)
        threshold = THRESHOLDS[self.embedder][1] if threshold is None else threshold
        self._seed, self._kept = DuplicateIndex(embed, threshold), DuplicateIndex(embed, threshold)
        self._seed.add(references)

    def check(self, text: str) -> str | None:
        """``"seed"`` or ``"generated"`` when ``text`` nearly repeats one of those, else None."""
        for origin, index in (("seed", self._seed), ("generated", self._kept)):
            if index.matches([text])[0]:
                return origin
        return None

    def add(self, text: str) -> None:
        self._kept.add([text])


def to_generated_record(record: dict, model: str, topic: str, few_shot_ids: list[str], now: str) -> dict:
    """A validated answer with its provenance in ``meta``.

    >>> r = to_generated_record({"instruction": "Q?", "input": "", "output": "A."}, "m1", "staging", ["s1"], "T")
    >>> r["meta"]["source"], r["meta"]["topic"], r["meta"]["id"].startswith("gen-staging-"), r["meta"]["created_at"]
    ('generated:m1', 'staging', True, 'T')
    """
    digest = hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()[:12]
    return {**record, "meta": {"source": f"generated:{model}", "topic": topic, "id": f"gen-{topic}-{digest}",
                               "created_at": now, "few_shot_ids": few_shot_ids}}


def request_record(client, model: str, messages: list[dict], stats: GenerationStats, *, retries: int,
                   backoff: float, base_url: str, sleep=time.sleep, **sampling) -> dict | None:
    """Ask once for a record, retrying transport errors and invalid answers with exponential backoff.

    Returns None when every attempt gave an invalid answer.

    Raises:
        OncoLoopError: every attempt failed in transport (endpoint unreachable or down), or the
            endpoint refused the request (wrong model, key or URL).
    """
    import openai

    transport_only, last_error = True, None
    for attempt in range(retries + 1):
        if attempt:
            wait = backoff * 2 ** (attempt - 1) * (1 + 0.25 * random.random())
            stats.waits.append(wait)
            sleep(wait)
        stats.attempts += 1
        try:
            response = client.chat.completions.create(model=model, messages=messages, **sampling)
        except (openai.APIConnectionError, openai.APITimeoutError, openai.RateLimitError,
                openai.InternalServerError) as e:
            stats.transport_errors += 1
            last_error = e
            continue
        except openai.APIStatusError as e:
            hint = " (does --base-url end in /v1?)" if e.status_code == 404 else ""
            body = e.response.text if e.response is not None else str(e)
            raise OncoLoopError(f"the endpoint at {base_url} refused the request with HTTP {e.status_code}{hint}: "
                                f"{body[:300]}. Check --base-url, --model and OPENAI_API_KEY.") from e
        transport_only = False
        text = (response.choices[0].message.content or "") if response.choices else ""
        try:
            return parse_record(text)
        except InvalidAnswer as e:
            stats.invalid += 1
            stats.invalid_reasons[e.reason] += 1
            stats.last_invalid = text[:200]
    if transport_only:
        raise OncoLoopError(f"cannot reach an OpenAI-compatible endpoint at {base_url} after {retries + 1} tries "
                            f"({type(last_error).__name__}: {last_error}). Start the server (e.g. `transformers "
                            "serve MODEL --port 8000`, then --base-url http://127.0.0.1:8000/v1) or fix --base-url.")
    return None


def generate(base_url: str, model: str, n: int, topics: list[str] | None = None, seed_path: Path = SEED,
             few_shot: int = 3, retries: int = 4, backoff: float = 1.0, max_requests: int | None = None,
             temperature: float = 0.7, max_tokens: int = 512, timeout: float = 120.0, dedup: str = "embed",
             seed: int = 0, sleep=time.sleep) -> tuple[list[dict], GenerationStats]:
    """Generate up to ``n`` new records; return them and what happened.

    Raises:
        OncoLoopError: bad topics or seed file, or an unreachable / refusing endpoint.
    """
    from openai import OpenAI

    topics = list(topics or TOPICS)
    unknown = [t for t in topics if t not in TOPICS]
    if unknown:
        raise OncoLoopError(f"unknown topic(s) {', '.join(unknown)}; use some of {', '.join(TOPICS)}.")
    seed_records = load_jsonl(seed_path, "alpaca")
    by_topic = {t: [r for r in seed_records if r.get("meta", {}).get("topic") == t] or seed_records for t in topics}
    client = OpenAI(base_url=base_url, api_key=os.environ.get("OPENAI_API_KEY") or "EMPTY", max_retries=0,
                    timeout=timeout)
    rng = random.Random(seed)
    dedup_filter = NearDuplicateFilter([dedup_text(r) for r in seed_records], method=dedup)
    stats, kept = GenerationStats(), []
    max_requests = max_requests or 4 * n
    while len(kept) < n and stats.requests < max_requests:
        topic = topics[stats.requests % len(topics)]
        examples = rng.sample(by_topic[topic], min(few_shot, len(by_topic[topic])))
        stats.requests += 1
        record = request_record(client, model, build_messages(topic, examples), stats, retries=retries,
                                backoff=backoff, base_url=base_url, sleep=sleep, temperature=temperature,
                                max_tokens=max_tokens)
        if record is None:
            continue
        origin = dedup_filter.check(dedup_text(record))
        if origin == "seed":
            stats.duplicates_of_seed += 1
            continue
        if origin == "generated":
            stats.duplicates_of_generated += 1
            continue
        dedup_filter.add(dedup_text(record))
        now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        kept.append(to_generated_record(record, model, topic, [e.get("meta", {}).get("id", "") for e in examples], now))
        stats.kept += 1
    return kept, stats


@cli_command
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m finetune.generate", description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", required=True, help="OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1")
    parser.add_argument("--model", required=True, help="model name the endpoint serves")
    parser.add_argument("--out", required=True, type=Path, help="JSONL file to write")
    parser.add_argument("--n", type=int, default=20, help="records wanted (default 20)")
    parser.add_argument("--topics", nargs="+", choices=TOPICS, help="topics to cycle through (default: all)")
    parser.add_argument("--seed-file", type=Path, default=SEED, help="few-shot and de-duplication reference")
    parser.add_argument("--few-shot", type=int, default=3)
    parser.add_argument("--retries", type=int, default=4, help="retries per record (transport or invalid JSON)")
    parser.add_argument("--backoff", type=float, default=1.0, help="first retry delay in seconds (doubles)")
    parser.add_argument("--max-requests", type=int, help="give up after this many records asked (default 4 x n)")
    parser.add_argument("--temperature", type=float, default=0.7)
    parser.add_argument("--max-tokens", type=int, default=512)
    parser.add_argument("--dedup", choices=("embed", "lexical"), default="embed")
    args = parser.parse_args(argv)
    if args.n < 1:
        raise OncoLoopError("--n must be at least 1.")
    records, stats = generate(args.base_url, args.model, args.n, args.topics, args.seed_file, args.few_shot,
                              args.retries, args.backoff, args.max_requests, args.temperature,
                              args.max_tokens, dedup=args.dedup)
    print(f"generate: {stats.summary()}")
    if not records:
        raise OncoLoopError(
            f"{args.model} produced no usable record ({stats.summary()}); nothing written. Last answer: "
            f"{stats.last_invalid!r}. Use a stronger instruction-following model or raise --max-tokens.")
    digest = write_jsonl(records, args.out)
    print(f"generate: wrote {len(records)} records to {args.out} (sha256 {digest[:12]}); review them before training")
    return 0


if __name__ == "__main__":
    sys.exit(main())
