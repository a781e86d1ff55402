"""Evaluation sets: the bundled ones by name, any Alpaca or safety JSONL file by path.

- ``general``: ``data/eval/oncology_eval.jsonl`` (held out, never trained on);
- ``safety``: ``data/eval/safety.jsonl`` (scored by ``eval.safety``, no reference answers);
- ``retention``: a fixed-seed sample of ``data/oncology_seed.jsonl``, answers the champion already
  knows: it catches forgetting, and candidates trained on answers shuffled among questions;
- ``feedback`` and any other name: a file given at run time (``--set feedback=FILE``).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path

from core.data import check_file, detect_schema
from core.errors import OncoLoopError
from core.prompt import to_messages

REPO = Path(__file__).resolve().parent.parent
BUNDLED = {
    "general": REPO / "data" / "eval" / "oncology_eval.jsonl",
    "safety": REPO / "data" / "eval" / "safety.jsonl",
    "retention": REPO / "data" / "oncology_seed.jsonl",
}
DEFAULT_SETS = ("general", "safety", "retention")


@dataclass
class EvalItem:
    """One question of a set, with its reference answer (None for safety items)."""

    id: str
    instruction: str
    input: str = ""
    reference: str | None = None
    topic: str = "other"
    category: str | None = None  # safety items
    record: dict = field(default_factory=dict)

    @property
    def messages(self) -> list[dict]:
        return to_messages(self.instruction, self.input)


@dataclass
class EvalSet:
    name: str
    path: Path
    schema: str  # alpaca | safety
    items: list[EvalItem]


def sample(records: list, n: int, seed: int) -> list:
    """A fixed-seed sample of ``n`` records in file order (all of them when ``n`` is 0 or too large).

    >>> sample(list(range(10)), 3, seed=0)
    [0, 6, 9]
    >>> sample([1, 2], 0, seed=0)
    [1, 2]
    """
    if n <= 0 or n >= len(records):
        return list(records)
    keep = sorted(random.Random(seed).sample(range(len(records)), n))
    return [records[i] for i in keep]


def _item(record: dict, index: int, set_name: str, schema: str) -> EvalItem:
    meta = record.get("meta") or {}
    return EvalItem(
        id=str(meta.get("id") or f"{set_name}-{index + 1:04d}"), instruction=record["instruction"],
        input=record.get("input") or "", reference=record.get("output") if schema == "alpaca" else None,
        topic=str(meta.get("topic") or record.get("category") or "other"), category=record.get("category"),
        record=record)


def load_set(name: str, path: str | Path | None = None, limit: int = 0, seed: int = 0,
             retention_size: int = 60) -> EvalSet:
    """Load and validate one evaluation set.

    Args:
        name: the set's name; bundled names need no path.
        limit: keep at most this many items (fixed-seed sample); 0 keeps all.

    Raises:
        OncoLoopError: unknown name without a file, missing, empty or malformed file.
    """
    if path is None:
        if name not in BUNDLED:
            raise OncoLoopError(f"no file for the set {name!r}: give it as --set {name}=FILE "
                                f"(bundled sets: {', '.join(BUNDLED)}).")
        path = BUNDLED[name]
    path = Path(path)
    if not path.is_file():
        raise OncoLoopError(f"evaluation set {name!r}: {path} not found.")
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not lines:
        raise OncoLoopError(f"evaluation set {name!r}: {path} is empty; give a JSONL file of Alpaca or safety "
                            "records (see data/README.md).")
    try:
        first = json.loads(lines[0])
    except json.JSONDecodeError:
        first = None
    if not isinstance(first, dict):
        raise OncoLoopError(f"evaluation set {name!r}: the first line of {path} is not a JSON record; check "
                            f"the file with `python -m core.data validate {path}`.")
    schema = detect_schema(first)
    if schema not in ("alpaca", "safety"):
        raise OncoLoopError(f"evaluation set {name!r}: {path} holds {schema} records; evaluation needs Alpaca "
                            "(instruction, input, output) or safety records.")
    problems = check_file(path, schema)
    if problems:
        shown = "\n  ".join(str(p) for p in problems[:5])
        raise OncoLoopError(f"evaluation set {name!r}: {path} is not valid {schema} data:\n  {shown}\n"
                            f"Fix these lines (check with `python -m core.data validate {path}`).")
    records = [json.loads(line) for line in lines]
    if name == "retention" and path == BUNDLED["retention"]:
        records = sample(records, retention_size, seed=1234)  # fixed: the same items for every gate
    records = sample(records, limit, seed)
    return EvalSet(name, path, schema, [_item(r, i, name, schema) for i, r in enumerate(records)])


def parse_set_args(values: list[str] | None) -> dict[str, Path | None]:
    """``--set`` arguments (``name=FILE``, a bundled ``name``, or a bare ``FILE`` named by its stem).

    >>> parse_set_args(["general", "feedback=/tmp/fb.jsonl"])
    {'general': None, 'feedback': PosixPath('/tmp/fb.jsonl')}
    """
    sets: dict[str, Path | None] = {}
    for value in values or []:
        name, sep, file = value.partition("=")
        if sep:
            if not name or not file:
                raise OncoLoopError(f"--set {value!r}: use name=FILE.")
            sets[name] = Path(file)
        elif value in BUNDLED or not (Path(value).suffix or "/" in value):
            sets[value] = None  # a set by name (load_set says if it needs a file)
        else:
            sets[Path(value).stem] = Path(value)
    return sets
