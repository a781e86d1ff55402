"""Regular-expression recognisers of patient identifiers: the scrubber's original rules and the context rules.

Two sets, both returning :class:`Found` spans (character offsets, end exclusive, and a kind):

- :func:`legacy_spans`: the rules ``feedback.scrub`` used alone before issue #15 (names with a title or
  "patient", MRNs after a label, dates, phones, e-mail and street addresses). They are kept as one of the
  recognisers of the combined scrubber and as the baseline of ``python -m feedback.scrub --eval --engine rules``.
- :func:`context_spans`: identifiers that a label or a shape gives away, in the many formats clinicians write
  (``passport YA1234567``, ``CHI 130950 7228``, ``SURNAME, Given``, ``aged 93``, ``Ward 7B``, ``ZIP 60614``,
  ``my son Jakub``). The statistical part (spaCy's named entities through Presidio) is in :mod:`feedback.phi`.

Rules are tuned on ``data/eval/detectors/phi_dev.jsonl`` only.
"""

from __future__ import annotations

import re
from typing import NamedTuple


class Found(NamedTuple):
    """One identifier found in a text: ``text[start:end]`` is of ``kind`` (``name``, ``mrn``, ``date`` ...)."""

    start: int
    end: int
    kind: str


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


_LEGACY_KIND = {"EMAIL": "email", "ADDRESS": "address", "DOB": "dob", "DATE": "date", "MRN": "mrn", "PHONE": "phone",
                "NAME": "name"}


def _legacy_ok(m: re.Match, label: str, group: int) -> bool:
    value = m.group(group)
    if label == "PHONE" and not _phone_digits_ok(value, context=group == 1):
        return False
    if label == "NAME" and value.split()[0] in _NOT_NAMES:
        return False
    if label == "ADDRESS" and m.re.groups == 1 and m.group(1) not in _US_STATES:
        return False
    return True


def legacy_spans(text: str) -> list[Found]:
    """The identifiers the original rules find (earlier rules win where two overlap).

    >>> legacy_spans("Mrs Jane Doe, MRN 4417823")
    [Found(start=4, end=12, kind='name'), Found(start=18, end=25, kind='mrn')]
    """
    if not text:
        return []
    lower, shape = text.lower(), _shape(text)
    found: list[Found] = []
    for label, pattern, group, gate in _RULES:
        if not gate(text, lower, shape):
            continue
        for m in pattern.finditer(text):
            s, e = m.span(group)
            if e > s and _legacy_ok(m, label, group) and not any(f.start < e and s < f.end for f in found):
                found.append(Found(s, e, _LEGACY_KIND[label]))
    return sorted(found)


# ---- context rules: identifiers a label, a cue word or a shape gives away --------------------------------

_I = re.IGNORECASE
# An identifier value: a token with a digit in it (letters, digits, - / .), or digit groups split by single
# spaces ("130950 7228", "MCD 4409 8812 01"); an optional short letter prefix ("MCD ", "SJH ").
# more groups after it: digits ("2428 77103 1-2"), an issue number ("3301 66425 2 / 1"), a check letter ("45X 882 117 A")
_ID_VALUE = (r"(?:[A-Z]{2,4}\s)?(?=[A-Za-z0-9/.-]*\d)[A-Za-z0-9][A-Za-z0-9/.-]*[A-Za-z0-9]"
             r"(?:\s(?:(?=\d)\d[0-9A-Za-z-]{0,5}(?<!-)|/\s?\d{1,2}|[A-Z](?![\w'’]))(?![A-Za-z0-9/.-]*[a-z]))*")
# label words -> kind; between label and value: up to three short filler words ("no.", "number", "is",
# "(Italian)", "ID", "member")
_LABELS = [
    ("nhs_number", r"NHS(?:\s+(?:no|number|num))?"),
    ("chi_number", r"CHI(?:\s+(?:no|number))?"),
    ("ssn", r"SSN|social\s+security(?:\s+(?:no|number))?"),
    ("mrn", r"MRN|MR\s?#|hosp(?:ital)?\.?\s+(?:no|number|num)|unit\s+(?:no|number)|(?:medical\s+)?record\s+(?:no|number)|"
            r"chart\s+(?:no|number)|patient\s+(?:ID|number)|case\s+(?:no|number)|hospital\s+ID|K\s?number"),
    ("passport", r"passport(?:\s+(?:no|number))?"),
    ("id_card", r"(?:national\s+)?ID(?:\s+card)?(?:\s+(?:no|number))?|NIN|Personalausweis|PESEL|Aadhaar|PPS(?:N)?|"
                r"driv(?:ing|er'?s)\s+licen[cs]e(?:\s+(?:no|number))?|licen[cs]e\s+(?:no|number)|state\s+ID|"
                r"registration\s+card|residence\s+permit|DNI|NIE|BSN|codice\s+fiscale|SIN|TFN|EHIC|green\s+card"),
    ("insurance_id", r"(?:insurance|insurer|policy|member(?:ship)?|mem(?:b)?|subscriber|Medicare|Medicaid|MBI|plan|group|"
                     r"cert(?:ificate)?|medical\s+(?:card|aid)|GMS(?:\s+card)?|health\s+insurance|"
                     r"BUPA|AXA(?:\s+PPP)?|Aetna|Cigna|Kaiser|Humana|Vitality|Allianz|Aviva|WPA|Simplyhealth|Anthem|"
                     r"UHC|UnitedHealthcare|BCBS|Blue\s+(?:Cross|Shield)|Tricare|Laya|Vhi|Irish\s+Life(?:\s+Health)?|"
                     r"HCF|NIB|Medibank|Discovery(?:\s+Health)?|OHIP|RAMQ|AHCIP|ECHS|CGHS|PMJAY|GHIC)"
                     r"(?:\s+(?:ID|no|number|#|MBI|card))?"),
    ("account", r"(?:bank\s+)?(?:account|acct|a/c)(?:\s+(?:no|number|#))?|IBAN|sort\s+code|roll\s+(?:no|number)|"
                r"card\s+(?:no|number)|BIC|routing\s+(?:no|number)"),
    ("device_id", r"serial(?:\s+(?:no|number))?|S/?N|asset(?:\s+(?:no|number|tag))?|lot(?:/serial)?|VIN|IMEI|"
                  r"(?:vehicle\s+)?reg(?:istration)?(?:\s+(?:no|number|plate))?|number\s+plate|model\s+no"),
]
_FILLER = r"(?:\s*(?:[:#|]|no\.?|number|num|is|was|of|ID|card|\([A-Za-z]{2,12}\))\s*){0,3}"
_LABELLED = [(kind, re.compile(rf"\b(?:{label})\b\.?{_FILLER}\s*(?P<v>{_ID_VALUE})", _I)) for kind, label in _LABELS]
_LABELLED_BEFORE = re.compile(rf"(?P<v>{_ID_VALUE})\s+\((?:{'|'.join(l for _, l in _LABELS)})\)", _I)

# shapes that are identifiers without a label
_SHAPES = [
    ("email", re.compile(r"(?P<v>[\w.+-]+@[\w-]+(?:\.[\w-]+)*)")),
    ("url", re.compile(r"(?P<v>\b(?:https?://|www\.)[^\s,;)>\]]+[^\s,;.)>\]])", _I)),
    ("url", re.compile(r"(?P<v>\b[\w-]+(?:\.[\w-]+)*\.(?:com|org|net|edu|gov|io|co\.uk|org\.uk|ac\.uk|nhs\.uk|ie|no|"
                       r"de|fr|nl|es|it|au|ca|us|uk|info|me|example)(?:/[^\s,;)]*[^\s,;.)])?)(?![\w@])", _I)),
    ("url", re.compile(r"(?<![\w@.])(?P<v>@[A-Za-z0-9_](?:[A-Za-z0-9_.]*[A-Za-z0-9_]){2,})")),  # social handle
    ("ip_address", re.compile(r"(?<![\d.])(?P<v>(?:25[0-5]|2[0-4]\d|1?\d?\d)(?:\.(?:25[0-5]|2[0-4]\d|1?\d?\d)){3})"
                              r"(?![\d.]*\d)")),
    ("ip_address", re.compile(r"(?<![\w:])(?P<v>(?:[0-9a-f]{1,4}:){2,7}:?[0-9a-f]{0,4}(?::[0-9a-f]{1,4})*)(?![\w:])", _I)),
    ("ssn", re.compile(r"(?<![\w-])(?P<v>\d{3}-\d{2}-\d{4}|\d{3}\s\d{2}\s\d{4})(?![\w-])")),
    ("phone", re.compile(r"(?<![\w/+.])(?P<v>(?:\+\d{1,3}[\s.-]?)?(?:\(\d{2,5}\)[\s.-]?)?\d{2,5}(?:[\s.-]\d{2,6}){1,4})"
                         r"(?![\w/.-]?\d)")),
    ("phone", re.compile(r"(?<![\w/+.])(?P<v>\+\d{1,3}[\s.-]?\(?\d[\d\s().-]{6,16}\d)(?![\w/.-]?\d)")),
    ("postcode", re.compile(r"\b(?P<v>(?:GIR|[A-Z]{1,2}\d[A-Z\d]?)\s?\d[ABD-HJLNP-UW-Z]{2})\b")),
    ("postcode", re.compile(r"(?:\b(?:ZIP|zip\s?code|postcode)\s*:?\s*|\b(?:A[LKZR]|C[AOT]|D[EC]|FL|GA|HI|I[DLNA]|K[SY]|"
                            r"LA|M[EDAINSOT]|N[EVHJMYCD]|O[HKR]|PA|RI|S[CD]|T[NX]|UT|V[TA]|W[AVIY]),?\s+)"
                            r"(?P<v>\d{5}(?:-\d{4})?)\b")),
    ("device_id", re.compile(r"\b(?P<v>[A-Z]{2}\d{2}\s?[A-Z]{3})\b")),  # UK vehicle registration
    ("device_id", re.compile(r"\b(?P<v>[A-HJ-NPR-Z0-9]{17})\b")),  # VIN (checked for digits and letters below)
    ("hospital", re.compile(r"\b(?P<v>Ward\s+\d{1,2}[A-Z]?|(?:Ward|Unit|Bay)\s+[A-Z][a-z]+\s+Ward)\b")),
]

_MONTHS = (r"(?:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?|Sep(?:t(?:ember)?)?|"
           r"Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)")
_DATES = [
    re.compile(rf"\b(?P<v>\d{{1,2}}(?:st|nd|rd|th)?[\s-]+(?:of\s+)?{_MONTHS}\.?,?[\s-]+(?:\d{{4}}|\d{{2}}))\b", _I),
    re.compile(rf"\b(?P<v>{_MONTHS}\.?\s+\d{{1,2}}(?:st|nd|rd|th)?,?\s+\d{{4}})\b", _I),
    re.compile(r"(?<![\w/.-])(?P<v>\d{1,2}[/.-]\d{1,2}[/.-](?:\d{4}|\d{2}))(?![\w/.-]*\d)"),
    re.compile(r"(?<![\w-])(?P<v>(?:19|20)\d{2}[-/.](?:0?[1-9]|1[0-2])[-/.](?:0?[1-9]|[12]\d|3[01]))(?![\w-])"),
    re.compile(r"(?<![\w-])(?P<v>(?:19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01]))(?![\w-])"),  # 19570303
    # a day and a month without the year ("admitted 3rd Jan", "seen on 14 March", "Jan 3rd"): still a date of the
    # patient's care; the month capitalised, so "you may 2" is not one
    re.compile(rf"(?<![\w/.-])(?P<v>\d{{1,2}}(?:st|nd|rd|th)?\s+(?:of\s+)?{_MONTHS}\.?)(?![\w-]|\s+\d)"),
    re.compile(rf"(?<![\w/.-])(?P<v>{_MONTHS}\.?\s+\d{{1,2}}(?:st|nd|rd|th)?)"
               r"(?![\w/.:-]|\s*(?:mg|mcg|ml|%|units?|tablets?|cycles?|doses?)\b)"),
]
# a day and a month in figures where a cue or a time says it is a date: "Appt 14/03 09:30", "02/05 at 14:00",
# "due 10/22"; not UK durations ("review 2/12" = two months, "3/52" = three weeks, "5/7" = five days)
_SHORT_DATES = [
    re.compile(r"(?i:\b(?:on|appt|appointment|due|dated?|booked(?:\s+for)?|until|till|from|starts?|started|since)\s+)"
               r"(?P<v>(?:0?[1-9]|[12]\d|3[01])/(?:0?[1-9]|1[0-2]|2[0-9]))(?![\w/.-]?\d)"),
    re.compile(r"(?<![\w/.-])(?P<v>(?:0?[1-9]|[12]\d|3[01])/(?:0?[1-9]|1[0-2]))(?=,?\s+(?:at\s+)?\d{1,2}[:.]\d{2}\b)"),
]
_AGE_WORDS = (r"(?:ninety|one\s+hundred)(?:[\s-](?:one|two|three|four|five|six|seven|eight|nine))?")
_AGES = [
    re.compile(r"(?<![\w.])(?P<v>(?:9\d|1[01]\d)\s*(?:-?\s*(?:years?|yrs?)(?:[\s-]old)?|y/?o\b|yo\b|-?year-old|yr-old|"
               r"y\.o\.))", _I),
    re.compile(r"\b(?P<v>aged\s+(?:9\d|1[01]\d))\b", _I),
    re.compile(r"\b(?P<v>aet(?:at)?\.?\s+(?:9\d|1[01]\d))\b", _I),  # Latin "aetatis" in clinical letters: "aet 94"
    re.compile(r"\b(?:age|turned|turns|is\s+now|now)\s*:?\s*(?P<v>9\d|1[01]\d)\b(?!\s*(?:%|mg|mmol|kg|bpm|/|mL|cm))", _I),
    re.compile(rf"\b(?P<v>{_AGE_WORDS}(?:[\s-]years?)?[\s-]?(?:year[\s-])?old)\b", _I),
    re.compile(rf"\b(?P<v>aged\s+{_AGE_WORDS})\b", _I),
]

# ---- names ----
_UP = "A-ZÀ-ÖØ-ÞĀĂĄĆĈĊČĎĐĒĔĖĘĚĜĞĠĢĤĦĨĪĬĮİĴĶĹĻĽĿŁŃŅŇŊŌŎŐŒŔŖŘŚŜŞŠŢŤŦŨŪŬŮŰŲŴŶŸŹŻŽ"
_LOW = "a-zß-öø-ÿāăąćĉċčďđēĕėęěĝğġģĥħĩīĭįıĵķĺļľŀłńņňŋōŏőœŕŗřśŝşšţťŧũūŭůűųŵŷźżž"
# a capitalised name word with at least one small letter: "Jane", "O'Brien", "McAllister", "Adebayo-Smith"
_NAME_TOKEN = (rf"(?:(?:[{_UP}]['’])?[{_UP}][{_LOW}]*[{_LOW}](?:[{_UP}][{_LOW}]+)?"
               rf"(?:-[{_UP}][{_LOW}'’]*[{_LOW}])*)")
_UPPER_TOKEN = rf"(?:[{_UP}][{_UP}'’]*[{_UP}](?:-[{_UP}][{_UP}'’]+)*)"
_PARTICLES = r"(?:(?:van|von|de|der|den|del|da|di|le|la|al|el|bin|ibn|Ní|Nic|Mac|O')\s+)"
# titles, English and others seen in UK, Irish and international clinics, religious and military ones: "Smt. Lakshmi
# Iyer", "Dhr. Sjoerd Bakker", "Pani Anna Nowak", "Sister Nomvula", "Lt Col Marcus Reid". A title identifies no one:
# the scrubber leaves it before [NAME] (feedback.scrub) and the evaluation does not count it (feedback.phi_eval)
TITLE = _TITLE = (r"(?:Mr|Mrs|Ms|Miss|Mx|Dr|Prof|Professor|Sr|Sra|Srta|Rev|Revd|Sir|Dame|Lady|Lord|Mister|Missus|Sister|"
          r"Smt|Shri|Shrimati|Sri|Kumari|Pani|Mevr|Mevrouw|Dhr|Herr|Frau|Dna|Doña|Dona|Sig|Signora|Signor|Mme|Mlle|"
          r"Madame|Monsieur|Aunty|Auntie|Aunt|Uncle|Rabbi|Imam|Pastor|Father|Fr|Canon|Sheikh|Alhaji|Lt|Col|Maj|Capt|Sgt|Cpl|Pte|Brig|Cllr)")
# SURNAME, Given (Given): "ANAND, Deepa", "O'BRIEN, Siobhan", "van der Berg, Pieter"
_SURNAME_GIVEN = re.compile(rf"(?<![\w-])(?P<v>{_PARTICLES}?(?:{_UPPER_TOKEN}|{_PARTICLES}{_NAME_TOKEN}),\s+{_NAME_TOKEN}"
                            rf"(?:\s+{_NAME_TOKEN})?)(?!\w)")
_NAMES = [
    # title + name: "Mrs Lynch", "Dr. Helen Achebe"
    ("name", re.compile(rf"\b(?P<v>{_TITLE}\.?\s+(?:{_TITLE}\.?\s+)?(?:{_PARTICLES}?{_NAME_TOKEN}\s+){{0,2}}"
                        rf"{_PARTICLES}?{_NAME_TOKEN})")),
    ("name", _SURNAME_GIVEN),
    # two or three capitalised words right before an identifier or an age: "Euan Gray CHI ...",
    # "Winifred Ashby, aged 99", "Lucy Tremaine, NHS ..."
    ("name", re.compile(rf"(?<![\w-])(?P<v>{_NAME_TOKEN}\s+{_PARTICLES}?{_NAME_TOKEN}(?:\s+{_NAME_TOKEN})?)(?=\s*[,(;:-]?\s*"
                        r"\b(?:CHI|NHS|MRN|SSN|DOB|D\.O\.B|aged?\b|born|hosp|hospital\s+(?:no|number)|passport|"
                        r"\d{1,2}[/.-]\d|\d{2,3}\s?(?:y/?o|yo|years?\s+old)))")),
    # surname, given in lower case at the start of a message: "mcintyre, alison ph ..."
    ("name", re.compile(r"^(?P<v>[a-z][a-z'’-]+,\s+[a-z][a-z'’-]+)\b(?=\s+(?:ph|tel|dob|mrn|nhs|chi|hosp|aged?|\d))")),
]
_RELATIVE = (r"(?:son|daughter|wife|husband|partner|brother|sister|mother|father|mum|mom|mam|mummy|dad|daddy|nan|nana|"
             r"gran|granny|grandma|grandmother|grandad|granddad|grandpa|grandfather|grandson|granddaughter|niece|nephew|"
             r"aunt|auntie|aunty|uncle|cousin|fianc[eé]e?|girlfriend|boyfriend|stepson|stepdaughter|carer|NOK|"
             r"next\s+of\s+kin|friend|neighbour|neighbor|spouse)")
_RELATIVE_NAME = re.compile(rf"(?i:\b{_RELATIVE}(?:'s)?,?(?:\s+(?:is|called|named|was))?)\s*,?\s+"
                            rf"(?P<v>{_PARTICLES}?{_NAME_TOKEN}(?:\s+{_PARTICLES}?{_NAME_TOKEN}){{0,2}})")
# cue words before a name in lower or mixed case: "im sara", "my pt john o'connor", "payee Mohammed Iqbal"
_CUE_NAME = re.compile(r"(?:^|(?<=[\s(,;:]))(?:i'?m|i\s+am|my\s+name\s+is|name\s*:|(?:my\s+)?(?:pt|patient)|payee|"
                       r"this\s+is|it'?s|called|named|re:?|for|from|sign(?:ed)?\s*:?|regards,?|thanks,?)\s+"
                       r"(?P<v>[^\W\d_][\w'’]*(?:-[^\W\d_][\w'’]+)*(?:\s+[^\W\d_][\w'’]*(?:-[^\W\d_][\w'’]+)*){0,2})", _I)

# hospitals named without "Hospital" are the gazetteer's (feedback/phi_places.txt, feedback.phi_general)
_HOSPITALS = [
    re.compile(r"\b(?P<v>(?:St\.?\s+|Saint\s+)?(?:[A-Z][\w'’-]+\s+){1,4}(?:Hospitals?|Infirmary|Hospice|Medical\s+Cent(?:re|er)|"
               r"Cancer\s+(?:Cent(?:re|er)|Institute|Hospital)|Health\s+Cent(?:re|er)|Clinic|Care\s+Home|Nursing\s+Home|"
               r"Surgery|Oncology\s+Cent(?:re|er)|University\s+Hospital|General\s+Hospital)"
               r"(?:\s+of\s+(?:[A-Z][\w'-]+\s?){1,3})?)"),
    re.compile(r"\b(?P<v>St\.?\s+[A-Z][a-z]+'s)(?!\s+(?:disease|syndrome|wort))"),
]

# ---- addresses ----
_STREET = (r"(?:Street|St|Road|Rd|Avenue|Ave|Lane|Ln|Drive|Dr|Close|Way|Court|Ct|Boulevard|Blvd|Place|Pl|Terrace|"
           r"Crescent|Cres|Gardens|Gdns|Square|Sq|Row|Mews|Parkway|Pkwy|Highway|Hwy|Grove|Walk|View|Hill|Rise|Park|"
           r"Green|Vale|Yard|Wharf|Quay|Parade|Broadway|Circle|Cir|Trail|Path|Strasse|Straße|Weg|Platz|Gasse|Rue|Via|"
           r"Calle|Chome)")
_CAP = r"[A-Z][\w'’-]*"
_ADDRESSES = [
    # [house name / flat,] number + street [, town[, town]][, ST]
    re.compile(rf"(?P<v>(?:(?:Flat|Apt|Apartment|Unit|Suite)\s+\d+\w?,?\s+|(?:The\s+)?(?:{_CAP}\s+){{0,3}}"
               rf"(?:House|Cottage|Farm|Lodge|Forge|Barn|Mill|Court|Manor|Hall|Home|Mansions|Flats),\s+)?"
               rf"(?:\d{{1,4}}[A-Za-z]?/)?\d{{1,5}}[A-Za-z]?(?:-\d{{1,4}})*,?\s+(?:{_CAP}\s+){{0,3}}{_STREET}\b\.?"
               rf"(?:,?\s+(?!(?:{_STREET})\b){_CAP}(?:\s+{_CAP}){{0,2}}){{0,2}}(?:,?\s+[A-Z]{{2}}(?=[\s,]+\d{{5}}))?)"),
    # house name / flat + street name without number: "The Old Forge, Church Lane, Little Brampton"
    re.compile(rf"(?P<v>(?:(?:Flat|Apt|Apartment)\s+\d+\w?|(?:The\s+)?(?:{_CAP}\s+){{1,3}}(?:Court|House|Cottage|Forge|Farm|"
               rf"Lodge|Barn|Mill|Manor|Hall|Care\s+Home|Nursing\s+Home)),\s+(?:\d{{1,5}}\s+)?(?:{_CAP}\s+){{1,3}}{_STREET}\b"
               rf"(?:,\s+{_CAP}(?:\s+{_CAP}){{0,2}}){{0,2}})"),
    # Japanese style: "2-14-3 Minami-Aoyama, Minato-ku, Tokyo"
    re.compile(r"(?P<v>\b\d{1,4}(?:-\d{1,4}){1,3}\s+[A-Z][\w-]+(?:,\s+[A-Z][\w-]+){1,3})"),
]

_CLINICAL_ID = re.compile(r"^(?:NCT\d{8}|ISRCTN\d+|EudraCT|ICD-?\d+|KEYNOTE-?\d+|CheckMate-?\d+|IMpower\d+|"
                          r"DESTINY[\w-]*|[A-Z]{2,}\d{2,3}|c\.\S+|p\.\S+|\d{4}/\d|pT\w+|HbA1c|[A-Z]\d{2}(?:\.\d+)?|"
                          # radiopharmaceuticals: an isotope and its carrier ("177Lu-PSMA-617", "68Ga-DOTATATE")
                          r"\d{1,3}(?:Lu|Ga|Ra|Tc|In|Sm|Sr|Cu|Zr|F|I|Y)-[A-Za-z][\w-]*)$")
_STOP = frozenset("""a an the and or but if of on in at to for from with without by as is was are were be been being am
i im i'm me my mine we our you your he him his she her they them their it its this that these those there here what
which who whom whose when where why how not no yes ok okay so very really just still also too now then today tonight
tomorrow yesterday again ever never always sometimes please thanks thank hi hello dear sorry worried scared anxious
feeling feel getting got having had has have do does did doing done going gone go can could would should will shall
may might must about after before since during while until up down over under out off into onto across around
back home well unwell fine better worse new old more less much many some any all both each every other another one
two three four five six seven eight nine ten first second third last next few lot lots bit little big small high low
day days week weeks month months year years morning evening night chemo chemotherapy treatment cycle cancer
pain sick tired help question asking ask told said says wants want need needs due booked seen being
pregnant diabetic allergic sure unsure afraid terrified nervous exhausted unwell poorly awake alone home here
there hoping trying wondering struggling live living lives alive dying okay great good bad ready able unable
currently already literally basically actually only even bit quite""".split())


# Words that spaCy's small model takes for names or organisations in clinical text: eponyms, scores, regimens,
# devices and procedures. A NER finding left with no name-like word once these (and drug-like, gene-like and
# acronym words) are set aside is dropped; a title before a word ("Mrs Lynch") is found by the rules.
_CLINICAL_WORDS = frozenset("""
addison addisonian alport askin auer barcelona barrett bence binet birbeck birt bismuth blumer bloom bowen breslow
brudzinski burkitt calvert caprini castleman charcot charlson cheyne chvostek clark cockcroft conn courvoisier cowden
crohn cullen cushing denver denys dubé dube drash dukes durie eaton elston ellis evans ewing fanconi fraumeni fuhrman
gardner gault geneva gleason glasgow gorlin graves grey groshong halsted hartmann hashimoto hickman hippel hodgkin
hogg homans horner hurthle hürthle irish ivor jeghers jones joseph kaposi karnofsky kernig khorana klatskin
krukenberg kussmaul lambert lansky lewis lhermitte li lindau lugano lynch madden masaoka mary mckeown meigs memorial
merkel milan mohs muir murphy nottingham nuys okuda ommaya paget pancoast patey peutz phalen philadelphia pleurx pugh
pel ebstein bing neel rai reed richardson richter romberg ryle salmon schnitzler sezary sézary sister sternberg stokes tinel torre
trendelenburg trousseau turcot turner valsalva virchow von waldenstrom waldenström wells wermer wertheim whipple
wilms zollinger ellison child ann arbor recist iwcll cheson astler coller pap papanicolaou schiller duval wright
flexner wintersteiner cairo bishop beck stage grade type class score index level phase cycle day week syndrome
disease tumour tumor lymphoma sarcoma carcinoma cell cells nodule node line procedure chromosome triad sign formula
criteria scale protocol regimen trial arm cohort mild moderate severe acute chronic primary secondary metastatic
oligometastatic advanced early late localised localized recurrent refractory relapsed adjuvant neoadjuvant palliative
""".split()) | frozenset(
    # brand names of anticancer and supportive-care drugs (title case in clinical text, so NER takes them for names)
    """keytruda opdivo yervoy tecentriq imfinzi bavencio libtayo jemperli herceptin perjeta phesgo kadcyla enhertu
trodelvy padcev tivdak tagrisso tarceva iressa giotrif vizimpro alecensa alunbrig lorbrena xalkori tafinlar mekinist
braftovi mektovi lumakras krazati retevmo gavreto tepmetko tabrecta rozlytrek vitrakvi lynparza zejula rubraca talzenna
ibrance kisqali verzenio piqray truqap orserdu xtandi zytiga erleada nubeqa xofigo pluvicto lupron eligard zoladex prostap
decapeptyl firmagon faslodex arimidex femara aromasin nolvadex avastin erbitux vectibix zaltrap lonsurf stivarga xeloda
tukysa nerlynx tykerb imbruvica calquence brukinsa jaypirca venclexta venclyxto revlimid pomalyst imnovid thalomid velcade
kyprolis ninlaro darzalex sarclisa empliciti xpovio tecvayli elrexfio talvey blincyto besponsa mylotarg vidaza dacogen
onureg xospata rydapt idhifa tibsovo gleevec glivec sprycel tasigna bosulif iclusig scemblix jakafi jakavi inrebic rituxan
mabthera truxima gazyva adcetris polivy zynlonta columvi epkinly yescarta kymriah tecartus breyanzi abecma carvykti sutent
nexavar votrient inlyta cabometyx lenvima afinitor fotivda welireg temodal gliadel caelyx doxil abraxane halaven jevtana
taxotere taxol gemzar alimta navelbine hycamtin onivyde campto eloxatin paraplatin platinol cytoxan adriamycin ellence
mitomycin zinecard neulasta neupogen zarzio nivestim accofil lonquex aranesp epogen eprex retacrit zometa xgeva prolia
aredia bonefos emend akynzeo kytril zofran aloxi varubi clexane fragmin innohep xarelto eliquis lixiana pradaxa
oramorph oxynorm oxycontin zomorph sevredol durogesic abstral instanyl palexia creon movicol fybogel laxido lactulose
dulcolax senokot buscopan difflin difflam gelclair mucositis fortisip ensure calogen duraphat""".split()) | frozenset(
    # chemotherapy regimens written as words in capitals ("CHUM, FOLFIRI + bevacizumab" is no "SURNAME, GIVEN")
    # (not the regimens that are also words or names: ICE, RICE, FLAG, BEAM, IDA, DARA)
    """folfox folfiri folfirinox folfoxiri capox xelox capiri xeliri gemox gemcap abvd beacopp beacopdac chop rchop
cvp rcvp ecf eox ecx flot bep dhap eshap gdp mvac ddmvac cmf fec tch tchp vdc pcv mopp chlvpp decf tpf repoch
cvad ivac codox ddac gemcarbo carbotax vtd vrd krd""".split()) | frozenset(
    # gene-expression tests and assays written like names ("Brennan, Oncotype DX" is no "Surname, Given")
    "oncotype mammaprint prosigna endopredict decipher prolaris guardant foundationone signatera".split())
_DRUGLIKE = re.compile(r"(?i)(?:mab|nib|lib|platin|taxel|rubicin|mycin|stine|parib|ciclib|lisib|zomib|lutamide|relix|"
                       r"relin|trozole|stane|fene|fen|tecan|trexate|citabine|uracil|[aeio]mide|sone|solone|micin|vir|cillin|"
                       r"floxacin|azole|setron|pitant|parin|xaban|gatran|dronate|olol|pril|sartan|dipine|itis|oma|"
                       r"emia|aemia|osis|ectomy|otomy|plasty|scopy|gram|graphy)$")
def _valid_mod11(digits: str) -> bool:
    total = sum(int(d) * w for d, w in zip(digits[:9], range(10, 1, -1)))
    check = 11 - total % 11
    return (0 if check == 11 else check) == int(digits[9]) if check != 10 else False


def _name_words_ok(value: str) -> bool:
    words = [w.strip("'’,.").lower() for w in value.split()]
    return bool(words) and words[0] not in _STOP and not any(w.endswith("ing") for w in words)


_CUE_WORD = re.compile(rf"^(?:[{_UP}]?[{_LOW}'’]+(?:-[{_UP}]?[{_LOW}'’]+)*|(?:Mc|Mac|O'|O’)[{_UP}][{_LOW}]+)$")
# words that follow an eponym, not a person: "Sister Mary Joseph nodule", "Lynch syndrome"
_EPONYM_NEXT = re.compile(r"^\W{0,2}(?:nodule|node|sign|syndrome|disease|lymphoma|sarcoma|tumou?r|cell|cells|carcinoma|"
                          r"triad|criteria|score|scale|grade|classification|formula|procedure|line|catheter|wort|"
                          r"macroglobulin\w*|thickness|level|staging|phenomenon|reaction|manoeuvre|maneuver|protocol)\b", _I)


def _clinical_word(word: str) -> bool:
    w = word.strip("'’.,").lower()
    return w in _CLINICAL_WORDS or w.removesuffix("'s") in _CLINICAL_WORDS or bool(_DRUGLIKE.search(w))


def _trim_cue_name(value: str) -> str:
    """The leading name words of a cue match ("sara and my" -> "sara"; "FOLFIRINOX" -> "")."""
    kept = []
    for w in value.split():
        lw = w.strip("'’,.").lower()
        if (lw in _STOP or lw.endswith(("ing", "ed")) or not _CUE_WORD.match(w.strip(",.")) or _clinical_word(w)):
            break
        kept.append(w)
    return " ".join(kept)


def _add(found: list[Found], m: re.Match, kind: str, group: str = "v") -> None:
    s, e = m.span(group)
    value = m.group(group).rstrip(".,;:")
    e = s + len(value)
    if kind in ("name", "relative_name"):
        if _EPONYM_NEXT.match(m.string[e:e + 30]):
            return
        while (w := re.match(r"[^\W\d_][\w'’]*\s+", m.string[s:e])) and w.group(0).strip().lower() in _LEADING:
            s += w.end()  # "Patient Jane Doe" -> "Jane Doe"
    if e > s:
        found.append(Found(s, e, kind))


def _add_all(found: list[Found], text: str, patterns: list[re.Pattern], kind: str) -> None:
    for pattern in patterns:
        for m in pattern.finditer(text):
            _add(found, m, kind)


def context_spans(text: str) -> list[Found]:
    """Identifiers found by labels, cue words and shapes (may overlap; :func:`merge` resolves them).

    >>> [(text[f.start:f.end], f.kind) for text in ["ANAND, Deepa, passport YA1234567, aged 93"]
    ...  for f in merge(context_spans(text))]
    [('ANAND, Deepa', 'name'), ('YA1234567', 'passport'), ('aged 93', 'age_over_89')]
    """
    if not text:
        return []
    found: list[Found] = []
    for kind, pattern in _LABELLED:
        for m in pattern.finditer(text):
            if not _CLINICAL_ID.match(m.group("v")):
                _add(found, m, kind)
    for m in _LABELLED_BEFORE.finditer(text):
        _add(found, m, "id_card")
    for kind, pattern in _SHAPES:
        for m in pattern.finditer(text):
            v = m.group("v")
            digits = sum(c.isdigit() for c in v)
            if kind == "phone" and re.match(r"\s*(?:mg|mcg|micrograms?|g|ml|units?|iu|mmol|gy)\b", text[m.end("v"):], _I):
                continue  # a dose ladder: "ramp-up 20-50-100-200-400 mg"
            if kind == "phone" and not (9 <= digits <= 15 or (7 <= digits and re.search(
                    r"(?i)\b(?:ph|tel|phone|mob|mobile|cell|call|text|rang|number|on)\b\W*$", text[:m.start("v")]))):
                continue
            if kind == "device_id" and len(v) == 17 and not (re.search(r"\d", v) and re.search(r"[A-Z]", v)):
                continue
            if kind == "ip_address" and ":" in v and (v.count(":") < 2 or not re.search(r"\d", v)):
                continue
            _add(found, m, kind)
    _add_all(found, text, _DATES, "date")
    for pattern in _SHORT_DATES:
        for m in pattern.finditer(text):
            day, month = m.group("v").split("/")
            if not (month in ("7", "12", "52") and int(day) <= 6):  # "2/12", "5/7": durations
                _add(found, m, "date")
    _add_all(found, text, _AGES, "age_over_89")
    for kind, pattern in _NAMES:
        for m in pattern.finditer(text):
            if pattern is _SURNAME_GIVEN and _clinical_word(m.group("v").split()[-1]):
                continue  # "CLL, Rai stage 0": an acronym and an eponym, not SURNAME, Given
            if _name_words_ok(m.group("v")):
                _add(found, m, kind)
    for m in _RELATIVE_NAME.finditer(text):
        if _name_words_ok(m.group("v")):
            _add(found, m, "relative_name")
    for m in _CUE_NAME.finditer(text):
        value = _trim_cue_name(m.group("v"))
        cue = m.group(0)[:m.start("v") - m.start(0)].strip().lower()
        lower_ok = re.fullmatch(r"i'?m|i\s+am|my\s+name\s+is|name\s*:|my\s+(?:pt|patient)", cue)
        if not value or (not lower_ok and not all(w[0].isupper() for w in value.split())):
            continue  # a name in small letters only after "im", "my name is", "my pt" ...
        if value.split()[0].lower() in _NOT_NAME_WORDS or (len(value.split()) == 1 and len(value) < 3):
            continue
        if not _EPONYM_NEXT.match(text[m.start("v") + len(value):][:30]):
            found.append(Found(m.start("v"), m.start("v") + len(value), "name"))
    _add_all(found, text, _HOSPITALS, "hospital")
    _add_all(found, text, _ADDRESSES, "address")
    # long digit runs are identifiers whatever their label: NHS/CHI (mod 11), accounts, insurance numbers
    for m in re.finditer(r"(?<![\w.,/-])(?P<v>\d+(?:[ -]\d{2,})*)(?![\w/-]|[.,]\d)", text):
        digits = re.sub(r"\D", "", m.group("v"))
        if len(digits) < 7 or (m.group("v")[1:2] in (" ", "-") and len(digits) < 10):
            continue  # one leading digit only in long numbers: "2 69 05 49 588 157 80" (a French insurance number)
        if re.search(r"(?i:\b(?:SNOMED(?:\s+CT)?|SCTID|LOINC|concept(?:\s+id)?))\s*:?\s*$", text[max(0, m.start() - 20):m.start()]):
            continue  # a clinical terminology code: "SNOMED 254837009"
        kind = "nhs_number" if len(digits) == 10 and _valid_mod11(digits) else "id_card"
        prefix = _ID_PREFIX.search(text, max(0, m.start() - 8), m.start())
        if prefix and prefix.group(1).upper() not in _LABEL_WORDS:  # "RXR 0091 3344", "HCF 33 918 004"
            found.append(Found(prefix.start(1), m.end(), kind))
        _add(found, m, kind)
    # a number of five or more digits after "no." / "number" / "#", whatever the label: "UR no. 449981"
    for m in _NUMBER_AFTER_NO.finditer(text):
        if sum(c.isdigit() for c in m.group("v")) >= 5 and not _CLINICAL_ID.match(m.group("v")):
            _add(found, m, "id_card")
    # tokens mixing letters and at least four digits: "PWR-PT-77120934", "8TQ244P71"
    for m in re.finditer(r"(?<![\w/.-])(?P<v>(?=[\w/-]*[A-Za-z])(?=(?:[\w/-]*\d){4})[A-Za-z0-9][\w/-]{4,}[A-Za-z0-9])"
                         r"(?![\w/-])", text):
        if not _CLINICAL_ID.match(m.group("v")) and not re.match(r"(?i)\d[\d.,]*(?:mg|mcg|ml|kg|mmol|g|l|h|hrs?|d|x)$",
                                                                 m.group("v")):
            _add(found, m, "device_id")
    return found


# a short capital prefix of an identifier ("RXR 0091 3344") unless it is a label word that stays ("NHS 943 ...")
_ID_PREFIX = re.compile(r"(?<![\w/-])([A-Z]{2,5})\s$")
_LABEL_WORDS = frozenset("""NHS CHI SSN MRN DOB ID NO NUM REF TEL MOB PH FAX IBAN BIC PPS PPSN NIN NINO BSN DNI NIE SIN TFN
EHIC MBI VIN IMEI SN PIN ZIP UK US USA EU AND OR FOR HB PLT WBC WCC ANC CEA PSA AFP LDH CRP ALT AST ALP GGT INR TSH EGFR
CA BP HR RR SAT GCS NEWS ECOG PS KPS AUC BSA""".split())
_NUMBER_AFTER_NO = re.compile(r"(?i:\b(?:no|num|nr|number)\b\.?\s*[:#]?\s*|#\s*)(?P<v>[A-Z]{0,4}-?\d[\w/-]*\d)(?![\w/-])")

# capitalised words that open a phrase before a name, not part of it
_LEADING = frozenset("""patient pt referral re dear hi hello thanks update transfer note notes please query for from
to with and the a an on in at by of about regarding urgent review discharge admission admitted seen booked plan
today yesterday tomorrow consultant nurse doctor""".split())

_NOT_NAME_WORDS = frozenset("""on off in at not so the a an my his her their our your no new mid post pre doing going
having taking getting feeling worried sorry scared fine ok okay still also just really very chemo stage grade cycle
day week ct mri pet scan bloods blood review clinic ward bed referral treatment cancer""".split())


def merge(found: list[Found]) -> list[Found]:
    """Overlapping and touching spans joined into one (the kind of the longest wins), sorted."""
    out: list[Found] = []
    for f in sorted(found, key=lambda f: (f.start, -f.end)):
        if out and f.start < out[-1].end:
            last = out[-1]
            longer = (last.end - last.start, last.kind != "name") >= (f.end - f.start, f.kind != "name")
            kind = last.kind if longer else f.kind
            out[-1] = Found(last.start, max(last.end, f.end), kind)
        else:
            out.append(f)
    return out


_ANSWER_SHAPES = [
    ("email", re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b")),
    ("mrn", re.compile(r"(?<![\w.,/])\d(?:[ -]?\d){6,14}(?![\w.,/])")),
    ("ssn", _SHAPES[6][1]),
]


def answer_spans(text: str) -> list[Found]:
    """Identifier shapes worth redacting in a model's answer even when the question held none: e-mail
    addresses, SSNs, long digit runs and numbers after an identifier label (``MRN 1234567``, ``passport X123``).
    Regular expressions only, so the gateway can run them on every streamed chunk.

    >>> answer_spans("Write to a.b@example.org quoting NHS 943 476 5919.")
    [Found(start=9, end=24, kind='email'), Found(start=37, end=49, kind='nhs_number')]
    """
    found: list[Found] = []
    for kind, pattern in _LABELLED:
        for m in pattern.finditer(text):
            if not _CLINICAL_ID.match(m.group("v")):
                _add(found, m, kind)
    for kind, pattern in _ANSWER_SHAPES:
        for m in pattern.finditer(text):
            found.append(Found(m.start(), m.end(), kind))
    return merge(found)
