"""The optional pairwise LLM judge: any OpenAI-compatible endpoint, asked twice per item with the answers in
both orders (position bias cancels), ties allowed, the rubric in a file (``configs/gate/judge_rubric.md``).

An item's score for B is the mean of its two verdicts (B better = 1, tie = 0.5, A better = 0); the win rate
is the mean over items, with a bootstrap interval.

>>> parse_verdict("Answer 2 names the guideline.\\nVERDICT: 2")
'2'
>>> parse_verdict("verdict: tie") , parse_verdict("I cannot decide.")
('TIE', None)
>>> item_score("1", "2"), item_score("TIE", "1"), item_score("2", "1")  # (A first, B first) orders
(0.0, 0.75, 1.0)
"""

from __future__ import annotations

import re
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from core.errors import OncoLoopError

_VERDICT = re.compile(r"verdict\s*[:=]\s*\**\s*(1|2|tie)\b", re.IGNORECASE)
PLACEHOLDERS = ("{question}", "{reference}", "{answer_1}", "{answer_2}")


def parse_verdict(text: str) -> str | None:
    """``"1"``, ``"2"`` or ``"TIE"`` from the judge's text (its last VERDICT line); None if there is none."""
    found = _VERDICT.findall(text or "")
    return found[-1].upper() if found else None


def item_score(a_first: str, b_first: str) -> float:
    """B's score from the verdicts with A shown first and with B shown first."""
    first = {"1": 0.0, "2": 1.0, "TIE": 0.5}[a_first]
    second = {"1": 1.0, "2": 0.0, "TIE": 0.5}[b_first]
    return (first + second) / 2


def load_rubric(path: str | Path) -> str:
    """The rubric template, checked for its placeholders.

    Raises:
        OncoLoopError: missing file or a placeholder missing.
    """
    path = Path(path)
    if not path.is_file():
        raise OncoLoopError(f"judge rubric {path} not found; the shipped one is configs/gate/judge_rubric.md.")
    text = path.read_text(encoding="utf-8")
    missing = [p for p in PLACEHOLDERS if p not in text]
    if missing:
        raise OncoLoopError(f"judge rubric {path} lacks {', '.join(missing)}; it must contain all of "
                            f"{', '.join(PLACEHOLDERS)}.")
    return text


class Judge(Protocol):
    def verdict(self, question: str, reference: str, answer_1: str, answer_2: str) -> str | None: ...


@dataclass
class JudgeResult:
    scores: list[float]  # per item: B's score (0, 0.5 or 1, or the mean of two)
    verdicts: list[tuple[str, str]]  # (A first, B first) per item
    unparseable: int = 0
    notes: list[str] = field(default_factory=list)


class OpenAIJudge:
    """A judge model behind an OpenAI-compatible endpoint."""

    def __init__(self, base_url: str, model: str, rubric: str, api_key: str = "none", max_tokens: int = 256,
                 timeout_s: float = 120.0):
        import openai

        self.model, self.rubric, self.max_tokens, self.base_url = model, rubric, max_tokens, base_url
        url = base_url.rstrip("/")
        self.client = openai.OpenAI(base_url=url if url.endswith("/v1") else url + "/v1", api_key=api_key,
                                    timeout=timeout_s, max_retries=2)

    def check(self) -> None:
        """Fail early, before any answers are generated, if the endpoint does not answer."""
        self.verdict("ping", "", "a", "b")

    def verdict(self, question: str, reference: str, answer_1: str, answer_2: str) -> str | None:
        import openai

        prompt = (self.rubric.replace("{question}", question).replace("{reference}", reference or "")
                  .replace("{answer_1}", answer_1).replace("{answer_2}", answer_2))
        try:
            resp = self.client.chat.completions.create(
                model=self.model, messages=[{"role": "user", "content": prompt}], max_tokens=self.max_tokens,
                temperature=0.0)
        except openai.APIConnectionError as e:
            raise OncoLoopError(f"the judge at {self.base_url} is unreachable ({e}); check judge_url or run "
                                "without a judge (judge_url=\"\").") from None
        except openai.APIStatusError as e:
            raise OncoLoopError(f"the judge at {self.base_url} refused the request ({e.status_code}): {e.message}; "
                                "check judge_model and the key in judge_api_key_env.") from None
        return parse_verdict(resp.choices[0].message.content or "")


def judge_pairs(judge: Judge, questions: list[str], references: list[str | None], answers_a: list[str],
                answers_b: list[str], unparseable: str = "error", concurrency: int = 4) -> JudgeResult:
    """Both orders for every item; an unreadable verdict raises (``error``) or counts as a tie (``tie``).

    Raises:
        OncoLoopError: unreachable judge, or an unreadable verdict under ``unparseable="error"``.
    """
    from tqdm import tqdm

    def one(k: int) -> tuple[str | None, str | None]:
        ref = references[k] or ""
        return (judge.verdict(questions[k], ref, answers_a[k], answers_b[k]),
                judge.verdict(questions[k], ref, answers_b[k], answers_a[k]))

    with ThreadPoolExecutor(concurrency) as pool:
        raw = list(tqdm(pool.map(one, range(len(questions))), total=len(questions), desc="judge", unit="item",
                        file=sys.stderr, leave=False))
    bad = sum(v is None for pair in raw for v in pair)
    if bad and unparseable == "error":
        raise OncoLoopError(f"the judge gave {bad} verdict(s) of {2 * len(raw)} without a readable `VERDICT: 1|2|TIE`"
                            " line; use a stronger judge model, fix the rubric, or set judge_unparseable=tie.")
    verdicts = [(a or "TIE", b or "TIE") for a, b in raw]
    notes = [f"{bad} unreadable verdict(s) counted as ties"] if bad else []
    return JudgeResult([item_score(a, b) for a, b in verdicts], verdicts, bad, notes)
