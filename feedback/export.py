"""Export reviewed feedback as training data: Alpaca JSONL and preference pairs.

Usage::

    python -m feedback.export --out var/datasets/feedback.jsonl [--since 2026-11-01]
        [--pairs FILE] [--eval-dir data/eval] [--embedder auto|minilm|lexical] [--reviewed-only]

Which feedback becomes a record is decided in ``feedback.records``. Then every text
is PHI-scrubbed (``feedback.scrub``), records whose question matches an evaluation
or safety item in ``--eval-dir`` exactly or nearly are removed (decontamination),
and near duplicates are removed with faiss (``feedback.dedup``). Both files are
written atomically; their sha256 content hashes, the counts and every feedback id
used go to ``<out stem>.manifest.json``. Pairs go to ``<out stem>.pairs.jsonl``
unless ``--pairs`` says otherwise.

``--embedder auto`` uses the offline MiniLM package when it loads and otherwise
falls back, saying so, to hashed character n-grams (numpy only).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from core.data import load_jsonl, write_jsonl
from core.errors import OncoLoopError, cli_command
from core.text import normalise
from feedback.dedup import THRESHOLDS, DuplicateIndex, Embedder, choose_embedder, keep_unique, lexical_embed
from feedback.records import MessageFacts, ab_pairs, message_records
from feedback.scrub import scrub, scrub_record
from feedback.store import FeedbackStore, as_utc

EVAL_DIR = Path(__file__).resolve().parent.parent / "data" / "eval"
_KIND_ORDER = {"correction": 0, "rated_answer": 1, "ab": 2}


@dataclass
class ExportResult:
    """What an export wrote; also saved as the snapshot's manifest."""

    out: str
    pairs_out: str
    records: int
    pairs: int
    records_sha256: str
    pairs_sha256: str
    embedder: str
    since: str | None
    removed: dict[str, int] = field(default_factory=dict)
    feedback_ids: dict[str, list[int]] = field(default_factory=dict)


def eval_questions(eval_dir: Path) -> list[str]:
    """The question (instruction and input) of every item in every ``*.jsonl`` under ``eval_dir``."""
    if not eval_dir.is_dir():
        raise OncoLoopError(f"{eval_dir} is not a folder; give --eval-dir the folder holding the evaluation sets.")
    return [f"{r['instruction']}\n{r.get('input', '')}".strip() for path in sorted(eval_dir.glob("*.jsonl"))
            for r in load_jsonl(path)]


def _priority(record: dict) -> tuple:
    meta = record["meta"]
    return _KIND_ORDER[meta["kind"]], -dt.datetime.fromisoformat(meta["created_at"]).timestamp(), meta["id"]


def build(messages: list[MessageFacts], hash_of: Callable[[int], str], eval_texts: list[str],
          embed: Embedder | None, thresholds: tuple[float, float], reviewed_only: bool = False,
          skip: Callable[[dict], bool] | None = None) -> tuple[list[dict], list[dict], dict[str, int]]:
    """Records, pairs and removal counts from stored feedback (no I/O).

    Args:
        thresholds: (near-duplicate, contamination) cosine thresholds for ``embed``.
        skip: records and pairs to leave out before anything else (e.g. what a model was already
            trained on), so that they cannot displace a newer near duplicate.
    """
    records, pairs = [], []
    for m in messages:
        r, p = message_records(m, hash_of, reviewed_only)
        records += r
        pairs += p
    pairs += ab_pairs(messages, normalise, hash_of)
    removed = {}
    if skip is not None:
        n_records, n_pairs = len(records), len(pairs)
        records, pairs = [r for r in records if not skip(r)], [p for p in pairs if not skip(p)]
        removed = {"already_used_records": n_records - len(records), "already_used_pairs": n_pairs - len(pairs)}
    records, pairs = sorted(records, key=_priority), sorted(pairs, key=_priority)
    near_duplicate, contamination = thresholds
    # questions are compared scrubbed on both sides: an eval item asked about another patient is still it.
    # One index of the evaluation questions serves records and pairs (scrubbing and embedding them is most of
    # an export's time when little feedback is new).
    evaluation = DuplicateIndex(embed, contamination)
    if records or pairs:
        evaluation.add([scrub(t) for t in eval_texts])
    records, removed_records = _clean(records, _record_question, evaluation, embed, near_duplicate)
    pairs, removed_pairs = _clean(pairs, _pair_question, evaluation, embed, near_duplicate)
    removed |= {"contaminated_records": removed_records[0], "contaminated_pairs": removed_pairs[0],
                "duplicate_records": removed_records[1], "duplicate_pairs": removed_pairs[1]}
    return records, pairs, removed


def _clean(items: list[dict], question, evaluation: DuplicateIndex, embed: Embedder | None,
           near_duplicate: float) -> tuple[list[dict], tuple[int, int]]:
    """Decontaminate (against ``evaluation``, the scrubbed evaluation questions), de-duplicate, scrub; returns
    the survivors and (contaminated, duplicates) counts.

    Scrubbing whole records, the costly step, runs on survivors only; it can make two texts
    equal (two patients' names become [NAME]), so exact duplicates are removed once more after it.
    """
    bad = evaluation.matches([scrub(question(x)) for x in items])
    kept = [x for x, b in zip(items, bad) if not b]
    unique = [kept[i] for i in keep_unique([_text(x) for x in kept], embed, near_duplicate)]
    scrubbed = [scrub_record(x) for x in unique]
    final = [scrubbed[i] for i in keep_unique([_text(x) for x in scrubbed], None, near_duplicate)]
    return final, (len(items) - len(kept), len(kept) - len(final))


def _record_question(r: dict) -> str:
    return f"{r['instruction']}\n{r['input']}".strip()


def _pair_question(p: dict) -> str:
    return p["prompt"]


def _text(x: dict) -> str:
    return "\n".join(x[k] for k in ("instruction", "input", "output", "prompt", "chosen", "rejected") if k in x)


def export(store: FeedbackStore, out: Path, pairs_out: Path | None = None, since: dt.datetime | None = None,
           eval_dir: Path = EVAL_DIR, embed: Embedder | None = lexical_embed, embedder: str = "lexical",
           reviewed_only: bool = False, skip: Callable[[dict], bool] | None = None) -> ExportResult:
    """Write a training snapshot from the store; returns (and saves as a manifest) what was written.

    ``skip`` leaves records and pairs out before decontamination and de-duplication (see ``build``).
    """
    out = Path(out)
    pairs_out = Path(pairs_out) if pairs_out else out.with_name(f"{out.stem}.pairs.jsonl")
    eval_texts = eval_questions(Path(eval_dir))
    messages = store.feedback_facts(since)
    records, pairs, removed = build(messages, store.clinician_hash, eval_texts, embed, THRESHOLDS[embedder],
                                    reviewed_only, skip)
    ids: dict[str, set[int]] = {"messages": set(), "ratings": set(), "reviews": set()}
    for r in records + pairs:
        f = r["meta"]["feedback_ids"]
        ids["messages"].update(f.get("messages", [f.get("message")]))
        ids["ratings"].update(f["ratings"])
        ids["reviews"].update(f["reviews"])
    result = ExportResult(
        out=str(out), pairs_out=str(pairs_out), records=len(records), pairs=len(pairs),
        records_sha256=write_jsonl(records, out), pairs_sha256=write_jsonl(pairs, pairs_out), embedder=embedder,
        since=as_utc(since).isoformat() if since else None, removed=removed,
        feedback_ids={k: sorted(i for i in v if i is not None) for k, v in ids.items()})
    manifest = out.with_name(f"{out.stem}.manifest.json")
    manifest.write_text(json.dumps(asdict(result), indent=2) + "\n", encoding="utf-8")
    return result


def parse_since(text: str | None) -> dt.datetime | None:
    """An ISO date or date-time; naive values are UTC.

    >>> parse_since("2026-11-01").isoformat()
    '2026-11-01T00:00:00+00:00'
    """
    if not text:
        return None
    try:
        return as_utc(dt.datetime.fromisoformat(text))
    except ValueError:
        raise OncoLoopError(f"--since {text!r} is not an ISO date; write e.g. 2026-11-01 or 2026-11-01T08:00") from None


@cli_command
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m feedback.export", description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path, help="Alpaca JSONL to write")
    parser.add_argument("--pairs", type=Path, help="preference pairs JSONL (default: <out stem>.pairs.jsonl)")
    parser.add_argument("--since", help="only feedback given or reviewed from this ISO date/time on")
    parser.add_argument("--eval-dir", type=Path, default=EVAL_DIR, help="evaluation sets to decontaminate against")
    parser.add_argument("--embedder", choices=("auto", "minilm", "lexical"), default="auto")
    parser.add_argument("--reviewed-only", action="store_true",
                        help="well-rated answers need a reviewer's approval too, not only corrections")
    args = parser.parse_args(argv)

    since = parse_since(args.since)
    embed, name = choose_embedder(args.embedder)
    result = export(FeedbackStore.open(), args.out, args.pairs, since, args.eval_dir, embed, name,
                    args.reviewed_only)
    print(f"{result.out}: {result.records} records, sha256 {result.records_sha256}")
    print(f"{result.pairs_out}: {result.pairs} pairs, sha256 {result.pairs_sha256}")
    print("removed: " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in result.removed.items())
          + f" (embedder: {result.embedder})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
