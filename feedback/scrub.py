"""PHI scrubbing: patient identifiers in free text become typed placeholders.

The one scrubber of the project: the gateway strips identifiers from chats and redacts them from answers
with it (``serve.guard``), the export scrubs training data with it (``feedback.export``), the approved-answers
index and the reviewed-answers panel hold only its output (``serve.retrieval``, ``ui.reviewed``), and the
logs of the gateway and the UI record scrubbed text. What it finds, and how, is in :mod:`feedback.phi`:
Presidio with spaCy's NER, configured for clinical text, plus the project's rules as extra recognisers.

Placeholders: ``[NAME]`` (patients and relatives; a title stays: ``Mrs [NAME]``), ``[DOB]`` (a date after
"DOB"/"born"), ``[DATE]``, ``[AGE]`` (over 89), ``[PHONE]``, ``[EMAIL]``, ``[ADDRESS]`` (streets, towns,
postcodes), ``[HOSPITAL]`` (hospitals and wards), ``[MRN]``, ``[ID]`` (NHS, CHI, SSN, passport, ID card,
insurance, account and device numbers), ``[URL]`` (web addresses, social handles) and ``[IP]``.

    python -m feedback.scrub < notes.txt > scrubbed.txt                          # line by line
    python -m feedback.scrub --eval data/eval/detectors/phi_test.jsonl            # recall, terms kept, records/s
    python -m feedback.scrub --eval data/eval/detectors/phi_dev.jsonl --engine all --show-missed

>>> scrub("Mrs Jane Doe, MRN 4417823, DOB 14/03/1958: carboplatin AUC 5?")
'Mrs [NAME], MRN [MRN], DOB [DOB]: carboplatin AUC 5?'
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
import threading
from functools import lru_cache
from pathlib import Path

from core.errors import OncoLoopError, cli_command
from feedback.phi_rules import TITLE, Found

PLACEHOLDER = {"name": "NAME", "relative_name": "NAME", "dob": "DOB", "date": "DATE", "age_over_89": "AGE",
               "phone": "PHONE", "email": "EMAIL", "address": "ADDRESS", "postcode": "ADDRESS",
               "hospital": "HOSPITAL", "mrn": "MRN", "url": "URL", "ip_address": "IP"}  # any other kind: ID
ENGINE = "oncoloop"  # the engine scrub() uses (feedback.phi.ENGINES)
CHUNK_CHARS = 20_000  # longer texts are scanned in pieces cut at white space (spaCy's and the rules' cost is linear)

_TITLE = re.compile(rf"\b{TITLE}\.?\s+")
_DOB_LABEL = re.compile(r"(?i)\b(?:DOB|D\.O\.B\.?|date\s+of\s+birth|birth\s*date|born(?:\s+on)?)\s*(?:is|was|:|-)?\s*$")
_lock = threading.Lock()


def placeholder(kind: str) -> str:
    """The placeholder a kind of identifier becomes (``name`` -> ``[NAME]``; number kinds -> ``[ID]``)."""
    return f"[{PLACEHOLDER.get(kind, 'ID')}]"


def _chunks(text: str) -> list[tuple[int, str]]:
    out, pos = [], 0
    while len(text) - pos > CHUNK_CHARS:
        cut = text.rfind(" ", pos + CHUNK_CHARS // 2, pos + CHUNK_CHARS)
        cut = cut if cut > pos else pos + CHUNK_CHARS
        out.append((pos, text[pos:cut]))
        pos = cut
    out.append((pos, text[pos:]))
    return out


def find_phi(text: str, engine: str = ENGINE) -> list[Found]:
    """The identifiers in ``text`` as sorted, non-overlapping spans; a leading title is left out of a name,
    and a date after "DOB" or "born" is of kind ``dob``.

    Raises:
        OncoLoopError: ``engine`` is unknown or its libraries are not installed.
    """
    from feedback import phi

    if not isinstance(text, str) or not text.strip():
        return []
    found: list[Found] = []
    with _lock:  # one spaCy pipeline per process, shared by the gateway's worker threads
        for offset, piece in _chunks(text):
            found += [Found(f.start + offset, f.end + offset, f.kind) for f in phi.find_phi(piece, engine)]
    out = []
    for f in found:
        if f.kind in ("name", "relative_name"):
            value = text[f.start:f.end]
            titles = list(_TITLE.finditer(value))  # "Call Mrs Doe's" -> "Doe": the title and what precedes stay
            start = f.start + titles[-1].end() if titles and titles[-1].end() < len(value) else f.start
            end = f.end - 2 if value.endswith(("'s", "’s")) and f.end - 2 > start else f.end
            f = Found(start, end, f.kind)
        if f.kind == "date" and _DOB_LABEL.search(text[max(0, f.start - 24):f.start]):
            f = Found(f.start, f.end, "dob")
        out.append(f)
    return out


def redact(text: str, spans: list[Found]) -> str:
    """``text`` with each span replaced by its placeholder.

    >>> redact("Ann Lee, 07700 900123", [Found(0, 7, "name"), Found(9, 21, "phone")])
    '[NAME], [PHONE]'
    """
    out, pos = [], 0
    for f in sorted(spans):
        if f.start < pos:
            continue
        out += [text[pos:f.start], placeholder(f.kind)]
        pos = f.end
    return "".join(out) + text[pos:]


@lru_cache(maxsize=65_536)  # feedback repeats itself: the same question is often asked many times
def scrub(text: str) -> str:
    """``text`` with patient identifiers replaced by ``[NAME]``, ``[MRN]``, ``[DOB]`` and so on.

    >>> scrub("Call 07700 900123 or jane@example.com; lives at 42 Baker Street, London NW1 6XE.")
    'Call [PHONE] or [EMAIL]; lives at [ADDRESS].'
    >>> scrub("Stage II, ECOG 1, T2N0M0: 5-FU 400 mg/m2 then 2400 mg/m2 over 46 hours.")
    'Stage II, ECOG 1, T2N0M0: 5-FU 400 mg/m2 then 2400 mg/m2 over 46 hours.'
    """
    if not text:
        return text
    return redact(text, find_phi(text))


def scrub_record(record: dict, fields: tuple[str, ...] = ("instruction", "input", "output", "prompt", "chosen",
                                                           "rejected")) -> dict:
    """A copy of an Alpaca record or preference pair with its text fields scrubbed (``meta`` untouched).

    >>> scrub_record({"instruction": "Dose for Mr Bob Stone?", "output": "See protocol.", "meta": {"id": 1}})
    {'instruction': 'Dose for Mr [NAME]?', 'output': 'See protocol.', 'meta': {'id': 1}}
    """
    return {k: scrub(v) if k in fields and isinstance(v, str) else v for k, v in record.items()}


class ScrubbingLogFilter(logging.Filter):
    """A logging filter that scrubs the message of warnings and errors (attached to the handlers of ``python -m
    serve`` and ``python -m ui``): those are the records that quote outside text (an engine's last log lines, an
    upstream error); info records are the project's own fixed messages (versions, ports) and pass as they are."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        try:
            message = record.getMessage()
        except Exception:  # a malformed record is the logging module's business, not ours
            return True
        record.msg, record.args = scrub(message), None
        return True


def scrub_logs() -> None:
    """Attach :class:`ScrubbingLogFilter` to the root logger's handlers (call after ``logging.basicConfig``)."""
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, ScrubbingLogFilter) for f in handler.filters):
            handler.addFilter(ScrubbingLogFilter())


# ---- the command line ---------------------------------------------------------------------------------

def _evaluate(path: Path, engine: str, show_missed: bool) -> None:
    from feedback.phi import analyzer
    from feedback.phi_eval import evaluate, read_phi_set

    records = read_phi_set(path)
    if engine != "rules":
        analyzer(engine)  # load before timing
    report = evaluate(records, lambda t: find_phi(t, engine), lambda t: redact(t, find_phi(t, engine)))
    print(f"PHI scrubber, engine {engine}, on {path}")
    print("\n".join(report.lines()))
    if show_missed:
        for rec_id, kind, value in report.missed:
            print(f"  missed {rec_id} {kind}: {value!r}")
        for rec_id, term in report.lost_keep:
            print(f"  lost clinical term {rec_id}: {term!r}")


@cli_command
def main(argv: list[str] | None = None) -> int:
    """``python -m feedback.scrub``: scrub stdin line by line, or measure the scrubber on a labelled set."""
    from feedback.phi import ENGINES

    parser = argparse.ArgumentParser(prog="python -m feedback.scrub",
                                     description="Scrub text lines from stdin, or measure the PHI scrubber.")
    parser.add_argument("--eval", type=Path, metavar="FILE",
                        help="a labelled PHI set (data/eval/detectors/phi_dev.jsonl or phi_test.jsonl)")
    parser.add_argument("--engine", default=ENGINE, choices=[*ENGINES, "all"],
                        help="with --eval: which scrubber to measure (default: %(default)s, the one in use)")
    parser.add_argument("--show-missed", action="store_true", help="with --eval: list missed spans and lost terms")
    args = parser.parse_args(argv)
    if args.eval is None:
        if sys.stdin is None or sys.stdin.isatty():
            raise OncoLoopError("give text on standard input (python -m feedback.scrub < notes.txt) "
                                "or --eval FILE to measure the scrubber.")
        for line in sys.stdin:
            end = "\n" if line.endswith("\n") else ""
            sys.stdout.write(redact(line.rstrip("\n"), find_phi(line.rstrip("\n"))) + end)
        return 0
    for engine in (ENGINES if args.engine == "all" else [args.engine]):
        _evaluate(args.eval, engine, args.show_missed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
