"""PHI scrubbing: patient identifiers in free text become typed placeholders.

What is found, and how (rules, not a model, so every decision can be read here):

- ``[EMAIL]`` e-mail addresses;
- ``[ADDRESS]`` street addresses (number, capitalised words, a street suffix) and
  UK postcodes or US state + ZIP codes;
- ``[DOB]`` a date after "DOB", "date of birth", "born (on)"; ``[DATE]`` any other
  full date (day, month and year: dates tied to a person are identifiers too);
- ``[MRN]`` an identifier after "MRN", "hospital/NHS/record/unit number", "patient ID";
- ``[PHONE]`` digit groups with 9-15 digits in phone shapes (``07700 900123``,
  ``(555) 123-4567``, ``+44 20 7946 0958``), or 7 and more after "tel", "phone", "fax";
- ``[NAME]`` capitalised names after a title (Mr, Mrs, Ms, Miss, Mx, Dr, Prof) or
  after "patient", "pt", "named", "called", "name:" (two words at least there),
  names with a middle initial ("John Q. Sample"), and two or three capitalised words
  directly before another identifier ("Ann Other, MRN ...", "Ann Other (DOB ...").

A name with no such context ("saw John Smith today") is not found: the rules
trade that recall for never touching drug names, regimens and staging. The labelled
set in ``tests/feedback/phi_snippets.jsonl`` measures recall (>= 0.95 required) and
checks that ordinary clinical text ("stage II", "5-FU 400 mg/m2", "T2N0M0") is untouched.

>>> scrub("Mrs Jane Doe, MRN 4417823, DOB 14/03/1958: carboplatin AUC 5?")
'Mrs [NAME], MRN [MRN], DOB [DOB]: carboplatin AUC 5?'
"""

from __future__ import annotations

import re
from functools import lru_cache

_MONTH = (r"(?:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?|"
          r"Sep(?:t(?:ember)?)?|Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)")
_DATE = (rf"(?:\d{{1,2}}[/.-]\d{{1,2}}[/.-](?:\d{{4}}|\d{{2}})(?![\d/.-]*\d)"
         rf"|\d{{4}}-\d{{2}}-\d{{2}}"
         rf"|\d{{1,2}}(?:st|nd|rd|th)?\s+(?:of\s+)?{_MONTH}\.?,?\s+\d{{4}}"
         rf"|{_MONTH}\.?\s+\d{{1,2}}(?:st|nd|rd|th)?,?\s+\d{{4}})")
_NAME_WORD = r"(?:[A-Z](?:[a-z]+|'[A-Z][a-z]+)(?:-[A-Z][a-z]+)*|Mc[A-Z][a-z]+)"
_PARTICLE = r"(?:(?:van|von|de|der|del|da|di|le|la|al)\s+)"
# Capitalised words that follow "patient" in ordinary sentences and are not names.
_NOT_NAMES = {"With", "Has", "Had", "Is", "Was", "And", "On", "In", "Of", "The", "Stage", "Grade", "Who", "With",
              "Received", "Presents", "Presented", "Reports", "Reported", "Records", "Notes", "Information",
              "Type", "Phase", "Class", "Level", "Step", "Part", "Figure", "Table", "Section", "Vitamin", "Cycle",
              "Day", "Arm", "Group", "Cohort", "Version", "Appendix", "Schedule", "Regimen", "Option"}
_SUFFIX = (r"(?:Street|St|Road|Rd|Avenue|Ave|Lane|Ln|Drive|Dr|Close|Way|Court|Ct|Boulevard|Blvd|Place|Pl|"
           r"Terrace|Crescent|Gardens|Square|Sq|Row|Mews|Parkway|Pkwy|Highway|Hwy|Grove|Walk)")
_US_STATES = ("AL AK AZ AR CA CO CT DE FL GA HI ID IL IN IA KS KY LA ME MD MA MI MN MS MO MT NE NV NH NJ NM NY "
              "NC ND OH OK OR PA RI SC SD TN TX UT VT VA WA WV WI WY DC").split()

_STREET_SET = frozenset(_SUFFIX[3:-1].split("|"))
_MONTH_PREFIXES = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
# Each character's class as bytes (C-speed tests): digit -> "0", capital -> "A", small letter -> "a",
# other ASCII unchanged, anything else "?".
_SHAPE = bytes(48 if chr(i).isdigit() else 65 if chr(i).isupper() else 97 if chr(i).islower() else i
               for i in range(128)) + b"?" * 128


def _shape(text: str) -> bytes:
    return text.encode("ascii", "replace").translate(_SHAPE)


def _any(*needles: str, where: str = "text"):
    if where == "shape":
        encoded = tuple(n.encode() for n in needles)
        return lambda text, lower, shape: any(n in shape for n in encoded)
    if where == "lower":
        return lambda text, lower, shape: any(n in lower for n in needles)
    return lambda text, lower, shape: any(n in text for n in needles)


_WORDS = re.compile(r"[A-Za-z]+")


def _street_gate(text: str, lower: str, shape: bytes) -> bool:
    return not _STREET_SET.isdisjoint(_WORDS.findall(text))


# (placeholder, pattern, group to replace (0: the whole match), gate). A rule's regex runs only when
# its gate, a few substring tests on the text, its lower-case form or its character shape, says it
# could match: Python's re costs ~20 us per pattern on a 300-character text, the gates ~1 us, and
# an export scrubs hundreds of thousands of texts.
_RULES = [
    ("EMAIL", re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b"), 0, _any("@")),
    ("ADDRESS", re.compile(rf"\b\d{{1,5}}[A-Za-z]?\s+(?:[A-Z][a-z]+\s+){{1,3}}{_SUFFIX}\b\.?"), 0,
     _street_gate),
    ("ADDRESS", re.compile(r"\b[A-Z]{1,2}\d[A-Z\d]?\s?\d[A-Z]{2}\b"), 0, _any("0AA", where="shape")),  # postcode
    ("ADDRESS", re.compile(r"\b([A-Z]{2})\s+\d{5}(?:-\d{4})?\b"), 0, _any("AA 00000", where="shape")),  # US ZIP
    ("DOB", re.compile(rf"(?i:\b(?:DOB|D\.O\.B\.?|date\s+of\s+birth|birth\s*date|born(?:\s+on)?)"
                       rf"\s*(?:is\s+|was\s+|:\s*|-\s*)?)({_DATE})"), 1,
     _any("dob", "d.o.b", "birth", "born", where="lower")),
    ("DATE", re.compile(rf"\b{_DATE}"), 0,
     lambda text, lower, shape: b"0/0" in shape or b"0.0" in shape or b"0-0" in shape
     or (b"0000" in shape and any(m in lower for m in _MONTH_PREFIXES))),
    ("MRN", re.compile(r"(?i:\b(?:MRN|MR\s?#|MR\s+number|(?:medical\s+)?record\s+(?:number|no\.?)|"
                       r"hospital\s+(?:number|no\.?)|hosp\.?\s+no\.?|NHS\s+(?:number|no\.?)|unit\s+(?:number|no\.?)|"
                       r"chart\s+(?:number|no\.?)|(?:patient|pt)\s+ID|ID\s+number)"
                       r"\s*(?:is\s+|:\s*|#\s*|-\s*|no\.?\s*)?)([A-Z]{0,3}-?\d(?:\d|[ -](?=\d)){3,15})"), 1,
     lambda text, lower, shape: shape.count(b"0") >= 4
     and any(n in lower for n in ("mr", "record", "hosp", "nhs", "unit", "chart", "id"))),
    ("PHONE", re.compile(r"(?i:\b(?:tel|telephone|phone|mobile|mob|cell|fax)\.?\s*(?:no\.?|number)?\s*(?:is\s+|:\s*)?)"
                         r"(\+?(?:\d|\(\d)[\d\s().-]{4,18}\d)(?![\w/.-]?\d)"), 1,
     lambda text, lower, shape: shape.count(b"0") >= 7 and any(n in lower for n in ("tel", "phone", "mob", "cell", "fax"))),
    ("PHONE", re.compile(r"(?<![\w/.+-])(?:\+\d{1,3}[\s.-]?)?(?:\(\d{2,5}\)[\s.-]?)?\d{2,6}(?:[\s.-]\d{2,6}){0,3}"
                         r"(?![\w/.-]?\d)"), 0,
     lambda text, lower, shape: b"000" in shape and shape.count(b"0") >= 9),
    ("NAME", re.compile(rf"\b(?:Mr|Mrs|Ms|Miss|Mx|Dr|Prof|Professor)\.?\s+((?:{_PARTICLE}?{_NAME_WORD}\s+){{0,2}}"
                        rf"{_PARTICLE}?{_NAME_WORD})"), 1, _any("Mr", "Ms", "Miss", "Mx", "Dr", "Prof")),
    ("NAME", re.compile(r"\b([A-Z][a-z]+\s+[A-Z]\.\s+[A-Z][a-z]+(?:-[A-Z][a-z]+)?)\b"), 1,
     _any("a A. A", where="shape")),  # John Q. Sample
    ("NAME", re.compile(rf"(?i:\b(?:patient|pt|named|called|name\s*(?:is|:))\s*:?\s+)"
                        rf"((?:{_NAME_WORD}\s+){{1,2}}{_NAME_WORD})"), 1,
     _any("patient", "pt", "name", "called", where="lower")),
    # a name right before an identifier: "Ann Other, MRN 00990077", "Ann Other (DOB 01/02/1960)"
    ("NAME", re.compile(rf"(?<![\w-])((?:{_NAME_WORD}\s+){{1,2}}{_NAME_WORD})(?=\s*[,(;]\s*(?:MRN|DOB|D\.O\.B|"
                        rf"NHS\s+no|hospital\s+(?:number|no)|(?i:date\s+of\s+birth|born\s)))"), 1,
     _any("MRN", "DOB", "D.O.B", "NHS", "hospital", "birth", "born")),
]
_US_STATES = frozenset(_US_STATES)


def _phone_digits_ok(text: str, context: bool) -> bool:
    digits = sum(c.isdigit() for c in text)
    if context:  # after "tel", "phone": local numbers such as 555-0142 count too
        return 7 <= digits <= 15
    return 9 <= digits <= 15 and (not text.isdigit() or text.startswith("0"))


@lru_cache(maxsize=65_536)  # feedback repeats itself: the same question is often asked many times
def scrub(text: str) -> str:
    """``text`` with patient identifiers replaced by ``[NAME]``, ``[MRN]``, ``[DOB]`` and so on.

    >>> scrub("Call 07700 900123 or jane@example.com; lives at 42 Baker Street, London NW1 6XE.")
    'Call [PHONE] or [EMAIL]; lives at [ADDRESS], London [ADDRESS].'
    >>> scrub("Stage II, ECOG 1, T2N0M0: 5-FU 400 mg/m2 then 2400 mg/m2 over 46 hours.")
    'Stage II, ECOG 1, T2N0M0: 5-FU 400 mg/m2 then 2400 mg/m2 over 46 hours.'
    """
    if not text:
        return text
    lower, shape = text.lower(), _shape(text)
    for label, pattern, group, gate in _RULES:
        if gate(text, lower, shape):
            new = pattern.sub(lambda m: _replace(m, label, group), text)
            if new != text:
                text, lower, shape = new, new.lower(), _shape(new)
    return text


def _replace(m: re.Match, label: str, group: int) -> str:
    value = m.group(group)
    if label == "PHONE" and not _phone_digits_ok(value, context=group == 1):
        return m.group(0)
    if label == "NAME" and value.split()[0] in _NOT_NAMES:
        return m.group(0)
    if label == "ADDRESS" and m.re.groups == 1 and m.group(1) not in _US_STATES:
        return m.group(0)
    start, end = m.start(group) - m.start(0), m.end(group) - m.start(0)
    whole = m.group(0)
    return f"{whole[:start]}[{label}]{whole[end:]}"


def scrub_record(record: dict, fields: tuple[str, ...] = ("instruction", "input", "output", "prompt", "chosen",
                                                           "rejected")) -> dict:
    """A copy of an Alpaca record or preference pair with its text fields scrubbed (``meta`` untouched).

    >>> scrub_record({"instruction": "Dose for Mr Bob Stone?", "output": "See protocol.", "meta": {"id": 1}})
    {'instruction': 'Dose for Mr [NAME]?', 'output': 'See protocol.', 'meta': {'id': 1}}
    """
    return {k: scrub(v) if k in fields and isinstance(v, str) else v for k, v in record.items()}
