"""Recognisers of patient identifiers that rest on general knowledge rather than on the framings of a data set.

:mod:`feedback.phi_rules` finds identifiers by their labels and cue words; these find them by what they are:

- **names** by lists of given names and surnames (``phi_names.txt``, from Faker's person providers, MIT; common
  English words left out): "maureen doyle" in small letters, "MS LUCY ABERNETHY", "Tadeusz Wiśniewski",
  a relative's given name after a kinship word in any case ("his wife akosua", "daughter (Morag)");
- **ages of 90 and over** in every form: "92F", "90 yo", "94 years", "ninety-three", "aged one hundred",
  "she is 98", "Dorothy Ashworth, 99" (numbers followed by a unit, "sats 92%", "Hb 95 g/L", are not ages);
- **addresses** by shape: a house number, street words and a street type in any case ("18 moorside rd"),
  with directions, flats and towns ("1108 W Belmont Ave, Apt 2R, Chicago, IL"), house names ("The Old
  Rectory"), and whatever a postcode or a cue ("lives at") closes ("9 Quarry Bank, Tipton, DY4 8RL");
- **postcodes** in small letters ("le65 1ht");
- **hospital, ward and service names**: capitalised words ending in Hospital, Infirmary, Centre, Institute,
  Clinic, Practice, Trust ... with "and"/"of" inside, the same in small letters with a place-like word
  ("leeds general infirmary"), and named wards ("Ward B2", "Larch Ward"; "the Day Unit" is no identifier).

Tuned on the dev files only (``data/eval/detectors/phi_dev*.jsonl``).
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

from feedback.phi_rules import _CLINICAL_WORDS, _DRUGLIKE, _EPONYM_NEXT, _LOW, _RELATIVE, _STOP, _UP, Found

NAMES_FILE = Path(__file__).with_name("phi_names.txt")


@lru_cache(maxsize=1)
def name_lists() -> tuple[frozenset[str], frozenset[str]]:
    """The given names and surnames the scrubber knows (lower case)."""
    first: set[str] = set()
    last: set[str] = set()
    target = first
    for line in NAMES_FILE.read_text(encoding="utf-8").splitlines():
        if not line or line.startswith("#"):
            continue
        if line in ("[first]", "[last]"):
            target = first if line == "[first]" else last
            continue
        target.add(line)
    return frozenset(first), frozenset(last)


@lru_cache(maxsize=1)
def _either() -> frozenset[str]:
    first, last = name_lists()
    return first | last


# words that are never part of a name here (beyond the stop words and clinical vocabulary)
_NOT_NAME = frozenset("""dear hi hello thanks regards referral re pt patient nok mdt ward bed bay unit clinic hospital
centre center street road lane avenue drive close court place house cottage flat apt apartment suite insurance policy
member medicare medicaid mrn nhs chi dob ssn passport ph tel mobile email phone number ref note call text letter
discharge admitted admission urgent review plan today tomorrow yesterday monday tuesday wednesday thursday friday
saturday sunday january february march april may june july august september october november december mr mrs ms
miss mx dr prof sir dame lady lord rev sr saint st royal general university medical community district county city
north south east west new great little upper lower old""".split())

_WORD = re.compile(rf"[{_UP}{_LOW}][{_UP}{_LOW}'’-]*")


def _base(word: str) -> str:
    w = word.lower()
    for suffix in ("'s", "’s"):
        w = w.removesuffix(suffix)
    return w.strip("'’-")


def _excluded(w: str) -> bool:
    return (w in _STOP or w in _NOT_NAME or w in _CLINICAL_WORDS or bool(_DRUGLIKE.search(w)) or len(w) < 2
            or w.endswith("ing"))


def _known(w: str, names: frozenset[str]) -> bool:
    return w in names or ("-" in w and all(p in names for p in w.split("-") if p))


_PARTICLE_WORDS = frozenset("de van von der den del della da di du le la al el bin ibn ben ap ter ten dos das do ó ua "
                            "ní nic mac".split())


def _style(word: str) -> str:
    """``title`` (Jane, Ó), ``upper`` (JANE) or ``lower`` (jane)."""
    if word[0].isupper():
        return "upper" if word.isupper() and len(word) > 1 else "title"
    return "lower"


def _sentence_start(text: str, start: int) -> bool:
    before = text[:start].rstrip()
    return not before or before[-1] in ".?!:;\n\"'"


def _name_spans(text: str) -> list[Found]:
    first, last = name_lists()
    both = _either()
    words = [(m.start(), m.end(), m.group(0)) for m in _WORD.finditer(text)]
    found: list[Found] = []
    k = 0
    while k < len(words):
        s, e, w = words[k]
        run = [k]
        # a run: words of one casing joined by single spaces (a name does not cross punctuation)
        style = _style(w)
        while (len(run) < 4 and run[-1] + 1 < len(words)
               and text[words[run[-1]][1]:words[run[-1] + 1][0]] == " "):
            nw = words[run[-1] + 1][2]
            if _style(nw) != style and not (style == "title" and nw in _PARTICLE_WORDS and run[-1] + 2 < len(words)
                                            and _style(words[run[-1] + 2][2]) == "title"):
                break
            run.append(run[-1] + 1)
        bases = [_base(words[j][2]) for j in run]
        # trim excluded words at both ends ("Dear Maureen Doyle", "Doyle here")
        while bases and _excluded(bases[0]):
            run, bases = run[1:], bases[1:]
        while bases and _excluded(bases[-1]):
            run, bases = run[:-1], bases[:-1]
        if not run:
            k += 1
            continue
        start, end = words[run[0]][0], words[run[-1]][1]
        end -= 2 if text[start:end].endswith(("'s", "’s")) else 0
        ok = False
        inner = [b for b in bases if b not in _PARTICLE_WORDS]
        if any(_excluded(b) for b in inner) or _EPONYM_NEXT.match(text[end:end + 30]):
            ok = False
        elif style == "lower":  # small letters: a given name and a surname (either order), both known
            ok = len(bases) >= 2 and (
                (_known(bases[0], first) and _known(bases[1], last))
                or (_known(bases[0], last) and _known(bases[1], both) and all(
                    _known(b, both) for b in bases)))
        elif style == "title":
            if len(bases) >= 2:  # a known given name first, or a known surname last ("Frank Delaney", "Ayo Bakare")
                ok = _known(bases[0], first) or (_known(bases[-1], last) and (
                    _known(bases[0], both) or not _sentence_start(text, start)))
            else:  # one word: a known given name, not opening a sentence ("ask Joanne", "Kasia's")
                ok = _known(bases[0], first) and bases[0] not in last and not _sentence_start(text, start)
        elif style == "upper":  # capitals: only after a title ("MS LUCY ABERNETHY")
            ok = (any(_known(b, both) for b in bases)
                  and bool(re.search(r"\b(?:MR|MRS|MS|MISS|MX|DR|PROF)\.?\s+$", text[max(0, start - 6):start])))
        if ok:
            found.append(Found(start, end, "name"))
        k = run[-1] + 1 if ok else k + 1
    return found


_RELATIVE_ANY = re.compile(rf"(?i:\b{_RELATIVE}(?:'s)?)(?:\s*,\s*|\s*\(\s*|\s+(?:is|called|named)\s+|\s+)"
                           rf"(?P<v>[{_UP}{_LOW}][{_LOW}'’-]+)")


_LOWER_SURNAME_GIVEN = re.compile(rf"(?<![\w'’-])(?P<v>(?P<a>[{_LOW}][{_LOW}'’-]+),\s+(?P<b>[{_LOW}][{_LOW}'’-]+))(?![\w'’-])")


def _surname_given_spans(text: str) -> list[Found]:
    """"o'sullivan, padraig": a known surname, a comma and a known given name, in small letters."""
    first, last = name_lists()
    return [Found(*m.span("v"), "name") for m in _LOWER_SURNAME_GIVEN.finditer(text)
            if _known(m.group("a"), last) and _known(m.group("b"), first)
            and not _excluded(m.group("a")) and not _excluded(m.group("b"))]


def _relative_spans(text: str) -> list[Found]:
    first, last = name_lists()
    found = []
    for m in _RELATIVE_ANY.finditer(text):
        w = _base(m.group("v"))
        # a known given name; or any capitalised word set off by a comma or a bracket ("daughter (Morag)")
        marked = m.group("v")[0].isupper() and re.search(r"[,(]\s*$", text[:m.start("v")])
        if (_known(w, first) or marked) and not _excluded(w):
            s, e = m.span("v")
            e -= 2 if m.group("v").endswith(("'s", "’s")) else 0
            found.append(Found(s, e, "relative_name"))
    return found


# ---- ages of 90 and over ----
_UNIT = (r"(?:%|/|mg|mcg|micrograms?|g\b|g/l|kg|ml|mls|l\b|mmol|umol|µmol|iu|units?|bpm|beats|mmhg|cm|mm|gy|"
         r"percent|per\s*cent|minutes?|mins?|seconds?|secs?|hours?|hrs?|h\b|days?|weeks?|months?|times|tablets?|"
         r"caps(?:ules)?|doses?|cycles?|degrees?|fractions?|on\s+(?:room\s+)?air|ra\b|x\b|sats)")
_NUM_WORD = r"(?:one|two|three|four|five|six|seven|eight|nine)"
_AGE_NUM = r"(?:9\d|1[01]\d)"
_LAB = frozenset("""sats spo2 saturation saturations sat o2 oxygen hr pulse rate bp systolic diastolic glucose sugar
sugars bm na sodium k potassium hb haemoglobin hemoglobin platelets plts plt creat creatinine egfr gfr weight urea alt
ast alp ggt crp ldh bilirubin bili ca calcium temp temperature score count level result reading wcc neuts
neutrophils ecog karnofsky kps it that this which number ref dose volume fev1 fvc ef lvef psa cea ca125 afp hcg
inr aptt pt ferritin b12 folate tsh t4 iron mcv albumin protein magnesium mg phosphate urate lactate ph""".split())
_AGES = [
    re.compile(rf"(?<![\w.,/])(?P<v>{_AGE_NUM}\s?(?:[MF]\b|y/?o\b|yo\b|y\.o\.?|yrs?\b(?:\s+old)?|years?\b(?:\s+old)?|"
               rf"-?years?-old|-?yr-old))", re.IGNORECASE),
    re.compile(rf"\b(?P<v>(?:ninety(?:[\s-]{_NUM_WORD})?|(?:a|one)\s+hundred(?:\s+and\s+{_NUM_WORD}|[\s-]{_NUM_WORD})?)"
               rf"(?:[\s-]years?)?(?:[\s-]?(?:year[\s-])?old)?)\b(?!\s*{_UNIT})", re.IGNORECASE),
    re.compile(rf"(?i:\b(?:i'?m|i\s+am|he'?s|she'?s|he\s+is|she\s+is|he\s+was|she\s+was|who'?s|who\s+is|aged?|age:|"
               rf"turned|turns|turning|now)\s+(?:now\s+|just\s+|nearly\s+|almost\s+)?)(?P<v>{_AGE_NUM})\b"
               rf"(?![.,]\d)(?!\s*{_UNIT})"),
    # "Moshe Adler is 98", "mum is 96"; "Dorothy Ashworth, 99", "Wilhelmina de Vries (91)"
    re.compile(rf"(?P<w>[{_UP}{_LOW}][{_LOW}'’]+)(?:\s+is\s+|\s*,\s*|\s*\(\s*)(?P<v>{_AGE_NUM})"
               rf"(?=\s*(?:\)|,|;|$|\.(?!\d)|\s(?:next|this|last|in|on|and|with|but|years?)\b))"),
]


def _age_spans(text: str) -> list[Found]:
    found = []
    for pattern in _AGES:
        for m in pattern.finditer(text):
            if "w" in pattern.groupindex:
                w = m.group("w").lower()
                if w in _LAB or w in _CLINICAL_WORDS or (w in _STOP and w not in ("mum", "dad")) or w in _NOT_NAME:
                    continue
            found.append(Found(*m.span("v"), "age_over_89"))
    return found


# ---- addresses and postcodes ----
_TYPES = (r"Street|St|Road|Rd|Avenue|Ave|Lane|Ln|Drive|Dr|Close|Cl|Way|Court|Ct|Boulevard|Blvd|Place|Pl|Terrace|Terr|"
          r"Crescent|Cres|Gardens|Gdns|Square|Sq|Row|Mews|Parkway|Pkwy|Highway|Hwy|Grove|Gr|Walk|View|Hill|Rise|Park|"
          r"Green|Vale|Yard|Wharf|Quay|Parade|Broadway|Circle|Cir|Trail|Path|Bank|Paddocks?|Meadows?|Fields?|Brow|"
          r"Wynd|Heights|Croft|Chase|Dene|Drove|Gate|Grange|Hollow|Side|Plaza|Loop|Ridge|Pike|Estate|Embankment|"
          r"Strasse|Straße|Weg|Platz|Gasse|Rue|Via|Calle|Avenida|Heol|Ffordd|Stryd")
_LOWER_TYPES = r"street|st|road|rd|avenue|ave|lane|ln|drive|close|crescent|cres|terrace|gardens|gdns|grove|mews|court|blvd|boulevard"
_STREET_WORD = r"(?:[A-Z][\w'’.-]*|\d+(?:st|nd|rd|th)|[a-z][\w'’-]*)"
_STREET = re.compile(
    rf"(?P<v>(?:(?:[Ff]lat|[Aa]pt|[Aa]partment|[Uu]nit|[Ss]uite)\.?\s+\d+\w?,?\s+)?\d{{1,5}}[A-Za-z]?(?:-\d{{1,4}})?,?\s+"
    rf"(?:{_STREET_WORD}\s+){{0,3}}(?:(?:{_TYPES})|(?i:{_LOWER_TYPES}))\b\.?"
    rf"(?:,?\s+(?i:apt|apartment|unit|suite|flat|#)\.?\s*\w+)?)")
_STREET_FIRST = re.compile(r"(?P<v>\b\d{1,5}[A-Za-z]?,?\s+(?:Heol|Ffordd|Stryd|Rue|Via|Viale|Corso|Piazza|Calle|Avenida|Rua|"
                           r"Chemin|Boulevard|Avenue|Place|Plaza|Camino)\s+(?:(?:d[eu']|de\s+la|des|del|della|y|dos|das)\s*)?"
                           r"[A-Z][\w'’-]+(?:\s+[A-Z][\w'’-]+){0,2})")
_HOUSE = re.compile(rf"(?P<v>(?:The\s+)?(?:[A-Z][\w'’-]+\s+){{0,3}}(?:House|Cottages?|Farm|Lodge|Forge|Barn|Mill|Manor|"
                    rf"Hall|Rectory|Vicarage|Bungalow|Villa|Grange|Oast|Mansions|Flats),\s+(?:\d{{1,5}}\s+)?(?:[A-Z][\w'’-]+\s+)"
                    rf"{{1,3}}(?:{_TYPES})\b)")
_TOWN_WORD = re.compile(rf"[{_UP}{_LOW}][{_UP}{_LOW}'’.-]*")
_TOWN_PARTICLES = frozenset("de la le du des upon on under in by the y of sur am an der".split())
_TOWN_OPENERS = frozenset("new old great little upper lower north south east west st saint".split())
_CUE_ADDRESS = re.compile(r"(?i:\b(?:lives?|living|resides?|residing|moved|moving|address(?:\s+is)?|addr|home\s+address|"
                          r"visit\s+to|send\s+(?:it\s+)?to)\s*(?:at|to|in|on|is|:)?\s+)"
                          r"(?P<v>\d{1,5}[A-Za-z]?,?\s+[^\d\s,.;()][^,.;()\n]{2,40}?(?:,\s*[^\d\s,.;()][^,.;()\n]{1,30}?){0,2})"
                          r"(?=\s*(?:[,.;()\n]|$))")
_POSTCODE_LOWER = re.compile(r"(?<![\w-])(?P<v>[a-z]{1,2}\d[a-z\d]?\s\d[abd-hjlnp-uw-z]{2})(?![\w-])")
_POSTCODE_ANY = re.compile(r"(?<![\w-])(?:[A-Za-z]{1,2}\d[A-Za-z\d]?\s?\d[A-Za-z]{2}|\d{5}(?:-\d{4})?)(?![\w-])")
_ADDR_WORD = r"(?:\d+(?:st|nd|rd|th)|[^\W\d][\w'’.-]*)"
_US_STATE = re.compile(r",?\s+[A-Z]{2}$")


def _towns(text: str, end: int, segments: int = 2) -> int:
    """Extend an address over up to ``segments`` ", Town Name" pieces (capitalised, or small letters that are no
    stop word), and a US state before a ZIP."""
    for _ in range(segments):
        m = re.match(r",\s*", text[end:])
        if not m:
            break
        pos, last = end + m.end(), None
        n = 0
        for w in _TOWN_WORD.finditer(text, pos):
            gap = text[(last or pos):w.start()]
            if (last is not None and gap != " ") or (last is None and w.start() != pos) or n >= 4:
                break
            lw = w.group(0).lower().rstrip(".")
            if lw in _TOWN_PARTICLES and last is not None:
                n += 1
                last = w.end()
                continue
            if w.group(0)[0].isupper() and lw in _TOWN_OPENERS:
                last, n = w.end(), n + 1
                continue
            if lw in _STOP or lw in _CLINICAL_WORDS or _DRUGLIKE.search(lw) or (not w.group(0)[0].isupper()
                                                                               and len(lw) < 3):
                break
            last, n = w.end(), n + 1
        if last is None:
            break
        while text[pos:last].split() and text[pos:last].split()[-1].lower() in _TOWN_PARTICLES:
            last = pos + text[pos:last].rstrip().rfind(" ")  # no particle at the end
        end = last
    return end


def _address_spans(text: str) -> list[Found]:
    found = []
    for m in list(_STREET.finditer(text)) + list(_HOUSE.finditer(text)) + list(_STREET_FIRST.finditer(text)):
        words = [w.lower() for w in re.findall(r"[A-Za-z]+", m.group("v"))]
        small = [w for w in re.findall(r"[A-Za-z]+", m.group("v"))[:-1] if w.islower()]
        if any(w in _STOP and w not in ("the", "y", "de", "la", "of") for w in small) or any(
                w in _CLINICAL_WORDS or _DRUGLIKE.search(w) for w in words):
            continue
        s, e = m.span("v")
        e = _towns(text, e)
        found.append(Found(s, e, "address"))
    for m in _CUE_ADDRESS.finditer(text):
        small = [w for w in re.findall(r"[A-Za-z]+", m.group("v")) if w.islower()]
        if any(w in _STOP and w not in ("the", "y", "de", "la", "of") or w in _CLINICAL_WORDS or _DRUGLIKE.search(w)
               for w in small):
            continue  # a sentence, not an address: "3 Willow Close and is on capecitabine"
        found.append(Found(*m.span("v"), "address"))
    # whatever a postcode closes: "2 Parkside, Wellingborough NN8 1QP"
    for m in _POSTCODE_ANY.finditer(text):
        before = text[max(0, m.start() - 90):m.start()]
        b = re.search(rf"(?<![\w.])(\d{{1,5}}[A-Za-z]?(?:\s+{_ADDR_WORD}){{1,4}}(?:,\s*{_ADDR_WORD}(?:\s+{_ADDR_WORD})"
                      r"{0,3}){1,3}),?\s*$", before)
        if b and not re.search(r"[.;:!?]\s", b.group(1)):
            words = [w.lower() for w in re.findall(r"[A-Za-z]+", b.group(1))]
            if not any(w in _CLINICAL_WORDS or _DRUGLIKE.search(w) for w in words):
                s = m.start() - len(before) + b.start(1)
                e = s + len(b.group(1))
                e -= len(_US_STATE.search(b.group(1)).group(0)) if _US_STATE.search(b.group(1)) and \
                    re.match(r"\d", m.group(0)) else 0
                found.append(Found(s, e, "address"))
    for m in _POSTCODE_LOWER.finditer(text):
        if not re.search(r"\d(?:st|nd|rd|th)$", m.group("v")):
            found.append(Found(*m.span("v"), "postcode"))
    return found


# ---- hospitals, wards, services ----
_PLACE_ENDS = (r"Hospitals?|Infirmary|Hospice|Cent(?:re|er)|Institute|Clinic|Practice|Surgery|Trust|Health\s+Board|"
               r"Care\s+Home|Nursing\s+Home|Foundation|Medical\s+Group|Health\s+System|Healthcare")
_GENERIC = frozenset("""the a an day oncology haematology hematology cancer chemotherapy medical surgical health care
acute assessment intensive high dependency coronary short stay ambulatory renal treatment admissions emergency
maternity isolation side private clinical research teenage young adult adults infusion radiotherapy triage unit
local district general community nearest main children's childrens teaching new big other same university nhs
foundation trust hospital hospitals centre center clinic practice surgery institute infirmary hospice and of for
breast lung palliative support information services service outpatient outpatients inpatient day-case gp family
national regional specialist regional""".split())
_HOSPITAL_TITLE = re.compile(rf"(?P<v>(?:St\.?\s+|Saint\s+)?[A-Z][\w'’-]+(?:\s+(?:and|of|for|&|the|[A-Z][\w'’-]+)){{0,6}}?"
                             rf"\s+(?:{_PLACE_ENDS})(?:\s+of\s+[A-Z][\w'’-]+(?:\s+[A-Z][\w'’-]+){{0,2}}|,?\s+[A-Z][a-z]{{3,}}(?=\s*(?:[,.;)]|$)))?)\b")
_HOSPITAL_LOWER = re.compile(r"(?i)\b(?P<v>(?:st\.?\s+[a-z]+'?s\s+|[a-z][a-z'’-]+\s+){1,3}(?:hospital|infirmary|hospice|"
                             r"medical\s+cent(?:re|er)|health\s+cent(?:re|er)))\b")
_HOSPITAL_SHORT = re.compile(r"\b(?P<v>Royal\s+[A-Z][a-z]+(?:\s+[A-Z][a-z]+)?|[A-Z][a-z]+(?:\s+[A-Z][a-z]+)?\s+General)\b"
                             r"(?!\s+(?:College|Society|Mail|Navy|Air|Academy|Institution|Assembly|Medical\s+Council|"
                             r"Practitioner|Practice|Surgeon|Anaesthe\w*|Anesthe\w*|Manager|Secretary|Election))")
_WARDS = [
    re.compile(r"\b(?P<v>Ward\s+[A-Z]?\d{1,2}[A-Z]?)\b"),
    re.compile(rf"\b(?P<v>[A-Z][{_LOW}]+(?:\s+[A-Z][{_LOW}]+)?\s+(?:Ward|Unit|Wing|Suite))\b"),
    re.compile(r"\b(?P<v>(?:St\.?|Saint)\s+[A-Z][a-z]+(?:'s|’s|s)?)(?!\s+(?:disease|syndrome|wort|fire|dance))"),
]


def _hospital_spans(text: str) -> list[Found]:
    found = []
    for pattern in (_HOSPITAL_TITLE, _HOSPITAL_LOWER, _HOSPITAL_SHORT, *_WARDS):
        for m in pattern.finditer(text):
            s, e = m.span("v")
            if pattern is _HOSPITAL_LOWER:  # "went to leeds general infirmary" -> "leeds general infirmary"
                while (lead := re.match(r"([a-z'’-]+)\s+", text[s:e], re.I)) and (
                        lead.group(1).lower() in _STOP or lead.group(1).lower() in _NOT_NAME - {"st", "saint"}
                        or lead.group(1).lower() in _GENERIC):
                    s += lead.end()
            words = [_base(w) for w in re.findall(r"[A-Za-z'’-]+", text[s:e])]
            specific = [w for w in words if w not in _GENERIC and w not in ("st", "saint", "ward", "unit", "wing",
                                                                             "suite")]
            if pattern is _HOSPITAL_LOWER and any(w in _STOP for w in words[:-1]):
                continue
            if not specific or any(w in _STOP for w in specific) or any(_DRUGLIKE.search(w) for w in specific):
                continue  # "the Day Unit", "the hospital's policy", "my local hospital"
            while (lead := re.match(r"(?:the|The|a|A|at|At)\s+", text[s:e])):
                s += lead.end()
            found.append(Found(s, e, "hospital"))
    return found


def general_spans(text: str) -> list[Found]:
    """Names, ages of 90 and over, addresses, postcodes and hospitals found by general knowledge (may overlap).

    >>> [(t[f.start:f.end], f.kind) for t in ["kwame asante is 93 yo, 18 moorside rd, bolton"]
    ...  for f in sorted(general_spans(t))]
    [('kwame asante', 'name'), ('93 yo', 'age_over_89'), ('18 moorside rd, bolton', 'address')]
    """
    if not text:
        return []
    return _name_spans(text) + _surname_given_spans(text) + _relative_spans(text) + _age_spans(text) + _address_spans(text) + _hospital_spans(text)
