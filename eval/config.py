"""How a comparison runs and what the gate demands: typed dataclasses loaded like every OncoLoop config.

``CompareConfig`` is read with ``core.config.load_config`` (YAML + ``key=value`` overrides); a gate
policy (``configs/gate/*.yaml``) holds a ``compare:`` mapping of the same keys, the size of each set
(``limits:``) and its named ``rules:``.

>>> policy = parse_policy({"rules": {"no_worse_chrf": {"kind": "no_regression", "set": "general",
...                                   "metric": "chrf", "margin": 1.0}}}, "inline")
>>> policy.rules[0]
Rule(name='no_worse_chrf', kind='no_regression', set='general', metric='chrf', margin=1.0, min_delta=0.0, floor=0.0, min_items=0, required=True)
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

from core.config import load_config, read_yaml
from core.errors import OncoLoopError
from serve.generation import BATCH_SIZE

REPO = Path(__file__).resolve().parent.parent
DEFAULT_POLICY = REPO / "configs" / "gate" / "default.yaml"
DEFAULT_RUBRIC = REPO / "configs" / "gate" / "judge_rubric.md"
RULE_KINDS = ("no_regression", "improvement", "safety", "judge", "min_items")
# metrics a rule may name: corpus scores (bootstrapped at corpus level) and per-item means
METRICS = ("bleu", "chrf", "rougeL", "length", "relevance", "semantic", "sentence_bleu", "sentence_chrf", "safety")


@dataclass
class CompareConfig:
    """How both versions are asked and scored."""

    gateway_url: str = ""  # an OpenAI-compatible gateway; empty: in process, or a private one (backend)
    # local: both versions loaded here, static batches (CPU); gateway: a private `python -m serve` whose engine
    # batches concurrent requests (vLLM); auto: gateway when gateway_url is set or the engine is vLLM, else local
    backend: str = "auto"
    batch_size: int = BATCH_SIZE  # local backend: answers generated together
    cache_answers: bool = True  # local backend: reuse a version's answers to the same prompts
    retrieval: bool = True  # give the models approved answers as context, as the gateway does by default
    # sets answered without retrieval even so: on the feedback set both versions would be given the very
    # corrections they are scored against, so only there does the comparison show what the candidate learnt
    no_retrieval_sets: list[str] = field(default_factory=lambda: ["feedback"])
    engine: str = "auto"  # the private gateway's engine: auto | transformers | vllm
    guard: str = ""  # the private gateway's guard config (python -m serve --guard); empty: the built-in rules
    gateway_start_timeout_s: float = 600.0
    max_tokens: int = 256  # per answer
    temperature: float = 0.0  # greedy: a rerun gives the same answers
    concurrency: int = 4  # requests in flight per version
    request_timeout_s: float = 300.0
    retries: int = 4  # per request, on 503 (engine starting) and connection drops
    resamples: int = 1000  # paired bootstrap resamples (at least 1000)
    seed: int = 0  # bootstrap and sampling seed
    retention_size: int = 60  # fixed-seed sample of the training seed for the `retention` set
    limit: int = 0  # at most this many items per set (fixed-seed sample); 0: all
    judge_url: str = ""  # an OpenAI-compatible endpoint for the pairwise judge; empty: no judge
    judge_model: str = ""
    judge_api_key_env: str = "OPENAI_API_KEY"  # the environment variable holding the judge's key
    judge_rubric: str = str(DEFAULT_RUBRIC)
    judge_max_tokens: int = 256
    judge_unparseable: str = "error"  # error: stop with a message | tie: count an unreadable verdict as a tie
    judge_limit: int = 0  # judge at most this many items per set; 0: all

    def retrieval_for(self, set_name: str) -> bool:
        """Whether answers to ``set_name`` get approved answers as context.

        >>> CompareConfig().retrieval_for("general"), CompareConfig().retrieval_for("feedback")
        (True, False)
        """
        return self.retrieval and set_name not in self.no_retrieval_sets

    def use_local(self) -> bool:
        """Whether answers are generated in process (see ``backend``)."""
        if self.backend != "auto":
            return self.backend == "local"
        if self.gateway_url or self.temperature > 0:
            return False
        from serve.engines import choose_engine

        return choose_engine(self.engine) == "transformers"

    def check(self) -> "CompareConfig":
        """Raises OncoLoopError on values no run can use."""
        if self.resamples < 1000:
            raise OncoLoopError(f"resamples={self.resamples}: use at least 1000 bootstrap resamples.")
        if self.concurrency < 1 or self.max_tokens < 1 or self.batch_size < 1:
            raise OncoLoopError("concurrency, batch_size and max_tokens must be at least 1.")
        if self.backend not in ("auto", "local", "gateway"):
            raise OncoLoopError(f"backend={self.backend!r}: use auto, local or gateway.")
        if self.backend == "local" and self.temperature > 0:
            raise OncoLoopError("the local backend generates greedily; set temperature=0 or backend=gateway.")
        if self.judge_unparseable not in ("error", "tie"):
            raise OncoLoopError(f"judge_unparseable={self.judge_unparseable!r}: use error or tie.")
        if self.judge_url and not self.judge_model:
            raise OncoLoopError("judge_url is set but judge_model is empty: name the judge's model.")
        return self


@dataclass
class Rule:
    """One named gate rule; which fields matter depends on ``kind`` (see ``RULE_FIELDS``)."""

    name: str
    kind: str
    set: str = ""
    metric: str = ""
    margin: float = 0.0  # no_regression: the delta's lower bound must be >= -margin; safety: slack
    min_delta: float = 0.0  # improvement: the delta's lower bound must exceed this
    floor: float = 0.0  # safety: the candidate's pass rate must reach this
    min_items: int = 0  # min_items: the set must have at least this many evaluated items
    required: bool = True  # a rule on a set that was not given fails only if required


RULE_FIELDS = {
    "no_regression": {"set", "metric", "margin", "required"},
    "improvement": {"set", "metric", "min_delta", "required"},
    "safety": {"set", "floor", "margin", "required"},
    "judge": {"set", "required"},
    "min_items": {"set", "min_items", "required"},
}


@dataclass
class Policy:
    """A gate policy: comparison settings, set sizes and named rules."""

    source: str
    compare: CompareConfig = field(default_factory=CompareConfig)
    limits: dict[str, int] = field(default_factory=dict)  # per set; overrides compare.limit
    rules: list[Rule] = field(default_factory=list)


def _rule(name: str, spec: object, where: str) -> Rule:
    if not isinstance(spec, dict):
        raise OncoLoopError(f"{where}: rule {name!r} must be a mapping with a `kind`.")
    kind = spec.get("kind")
    if kind not in RULE_KINDS:
        raise OncoLoopError(f"{where}: rule {name!r} has unknown kind {kind!r}; use one of {', '.join(RULE_KINDS)}.")
    allowed = RULE_FIELDS[kind] | {"kind"}
    extra = sorted(set(spec) - allowed)
    if extra:
        raise OncoLoopError(f"{where}: rule {name!r} ({kind}) does not take {', '.join(extra)}; "
                            f"it takes {', '.join(sorted(allowed))}.")
    if kind != "judge" and not spec.get("set"):
        raise OncoLoopError(f"{where}: rule {name!r} needs a `set` (e.g. general, safety, retention, feedback).")
    if kind in ("no_regression", "improvement") and spec.get("metric") not in METRICS:
        raise OncoLoopError(f"{where}: rule {name!r} has metric {spec.get('metric')!r}; use one of "
                            f"{', '.join(METRICS)}.")
    types = {f.name: f.type for f in dataclasses.fields(Rule)}
    values = {}
    for key, value in spec.items():
        if key == "kind":
            continue
        caster = {"float": float, "int": int, "bool": bool, "str": str}[types[key]]
        try:
            values[key] = caster(value)
        except (TypeError, ValueError):
            raise OncoLoopError(f"{where}: rule {name!r}: {key}={value!r} is not a {types[key]}.") from None
    return Rule(name=name, kind=kind, **values)


def _as_overrides(values: dict) -> list[str]:
    """``key=value`` strings that load_config reads back to the same values (JSON is YAML)."""
    return [f"{k}={json.dumps(v)}" for k, v in values.items()]


def parse_policy(data: object, where: str) -> Policy:
    """A Policy from the mapping of a policy file.

    Raises:
        OncoLoopError: unknown top-level key, unknown rule kind or field, bad compare setting, no rules.
    """
    if not isinstance(data, dict):
        raise OncoLoopError(f"{where} must be a mapping with `rules:` (and optionally `compare:`, `limits:`).")
    unknown = sorted(set(data) - {"compare", "limits", "rules"})
    if unknown:
        raise OncoLoopError(f"{where}: unknown key(s) {', '.join(unknown)}; a policy has compare, limits, rules.")
    rules = data.get("rules") or {}
    if not isinstance(rules, dict) or not rules:
        raise OncoLoopError(f"{where} has no rules: add named rules under `rules:` (see configs/gate/default.yaml).")
    compare = data.get("compare") or {}
    if not isinstance(compare, dict):
        raise OncoLoopError(f"{where}: `compare:` must be a mapping of CompareConfig keys.")
    cfg = load_config(CompareConfig, None, _as_overrides(compare))
    limits = data.get("limits") or {}
    if not isinstance(limits, dict) or not all(isinstance(v, int) and v >= 0 for v in limits.values()):
        raise OncoLoopError(f"{where}: `limits:` maps set names to item counts (0: all).")
    return Policy(where, cfg.check(), dict(limits), [_rule(n, s, where) for n, s in rules.items()])


def load_policy(path: str | Path | None = None, overrides: list[str] | None = None) -> Policy:
    """Read a policy file (default ``configs/gate/default.yaml``); ``overrides`` are CompareConfig key=value.

    Raises:
        OncoLoopError: missing or malformed file, or an invalid policy.
    """
    path = Path(path) if path else DEFAULT_POLICY
    policy = parse_policy(read_yaml(path, "policy file", "shipped policies are under configs/gate/"), str(path))
    if overrides:
        current = dataclasses.asdict(policy.compare)
        policy.compare = load_config(CompareConfig, None, _as_overrides(current) + list(overrides)).check()
    return policy
