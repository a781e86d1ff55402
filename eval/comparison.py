"""One comparison of two versions: check them, load the sets, ask both (in process with continuous batching,
or through a gateway), score, and add the online A/B results from the store. ``eval.compare`` and ``eval.gate``
both run it."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from core.errors import OncoLoopError
from eval.client import PrivateGateway, ask_all
from eval.config import CompareConfig
from eval.scoring import SetResult, score_set
from eval.sets import DEFAULT_SETS, EvalSet, load_set

WEIGHT_FILES = ("*.safetensors", "*.bin", "adapter_model.*")


@dataclass
class Comparison:
    """What a comparison found (plain data; ``report.json`` holds it)."""

    id: str
    created_at: str
    a: str  # as named (e.g. champion)
    b: str
    a_version: str
    b_version: str
    config: dict
    sets: dict[str, SetResult]
    online: dict | None = None
    gateway: str = ""
    duration_s: float = 0.0
    # seconds spent asking: per set through a gateway; per version in process (every set in one batched run)
    answer_s: dict[str, float] = field(default_factory=dict)
    generation: dict = field(default_factory=dict)  # local backend: answers generated / cached, tokens/s

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Comparison":
        d = dict(d)
        d["sets"] = {k: SetResult.from_dict(v) for k, v in d["sets"].items()}
        return cls(**d)


def check_version(registry, name: str):
    """The registered version behind ``name``, if its directory is complete.

    Raises:
        OncoLoopError: unknown alias or version, or a version whose directory is missing or incomplete.
    """
    version = registry.get(name)
    path = Path(version.path)
    if not (path / "meta.json").is_file() or not any(any(path.glob(p)) for p in WEIGHT_FILES):
        raise OncoLoopError(f"version {version.id} is not ready: {path} has no meta.json or no weights (still "
                            "being built, or deleted). Finish it with `python -m finetune.merge` or choose another.")
    return version


def report_id(a: str, b: str, when: dt.datetime) -> str:
    """A report directory name: UTC time, then the two versions.

    >>> report_id("v1", "lora 2", dt.datetime(2026, 1, 2, 3, 4, 5))
    '20260102-030405-v1-vs-lora_2'
    """
    safe = lambda s: re.sub(r"[^A-Za-z0-9._-]+", "_", s)[:60]  # noqa: E731
    return f"{when:%Y%m%d-%H%M%S}-{safe(a)}-vs-{safe(b)}"


def load_sets(sets: dict[str, Path | None] | None, cfg: CompareConfig, limits: dict[str, int] | None = None
              ) -> list[EvalSet]:
    """The sets to evaluate (default: general, safety, retention), all validated before anything is asked."""
    wanted = sets if sets else {name: None for name in DEFAULT_SETS}
    limits = limits or {}
    return [load_set(name, path, limit=limits.get(name, cfg.limit), seed=cfg.seed, retention_size=cfg.retention_size)
            for name, path in wanted.items()]


def make_judge(cfg: CompareConfig):
    """The configured judge, checked to answer (None when no judge is configured)."""
    if not cfg.judge_url:
        return None
    import os

    from eval.judge import OpenAIJudge, load_rubric

    judge = OpenAIJudge(cfg.judge_url, cfg.judge_model, load_rubric(cfg.judge_rubric),
                        os.environ.get(cfg.judge_api_key_env, "none"), cfg.judge_max_tokens, cfg.request_timeout_s)
    judge.check()
    return judge


def _ask(url: str, version: str, s: EvalSet, cfg: CompareConfig):
    answers = ask_all(url, version, s.items, cfg.max_tokens, cfg.temperature, cfg.concurrency, cfg.request_timeout_s,
                      cfg.retries, label=f"{s.name}: {version}", retrieval=cfg.retrieval_for(s.name))
    wrong = {a.version for a in answers} - {version}
    if wrong:
        raise OncoLoopError(f"the gateway answered for {version} with {', '.join(sorted(wrong))}; it must serve "
                            "that version by id (an older gateway?).")
    return answers


def _compare_local(registry, a: str, b: str, eval_sets: list[EvalSet], cfg: CompareConfig, judge):
    """Both versions in process, answers generated many at a time (and reused from the cache)."""
    from core.settings import get_settings
    from eval.local import AnswerCache, ask_local, open_engines

    engines = open_engines(registry, [a, b], cfg.guard, cfg.retrieval)
    cache = AnswerCache(get_settings().home / "cache" / "answers") if cfg.cache_answers else None
    results, answer_s, cost = {}, {}, {"generated": 0, "cached": 0, "tokens": 0, "seconds": 0.0}
    # every set in one call per version: the batch refills from the next set instead of draining at each set's end
    items = [item for s in eval_sets for item in s.items]
    retrieval = [cfg.retrieval_for(s.name) for s in eval_sets for _ in s.items]
    answers = {}
    for vid in (a, b):
        answers[vid], spent = ask_local(engines[vid], items, cfg.max_tokens, cfg.batch_size, cache,
                                        label=f"{', '.join(s.name for s in eval_sets)}: {vid}", retrieval=retrieval)
        cost = {k: cost[k] + spent[k] for k in cost}
        answer_s[vid] = spent["seconds"]
    start = 0
    for s in eval_sets:
        end = start + len(s.items)
        results[s.name] = score_set(s, answers[a][start:end], answers[b][start:end], cfg.resamples, cfg.seed, judge,
                                    cfg.judge_limit, cfg.judge_unparseable, cfg.concurrency)
        start = end
    cost["tokens_per_s"] = round(cost["tokens"] / cost["seconds"], 1) if cost["seconds"] else None
    return results, answer_s, {"backend": "local", "batch_size": cfg.batch_size, **cost}


def _compare_through_gateway(a: str, b: str, eval_sets: list[EvalSet], cfg: CompareConfig, judge):
    """Both versions asked through a gateway (given, or a private one) with concurrent requests."""
    results: dict[str, SetResult] = {}
    answer_s: dict[str, float] = {}
    gateway = None
    if not cfg.gateway_url:
        overrides = [] if cfg.retrieval else ["retrieval=false"]
        gateway = PrivateGateway([a, b], cfg.engine, cfg.gateway_start_timeout_s, guard=cfg.guard, overrides=overrides)
        print(f"compare: starting a private gateway for {a} and {b} (log {gateway.log})", file=sys.stderr)
        gateway.__enter__()
    try:
        url = cfg.gateway_url or gateway.url
        for s in eval_sets:
            t = time.monotonic()
            # both versions at once: their engines are separate processes (and vLLM batches each one's requests)
            with ThreadPoolExecutor(2) as pool:
                fa, fb = pool.submit(_ask, url, a, s, cfg), pool.submit(_ask, url, b, s, cfg)
                answers_a, answers_b = fa.result(), fb.result()
            answer_s[s.name] = round(time.monotonic() - t, 1)
            results[s.name] = score_set(s, answers_a, answers_b, cfg.resamples, cfg.seed, judge, cfg.judge_limit,
                                        cfg.judge_unparseable, cfg.concurrency)
    finally:
        if gateway is not None:
            gateway.stop()
    return results, answer_s, {"backend": "gateway", "concurrency": cfg.concurrency}


def run_comparison(a: str, b: str, sets: dict[str, Path | None] | None = None, cfg: CompareConfig | None = None,
                   limits: dict[str, int] | None = None, registry=None, online: bool = True) -> Comparison:
    """Compare versions ``a`` and ``b`` (aliases or ids) on the sets; nothing in the registry changes.

    Raises:
        OncoLoopError: unknown or unfinished version, bad set, unreachable gateway or judge.
    """
    from feedback.store import FeedbackStore
    from serve.registry import Registry

    cfg = (cfg or CompareConfig()).check()
    started, now = time.monotonic(), dt.datetime.now(dt.timezone.utc)
    store = FeedbackStore.open()
    registry = registry or Registry(store.store)
    va, vb = check_version(registry, a), check_version(registry, b)
    if va.id == vb.id:
        raise OncoLoopError(f"{a} and {b} are the same version ({va.id}); compare two different versions.")
    eval_sets = load_sets(sets, cfg, limits)
    judge = make_judge(cfg)
    if cfg.use_local():
        results, answer_s, generation = _compare_local(registry, va.id, vb.id, eval_sets, cfg, judge)
    else:
        results, answer_s, generation = _compare_through_gateway(va.id, vb.id, eval_sets, cfg, judge)
    summary = None
    if online:
        from eval.online import online_summary

        facts = [m for m in store.feedback_facts() if m.model_version in (va.id, vb.id)]
        summary = online_summary(facts, [va.id, vb.id], cfg.resamples, cfg.seed) if facts else None
    return Comparison(report_id(va.id, vb.id, now), now.isoformat(timespec="seconds"), a, b, va.id, vb.id,
                      dataclasses.asdict(cfg), results, summary,
                      cfg.gateway_url or ("in process" if generation["backend"] == "local" else "private"),
                      round(time.monotonic() - started, 1), answer_s, generation)
