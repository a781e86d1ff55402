"""Measuring a PHI scrubber on a labelled set (``data/eval/detectors/phi_*.jsonl``).

A labelled record is ``{"text", "spans": [{"start", "end", "kind"}], "keep": [clinical terms]}``. The measures:

- **span recall**, overall and per kind: a span counts as removed when the scrubber's spans cover every letter
  and digit of it (a title such as ``Mrs`` in a name span may stay: it identifies no one). Covering part
  of a span ("Anil" of "Anil Kapoor") does not count;
- **overlap recall**: the looser measure, any overlap;
- **keep-terms kept**: the share of ``keep`` terms still present verbatim in the scrubbed text;
- **clean records untouched**: records with no span whose text the scrubber leaves unchanged;
- **records/s**: scrubbing the records one by one (no cache), as an export does.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from core.errors import OncoLoopError
from feedback.phi_rules import TITLE

_TITLE_WORD = re.compile(rf"\b{TITLE}\b\.?")


@dataclass
class PhiReport:
    """What :func:`evaluate` measured."""

    recall: float
    overlap_recall: float
    per_kind: dict[str, tuple[int, int]]  # kind -> (removed, total)
    keep_kept: float
    keep_total: int
    clean_untouched: float
    clean_total: int
    records_per_s: float
    records: int
    missed: list[tuple[str, str, str]] = field(default_factory=list)  # (record id, kind, span text)
    lost_keep: list[tuple[str, str]] = field(default_factory=list)  # (record id, term)

    def lines(self) -> list[str]:
        """The report as printed by ``python -m feedback.scrub --eval``."""
        removed = sum(r for r, _ in self.per_kind.values())
        total = sum(t for _, t in self.per_kind.values())
        out = [f"records: {self.records}, identifier spans: {total}",
               f"span recall (all letters and digits removed): {self.recall:.3f} ({removed}/{total}; target >= 0.98)",
               f"span recall (any overlap): {self.overlap_recall:.3f}",
               f"clinical terms kept: {self.keep_kept:.3f} (of {self.keep_total}; target >= 0.95)",
               f"records without identifiers left unchanged: {self.clean_untouched:.3f} (of {self.clean_total})",
               f"throughput: {self.records_per_s:.0f} records/s (one at a time, no cache; target >= 200)",
               "recall per kind (target >= 0.95 each):"]
        for kind, (r, t) in sorted(self.per_kind.items()):
            out.append(f"  {kind:<15} {r / t:.3f}  ({r}/{t})" + ("" if r / t >= 0.95 else "  BELOW TARGET"))
        return out


def read_phi_set(path: Path) -> list[dict]:
    """The labelled records of a PHI set, checked.

    Raises:
        OncoLoopError: unreadable file, a line that is not JSON, or a record without ``text``/``spans``, or a
            span whose offsets are outside the text.
    """
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise OncoLoopError(f"cannot read {path} ({e}); pass a labelled PHI JSONL file such as "
                            "data/eval/detectors/phi_dev.jsonl.")
    records = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            text, spans = rec["text"], rec.get("spans", [])
            if not isinstance(text, str) or not all(0 <= s["start"] < s["end"] <= len(text) and s["kind"]
                                                    for s in spans):
                raise ValueError("a span lies outside the text")
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
            raise OncoLoopError(f"{path}:{n} is not a labelled PHI record ({e!r}); each line needs "
                                '{"text": "...", "spans": [{"start": 0, "end": 4, "kind": "name"}], "keep": [...]}.')
        records.append(rec)
    if not records:
        raise OncoLoopError(f"{path} holds no records.")
    return records


def _needed(text: str, start: int, end: int) -> list[int]:
    """Offsets of the letters and digits of a span that must be covered (titles excepted)."""
    piece = _TITLE_WORD.sub(lambda m: " " * len(m.group(0)), text[start:end])
    return [start + i for i, c in enumerate(piece) if c.isalnum()]


def evaluate(records: list[dict], find: Callable[[str], list], scrub: Callable[[str], str]) -> PhiReport:
    """Measure a scrubber: ``find(text)`` gives spans (``.start``/``.end``), ``scrub(text)`` the scrubbed text."""
    per_kind: dict[str, list[int]] = {}
    overlap = 0
    missed, lost = [], []
    keep_total = keep_kept = clean_total = clean_same = 0
    for rec in records:
        text = rec["text"]
        covered = set()
        spans = find(text)
        for f in spans:
            covered.update(range(f.start, f.end))
        for s in rec.get("spans", []):
            counts = per_kind.setdefault(s["kind"], [0, 0])
            counts[1] += 1
            if all(i in covered for i in _needed(text, s["start"], s["end"])):
                counts[0] += 1
            else:
                missed.append((rec.get("id", "?"), s["kind"], text[s["start"]:s["end"]]))
            overlap += any(i in covered for i in range(s["start"], s["end"]))
        out = scrub(text)
        for term in rec.get("keep", []):
            keep_total += 1
            if term in out:
                keep_kept += 1
            else:
                lost.append((rec.get("id", "?"), term))
        if not rec.get("spans"):
            clean_total += 1
            clean_same += out == text
    start = time.perf_counter()
    for rec in records:
        scrub(rec["text"])
    elapsed = max(time.perf_counter() - start, 1e-9)
    total = sum(t for _, t in per_kind.values())
    removed = sum(r for r, _ in per_kind.values())
    return PhiReport(removed / max(total, 1), overlap / max(total, 1), {k: (r, t) for k, (r, t) in per_kind.items()},
                     keep_kept / max(keep_total, 1), keep_total, clean_same / max(clean_total, 1), clean_total,
                     len(records) / elapsed, len(records), missed, lost)
