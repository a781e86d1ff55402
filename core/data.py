"""Alpaca, safety and preference JSONL: loading, validation and the ``validate`` command.

Usage::

    python -m core.data validate data/oncology_seed.jsonl data/eval/*.jsonl

Every problem is reported with its file and line number; the exit status is 2
when any file has one.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from core.errors import OncoLoopError

SCHEMAS = ("alpaca", "safety", "preference")
SAFETY_CATEGORIES = ("dosing", "emergency", "out_of_scope", "identifiers", "override", "uncertainty")
TOPICS = (
    "screening", "staging", "tumour_markers", "regimens", "targeted_therapy", "immunotherapy",
    "toxicities", "supportive_care", "emergencies", "genetics", "radiotherapy",
    "performance_status", "palliative_care", "survivorship",
)
# Field name -> whether it must be a non-empty string.
_FIELDS = {
    "alpaca": {"instruction": True, "input": False, "output": True},
    "safety": {"instruction": True, "input": False, "category": True, "expected": True},
    "preference": {"prompt": True, "chosen": True, "rejected": True},
}


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one line of one file."""

    path: Path
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}"


def detect_schema(record: dict) -> str:
    """Which schema a record is meant to follow, from its keys.

    >>> detect_schema({"prompt": "q", "chosen": "a", "rejected": "b"})
    'preference'
    >>> detect_schema({"instruction": "q", "category": "dosing"})
    'safety'
    >>> detect_schema({"instruction": "q", "output": "a"})
    'alpaca'
    """
    if "chosen" in record or "rejected" in record:
        return "preference"
    if "category" in record:
        return "safety"
    return "alpaca"


def record_problems(record: object, schema: str) -> list[str]:
    """What is wrong with one parsed record (empty list: nothing).

    >>> record_problems({"instruction": "q", "input": "", "output": ""}, "alpaca")
    ["field 'output' must be a non-empty string"]
    >>> record_problems({"instruction": "q", "output": "a", "meta": []}, "alpaca")
    ["field 'meta' must be an object, got list"]
    """
    if not isinstance(record, dict):
        return [f"expected a JSON object, got {type(record).__name__}"]
    problems = []
    for name, required in _FIELDS[schema].items():
        value = record.get(name, None if required else "")
        if name not in record and required:
            problems.append(f"missing field '{name}'")
        elif not isinstance(value, str):
            problems.append(f"field '{name}' must be a string, got {type(value).__name__}")
        elif required and not value.strip():
            problems.append(f"field '{name}' must be a non-empty string")
    category = record.get("category")
    if schema == "safety" and isinstance(category, str) and category and category not in SAFETY_CATEGORIES:
        problems.append(f"unknown category {category!r}; use one of {', '.join(SAFETY_CATEGORIES)}")
    meta = record.get("meta", {})
    if not isinstance(meta, dict):
        problems.append(f"field 'meta' must be an object, got {type(meta).__name__}")
    return problems


def check_file(path: str | Path, schema: str | None = None, require_source: bool = False) -> list[Problem]:
    """Every problem in a JSONL file; the schema is taken from the first record when not given."""
    path = Path(path)
    if not path.is_file():
        return [Problem(path, 0, "file not found (give the path of a .jsonl file)")]
    problems: list[Problem] = []
    seen_ids: dict[str, int] = {}
    count = 0
    with path.open(encoding="utf-8", errors="strict") as f:
        try:
            lines = f.read().splitlines()
        except UnicodeDecodeError as e:
            return [Problem(path, 0, f"not UTF-8 text ({e.reason} at byte {e.start})")]
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            problems.append(Problem(path, number, "blank line (JSONL has one JSON object per line)"))
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            problems.append(Problem(path, number, f"invalid JSON: {e.msg} at column {e.colno}"))
            continue
        count += 1
        if schema is None and isinstance(record, dict):
            schema = detect_schema(record)
        problems += [Problem(path, number, m) for m in record_problems(record, schema or "alpaca")]
        meta = record.get("meta") if isinstance(record, dict) else None
        if isinstance(meta, dict):
            if require_source and not str(meta.get("source", "")).strip():
                problems.append(Problem(path, number, "missing meta.source (bundled data must name its source)"))
            rid = meta.get("id")
            if isinstance(rid, str):
                if rid in seen_ids:
                    problems.append(Problem(path, number, f"duplicate meta.id {rid!r} (first on line {seen_ids[rid]})"))
                seen_ids.setdefault(rid, number)
    if count == 0 and not problems:
        problems.append(Problem(path, 0, "empty file: no records"))
    return problems


def load_jsonl(path: str | Path, schema: str | None = None) -> list[dict]:
    """Load a JSONL file after validating all of it.

    Raises:
        OncoLoopError: naming the file and the first few bad lines.
    """
    problems = check_file(path, schema)
    if problems:
        shown = "\n  ".join(str(p) for p in problems[:10])
        more = f"\n  ... and {len(problems) - 10} more" if len(problems) > 10 else ""
        raise OncoLoopError(
            f"{path} is not valid {schema or 'JSONL'} data:\n  {shown}{more}\n"
            "Fix these lines (check them with `python -m core.data validate FILE`)."
        )
    with Path(path).open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def write_jsonl(records: list[dict], path: str | Path) -> str:
    """Write records atomically (temp file + rename); return the content hash.

    Nothing is written half-way: a failure leaves any previous file untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in records)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core.data", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    val = sub.add_parser("validate", help="check JSONL files and report bad lines with their numbers")
    val.add_argument("files", nargs="+", type=Path)
    val.add_argument("--schema", choices=SCHEMAS, help="default: taken from the first record")
    val.add_argument("--require-source", action="store_true", help="every record must have meta.source")
    args = parser.parse_args(argv)

    failed = False
    for path in args.files:
        problems = check_file(path, args.schema, args.require_source)
        for p in problems:
            print(p, file=sys.stderr)
        if problems:
            failed = True
            print(f"{path}: {len(problems)} problem(s)", file=sys.stderr)
        else:
            with path.open(encoding="utf-8") as f:
                n = sum(1 for line in f if line.strip())
            print(f"{path}: OK, {n} records")
    return 2 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
