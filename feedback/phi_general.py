"""Recognisers of patient identifiers that rest on general knowledge rather than on the framings of a data set.

:mod:`feedback.phi_rules` finds identifiers by their labels and cue words; these find them by what they are:

- **names** by lists of given names and surnames (``phi_names.txt``, from Faker's person providers, MIT; common
  English words left out): "maureen doyle" in small letters, "MS LUCY ABERNETHY", "Tadeusz Wiśniewski",
  a relative's given name after a kinship word in any case ("his wife akosua", "daughter (Morag)") or before
  one ("Brendan, her son"), "ADEYEMI Olusegun", "j. okonkwo-hart";
- **ages of 90 and over** in every form: "92F", "90 yo", "94 years", "ninety-three", "aged one hundred",
  "she is 98", "Dorothy Ashworth, 99" (numbers followed by a unit, "sats 92%", "Hb 95 g/L", are not ages);
- **addresses** by shape: a house number, street words and a street type in any case ("18 moorside rd"),
  with directions, flats and towns ("1108 W Belmont Ave, Apt 2R, Chicago, IL"), house names ("The Old
  Rectory"), and whatever a postcode or a cue ("lives at") closes ("9 Quarry Bank, Tipton, DY4 8RL"); post
  boxes and rural routes, continental streets ("Hauptstraße 12, 80331 München");
- **postcodes** in any case and spacing, checked against the UK postcode areas ("le65 1ht", "sw1a1aa"),
  Eircodes, Canadian and Australian ones;
- **web addresses** whose host ends in a public suffix (tldextract's bundled list: "walkforwalter.scot");
- **hospital, ward and service names**: capitalised words ending in Hospital, Infirmary, Centre, Institute,
  Clinic, Practice, Trust ... with "and"/"of" inside, the same in small letters with a place-like word
  ("leeds general infirmary"), named wards ("Ward B2", "Larch Ward"; "the Day Unit" is no identifier),
  hospitals named in other languages ("Ysbyty Gwynedd") and places after a care verb ("admitted to Sutter
  Roseville").

Tuned on the dev files only (``data/eval/detectors/phi_dev*.jsonl``).
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

from feedback.phi_rules import _CLINICAL_WORDS, _DRUGLIKE, _EPONYM_NEXT, _LOW, _RELATIVE, _STOP, _UP, Found

NAMES_FILE = Path(__file__).with_name("phi_names.txt")
PLACES_FILE = Path(__file__).with_name("phi_places.txt")


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
            after = words[run[-1] + 2][2] if run[-1] + 2 < len(words) else ""
            if _style(nw) != style and not (style == "title" and nw in _PARTICLE_WORDS and after
                                            and (_style(after) == "title" or after in _PARTICLE_WORDS)):
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
                ok = _known(bases[0], first) and bases[0] not in last and (
                    not _sentence_start(text, start) or bool(_PERSON_NEXT.match(text, end)))
        elif style == "upper":  # capitals: after a title ("MS LUCY ABERNETHY"), or a known given name and surname
            ok = (any(_known(b, both) for b in bases)
                  and bool(re.search(r"\b(?:MR|MRS|MS|MISS|MX|DR|PROF)\.?\s+$", text[max(0, start - 6):start]))) or (
                len(bases) >= 2 and _known(bases[0], first) and _known(bases[-1], last))
        if ok:
            found.append(Found(start, end, "name"))
        k = run[-1] + 1 if ok else k + 1
    return found


# what follows a person's name that opens a sentence: "Ingrid's neutrophils", "Joanne at the centre", "Tom rang"
_PERSON_NEXT = re.compile(r"(?:['’]s\b|\s+(?:at|here|says|said|rang|called|phoned|asked|asks|is|was|has|had|will|wants|"
                          r"wanted|thinks|came|went|from|needs|feels|felt|reports|reported|told|says|and\s+I|and\s+me)\b)")

_RELATIVE_ANY = re.compile(rf"(?i:\b{_RELATIVE}(?:'s)?)(?:\s*,\s*|\s*\(\s*|\s+(?:is|called|named)\s+|\s+)"
                           rf"(?P<v>[{_UP}{_LOW}][{_LOW}'’-]+)")


_LOWER_SURNAME_GIVEN = re.compile(rf"(?<![\w'’-])(?P<v>(?P<a>[{_LOW}][{_LOW}'’-]+),\s+(?P<b>[{_LOW}][{_LOW}'’-]+))(?![\w'’-])")


_UPPER_GIVEN = re.compile(rf"(?<![\w'’-])(?P<a>[{_UP}][{_UP}'’-]+)\s+(?P<b>[{_UP}][{_LOW}][{_LOW}'’-]*)(?![\w'’-])")
_INITIAL_SURNAME = re.compile(rf"(?<![\w.'’-])(?P<v>[{_UP}{_LOW}]\.\s?(?P<s>[{_UP}{_LOW}][{_LOW}'’-]+))(?![\w'’-])")
# two or three initials with full stops, then a surname: "S.K. Bhattacharya", "A.M. van der Linde" (any surname:
# initials written this way belong to a person; "8 A.M." and "U.K." do not)
_INITIALS_SURNAME = re.compile(rf"(?<![\w.'’-])(?P<i>(?:[{_UP}]\.\s?){{2,3}})(?P<p>(?:(?:van|von|de|der|den|du|di|da|le|la|"
                               rf"el|al|ter|ten)\s+){{0,2}})(?P<s>[{_UP}][{_LOW}][{_LOW}'’]+(?:-[{_UP}]?[{_LOW}'’]+)*)"
                               rf"(?![\w'’-])")
_SMALL_TITLE = re.compile(r"(?:mr|mrs|ms|miss|dr|prof|MR|MRS|MS|MISS|DR|PROF)\.?\s+$")  # not trimmed by feedback.scrub
_SMALL_TITLE_NAME = re.compile(rf"(?<![\w'’-])(?:mr|mrs|ms|miss|dr|prof|mister|missus)\.?\s+(?P<a>[{_LOW}][{_LOW}'’-]+)"
                               rf"(?:\s+(?P<b>[{_LOW}][{_LOW}'’-]+))?")


def _clinical_word(word: str) -> bool:
    w = _base(word)
    return w in _CLINICAL_WORDS or bool(_DRUGLIKE.search(w))


# "PETROVIĆ, DRAGAN", "Dvořák, Miroslav", "Okeke, Chinonso Ifeanyi": SURNAME, GIVEN (MIDDLE) (I.); which pairs
# count is decided in _more_name_spans
_COMMA_NAME = re.compile(rf"(?<![\w'’-])(?P<a>[{_UP}][{_UP}{_LOW}'’-]+),\s+(?P<b>[{_UP}][{_UP}{_LOW}'’-]+)"
                         rf"(?:\s+(?P<c>[{_UP}][{_UP}{_LOW}'’-]+))?(?P<i>\s+[{_UP}]\.?)?(?![\w'’-])")
# "Patricia 'Trish' Coogan": a known given name, a nickname in quotes or brackets, a surname
_NICKNAME = re.compile(rf"(?<![\w'’-])(?P<a>[{_UP}][{_LOW}]+)\s+[(\"'‘“](?P<n>[{_UP}][{_LOW}]+)[)\"'’”]\s+"
                       rf"(?P<b>[{_UP}][{_LOW}][{_LOW}'’-]+)(?![\w'’-])")
# Vietnamese names with their middle name: "Nguyễn Thị Lan", "tran thi huong", "Lê Văn Minh"
_VIETNAMESE = re.compile(r"(?i)(?<![\w'’-])(?P<a>[^\W\d_]+)\s+(?:thị|thi|văn)\s+[^\W\d_]+(?![\w'’-])")
# hyphenated initials and a surname: "J-F Lemaire", "J.-P. Martin"
_HYPHEN_INITIALS = re.compile(rf"(?<![\w'’.-])[{_UP}]\.?-[{_UP}]\.?\s+(?P<s>[{_UP}][{_LOW}][{_LOW}'’-]+)(?![\w'’-])")
# a title in capitals, initials and a surname in capitals: "DR K. ADEYEMI-JONES", "MRS J OKAFOR"
_CAPS_TITLE_NAME = re.compile(rf"\b(?:DR|MR|MRS|MISS|PROF)\.?\s+(?:[{_UP}]\.?\s+){{0,2}}"
                              rf"(?P<s>[{_UP}][{_UP}'’-]{{2,}})(?![\w'’-])")
# Chinese, Japanese or Korean characters in an English message: a name written in its own script ("陳大文")
_CJK_NAME = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af]{2,4}")


def _more_name_spans(text: str) -> list[Found]:
    """"ADEYEMI Olusegun" (a known surname in capitals, then a known given name), "j. okonkwo-hart" (an
    initial and a known surname)."""
    first, last = name_lists()
    found = []
    for m in _UPPER_GIVEN.finditer(text):
        a, b = _base(m.group("a")), _base(m.group("b"))
        if (len(a) > 2 and (_known(a, last) or _known(b, first)) and not _excluded(a) and not _excluded(b)
                and not _clinical_word(b)):
            found.append(Found(m.start("a"), m.end("b"), "name"))
    for m in _INITIAL_SURNAME.finditer(text):
        w = _base(m.group("s"))
        if any(_known(p, last) for p in w.split("-")) and not _excluded(w) and len(w) > 3:
            found.append(Found(*m.span("v"), "name"))
    for m in _COMMA_NAME.finditer(text):
        a, b = _base(m.group("a")), _base(m.group("b"))
        if any(_excluded(w) or _clinical_word(w) for w in (a, b)):
            continue
        capitals = m.group("a").isupper() and len(a) > 4
        # any surname in capitals with a known given name ("KOWALSKA, Agnieszka"); both in capitals with one of
        # them known ("OKONKWO, CHIDIEBERE"; not gene, stage or society lists: "SDHB, SDHD", "IIIA, IIIB",
        # "NCCN, ESMO"); a known surname with any given name ("Okeke, Chinonso")
        both_capitals = capitals and m.group("b").isupper() and len(b) > 3 and (_known(a, last) or _known(b, first))
        # a known surname and an unknown given name only where a name is expected: after a label or at a line's
        # start ("From: Okeke, Chinonso"; not "Fionnuala Brennan, Oncotype DX")
        labelled = re.search(r"(?:^|[\n:|(]|\b(?:From|To|Re|Pt|Patient|Name))\s*$", text[max(0, m.start() - 12):m.start()])
        surname_first = _known(a, last) and (_known(b, first) or (labelled and len(b) > 3 and m.group("b").istitle()))
        if not ((capitals and _known(b, first)) or both_capitals or surname_first):
            continue
        end = m.end("b")
        c = m.group("c")
        if c and c.isupper() == m.group("b").isupper() and not _excluded(_base(c)) and not _clinical_word(_base(c)):
            end = m.end("c")  # "Okeke, Chinonso Ifeanyi", "YILDIRIM, İBRAHİM HALİL"
        if end == m.end("c") or not c:
            end = m.end("i") if m.group("i") else end  # "ESPINOZA, ROSALIND M."
        found.append(Found(m.start("a"), end, "name"))
    for m in _NICKNAME.finditer(text):
        a, b = _base(m.group("a")), _base(m.group("b"))
        if _known(a, first) and not _excluded(b) and not _clinical_word(b):
            found.append(Found(m.start("a"), m.end("b"), "name"))
    found += [Found(*m.span(), "name") for m in _CJK_NAME.finditer(text)]
    for m in _VIETNAMESE.finditer(text):
        if _known(_base(m.group("a")), last):
            found.append(Found(m.start(), m.end(), "name"))
    for pattern in (_HYPHEN_INITIALS, _CAPS_TITLE_NAME):
        for m in pattern.finditer(text):
            w = _base(m.group("s"))
            if not _excluded(w) and not _clinical_word(w) and not _EPONYM_NEXT.match(text[m.end():m.end() + 30]):
                found.append(Found(m.start(), m.end(), "name"))
    for m in _INITIALS_SURNAME.finditer(text):
        w = _base(m.group("s"))
        initials = m.group("i").replace(" ", "")
        time = initials in ("A.M.", "P.M.") and re.search(r"\d\s*$", text[:m.start()])
        if not time and initials not in ("U.K.", "U.S.", "E.U.", "U.S.A.") and not _excluded(w) and not _clinical_word(w) \
                and not _EPONYM_NEXT.match(text[m.end():m.end() + 30]):
            found.append(Found(m.start(), m.end(), "name"))
    for m in _SMALL_TITLE_NAME.finditer(text):  # "mrs eileen fairclough", "dr patel"
        a, b = _base(m.group("a")), _base(m.group("b") or "")
        if _known(a, first | last) and not _excluded(a):
            end = m.end("b") if b and not _excluded(b) and not _clinical_word(b) else m.end("a")
            found.append(Found(m.start(), end, "name"))
    return found


# a form's name fields: "Surname: O'SULLIVAN-BAPTISTE | Forename(s): Marie-Claire", "Naam: mevr. Joke de Vries"
_NAME_FIELD = re.compile(r"(?i:\b(?:surname|family\s+name|last\s+name|forenames?(?:\s*\(s\))?|first\s+names?|given\s+names?|"
                         r"christian\s+name|(?:patient|pt)(?:'s)?\s+name|name\s+of\s+(?:patient|pt)|full\s+name|naam|nom|"
                         r"nombre|nome|vorname|nachname))\s*:\s*(?P<v>[^\W\d_][^|\n;,:()\d]{1,60}?)(?=\s*(?:[|\n;,(]|$|\s{2}))")
# who speaks in a chat or a transcript: "[19:02] Tolu: mummy's scan...", "Chidi: staying in"
_SPEAKER = re.compile(rf"(?m)^(?P<t>\[?\d{{1,2}}[:.]\d{{2}}(?::\d{{2}})?\]?\s*[-–]?\s*)?(?P<v>[{_UP}][{_LOW}'’-]+"
                      rf"(?:\s+[{_UP}][{_LOW}'’-]+)?):\s+\S")
# Irish surnames with their particles: "Ó Súilleabháin", "Siobhra Ní Fhloinn", "Donncha Ó Laoghaire"
_IRISH_PARTICLE = re.compile(rf"(?<![\w'’-])(?P<v>(?:[{_UP}][^\W\d_]+\s+)?(?:Ó|Ní|NÍ|Nic|NIC|Uí|UÍ|Mhic|MHIC|Bean\s+Uí)\s+"
                             rf"[{_UP}][^\W\d_'’]*['’]?[^\W\d_]*)(?![\w'’-])")
# words that label a form field or a report line, not a speaker ("Plan:", "Hx:")
_FIELD_WORDS = frozenset("""plan hx exam subject to from cc dx note notes patient name surname forename address
postcode diagnosis impression indication history findings request reason summary action actions outcome status result
results date time ward consultant gp ref re reply answer question update background assessment advice comment
comments meds medication medications allergies allergy obs bloods imaging scan report recommendation
recommendations conclusion issue issues problem problems ps nb fyi attn regards signed sent received tel""".split())


def _field_and_speaker_spans(text: str) -> list[Found]:
    first, _ = name_lists()
    found = []
    for m in _NAME_FIELD.finditer(text):
        value = m.group("v").strip()
        words = [_base(w) for w in _WORD.findall(value)]
        if words and len(words) <= 5 and not any(w in _CLINICAL_WORDS or w in _STOP for w in words):
            found.append(Found(m.start("v"), m.start("v") + len(value), "name"))
    speakers = list(_SPEAKER.finditer(text))
    said = {}
    for m in speakers:
        said[m.group("v")] = said.get(m.group("v"), 0) + 1
    for m in speakers:
        words = [_base(w) for w in m.group("v").split()]
        if any(_excluded(w) or w in _FIELD_WORDS or _clinical_word(w) for w in words):
            continue
        # a time stamp, or a label that speaks twice, or a known name among two speakers or more ("Echo: large
        # pericardial effusion" is a report line)
        if m.group("t") or said[m.group("v")] > 1 or (_known(words[0], first) and len(said) > 1):
            found.append(Found(*m.span("v"), "name"))
    for m in _IRISH_PARTICLE.finditer(text):
        s = m.start("v")
        if (lead := re.match(r"([^\W\d_]+)\s+", m.group("v"))) and _excluded(_base(lead.group(1))) and \
                not lead.group(1) in ("Ó", "Ní", "Nic", "Uí", "Mhic", "Bean"):
            s += lead.end()  # "from Ó Laoghaire": the small word stays
        found.append(Found(s, m.end("v"), "name"))
    return found


def _surname_given_spans(text: str) -> list[Found]:
    """"o'sullivan, padraig": a known surname, a comma and a known given name, in small letters."""
    first, last = name_lists()
    return [Found(*m.span("v"), "name") for m in _LOWER_SURNAME_GIVEN.finditer(text)
            if _known(m.group("a"), last) and _known(m.group("b"), first)
            and not _excluded(m.group("a")) and not _excluded(m.group("b"))]


_RELATIVE_AFTER = re.compile(rf"(?<![\w'’-])(?P<v>[{_UP}][{_LOW}'’-]+(?:\s+[{_UP}][{_LOW}'’-]+)?)(?:,\s+(?:her|his|their|my|our|"
                             rf"your|the|patient's)\s+|\s*\(\s*(?:her\s+|his\s+|the\s+)?)(?i:{_RELATIVE})\b")


def _relative_spans(text: str) -> list[Found]:
    first, last = name_lists()
    found = []
    for m in _RELATIVE_AFTER.finditer(text):
        words = [_base(w) for w in m.group("v").split()]  # a kinship word after it: "Pugh" is a name here
        if not _excluded(words[0]) and not any(w in _STOP or w in _NOT_NAME for w in words[1:]):
            found.append(Found(*m.span("v"), "relative_name"))
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
    re.compile(rf"(?<![\w.,/])(?P<v>{_AGE_NUM}\s?(?:[MF]\b|y/?o\b|yo\b|y\.o\.?|yrs?\b(?:\s+old)?|years?\b(?:\s+old|\s+of\s+age)?|"
               rf"-?years?-old|-?yr-old|y\b(?![/.]\w)))", re.IGNORECASE),
    # sex and age together: "95/F", "F/95", "M, 91"; an ordinal birthday: "her 101st birthday"
    re.compile(rf"(?<![\w.,/])(?P<v>{_AGE_NUM})\s?/\s?[MF]\b|\b[MF]\s?(?:/|,)\s?(?P<w2>{_AGE_NUM})\b(?![.,/]\d)"),
    re.compile(rf"\b(?P<v>{_AGE_NUM}(?:st|nd|rd|th))\s+birthday", re.IGNORECASE),
    # "she'll be 99 in May", "at 97 he still drives", "Grandad's nearly 94", "(02.03.1931) 94,"
    re.compile(rf"(?i:\b(?:he'?ll|she'?ll|i'?ll|will|would)\s+be\s+)(?P<v>{_AGE_NUM})\b(?![.,]\d)(?!\s*{_UNIT})"),
    re.compile(rf"\b[Aa]t\s+(?P<v>{_AGE_NUM})\s*,?\s+(?:he|she|they|i|mum|dad|my|his|her)\b"),
    re.compile(rf"(?i:\b(?:mum|mom|dad|nan|nana|gran|granny|grandma|grandad|granddad|grandpa|grandmother|grandfather|"
               rf"husband|wife|father|mother|aunt|auntie|uncle)(?:'s|’s|\s+is)\s+(?:now\s+|nearly\s+|almost\s+|just\s+)?)"
               rf"(?P<v>{_AGE_NUM})\b(?![.,]\d)(?!\s*{_UNIT})"),
    re.compile(rf"(?<=\d\))\s*(?P<v>{_AGE_NUM})(?=\s*[,;])"),
    # "91 next month", "turning 90 this year" (not after a lab word: "Hb 95 next week")
    re.compile(rf"(?<![\w.,/])(?P<v>{_AGE_NUM})\s+(?:next|this)\s+(?:month|year|week|birthday)\b"),
    re.compile(rf"\b(?P<v>(?:ninety(?:[\s-]{_NUM_WORD})?|(?:a|one)\s+hundred(?:\s+and\s+{_NUM_WORD}|[\s-]{_NUM_WORD})?)"
               rf"(?:[\s-]years?)?(?:[\s-]?(?:year[\s-])?old)?)\b(?!\s*{_UNIT})", re.IGNORECASE),
    re.compile(rf"(?i:\b(?:i'?m|i\s+am|he'?s|she'?s|he\s+is|she\s+is|he\s+was|she\s+was|who'?s|who\s+is|aged?|age:|"
               rf"turned|turns|turning|now|aet\.?|aetat\.?)\s+(?:now\s+|just\s+|nearly\s+|almost\s+)?)(?P<v>{_AGE_NUM})\b"
               rf"(?![.,]\d)(?!\s*{_UNIT})"),
    # "Moshe Adler is 98", "mum is 96"; "Dorothy Ashworth, 99", "Wilhelmina de Vries (91)"
    re.compile(rf"(?P<w>[{_UP}{_LOW}][{_LOW}'’]+)(?:,?\s+is\s+|\s*,\s*|\s*\(\s*)(?P<v>{_AGE_NUM})"
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
            prev = re.search(r"([A-Za-z0-9]+)\W*$", text[max(0, m.start() - 24):m.start()])
            if prev and prev.group(1).lower() in _LAB:
                continue
            group = "v" if m.group("v") else "w2"
            found.append(Found(*m.span(group), "age_over_89"))
    return found


# ---- addresses and postcodes ----
_TYPES = (r"Street|St|Road|Rd|Route|Avenue|Ave|Lane|Ln|Drive|Dr|Close|Cl|Way|Court|Ct|Boulevard|Blvd|Place|Pl|Terrace|Terr|"
          r"Crescent|Cres|Gardens|Gdns|Square|Sq|Row|Mews|Parkway|Pkwy|Highway|Hwy|Grove|Gr|Walk|View|Hill|Rise|Park|"
          r"Green|Vale|Yard|Wharf|Quay|Parade|Broadway|Circle|Cir|Trail|Path|Bank|Paddocks?|Meadows?|Fields?|Brow|"
          r"Wynd|Heights|Croft|Chase|Dene|Drove|Gate|Grange|Hollow|Side|Plaza|Loop|Ridge|Pike|Estate|Embankment|Concourse|"
          r"Strasse|Straße|Weg|Platz|Gasse|Rue|Via|Calle|Avenida|Heol|Ffordd|Stryd|Salai|Nagar|Marg|Cross|Layout|Colony")
_LOWER_TYPES = r"street|st|road|rd|avenue|ave|lane|ln|drive|close|crescent|cres|terrace|gardens|gdns|grove|mews|court|blvd|boulevard"
_STREET_WORD = r"(?:[A-Z][\w'’.-]*|\d+(?:st|nd|rd|th)|[a-z][\w'’-]*)"
_STREET = re.compile(
    # a flat ("Flat 3,", "Room 14,", Glasgow's "0/1,"), a label before the number ("Door No. 14/3", "Plot 22")
    rf"(?P<v>(?:(?:[Ff]lat|[Aa]pt|[Aa]partment|[Uu]nit|[Ss]uite|Room)\.?\s+\d+\w?,?\s+|\d{{1,2}}/\d{{1,2}},\s+)?"
    rf"(?:(?:Plot|Door\s+No|H\.?\s?No|House\s+No)\.?\s+)?"
    rf"(?:\d{{1,4}}[A-Za-z]?/)?\d{{1,5}}[A-Za-z]?"
    rf"(?:-\d{{1,4}})?,?\s+(?:{_STREET_WORD}\s+){{0,3}}(?:(?:{_TYPES})|(?i:{_LOWER_TYPES}))\b\.?"
    rf"(?:(?:(?<=Road)|(?<=Route))\s+\d{{1,4}}\b(?![.,]\d))?(?:\s+[NSEW]\b(?!['’]))?"
    rf"(?:,?\s+(?i:apt|apartment|unit|suite|flat|#)\.?\s*\w+)?)")
_STREET_FIRST = re.compile(r"(?P<v>\b\d{1,5}[A-Za-z]?,?\s+(?:Heol|Ffordd|Stryd|Cae|Maes|Bryn|Llys|Lôn|Parc|Clos|Rhodfa|"
                           r"Rue|Via|Viale|Corso|Piazza|Calle|Avenida|Rua|"
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
# UK postcodes in any case, with no space or several ("sw1a1aa", "Gl5  3AA"), checked against the postcode areas
_UK_AREAS = frozenset("""AB AL B BA BB BD BH BL BN BR BS BT CA CB CF CH CM CO CR CT CV CW DA DD DE DG DH DL DN DT DY E EC EH
EN EX FK FY G GL GU GY HA HD HG HP HR HS HU HX IG IM IP IV JE KA KT KW KY L LA LD LE LL LN LS LU M ME MK ML N NE NG NN NP NR
NW OL OX PA PE PH PL PO PR RG RH RM S SA SE SG SK SL SM SN SO SP SR SS ST SW SY TA TD TF TN TQ TR TS TW UB W WA WC WD WF WN
WR WS WV YO ZE""".split())
_POSTCODE_UK = re.compile(r"(?<![\w-])(?P<v>(?P<area>[A-Za-z]{1,2})\d[A-Za-z\d]? {0,2}\d[ABD-HJLNP-UW-Zabd-hjlnp-uw-z]{2})"
                          r"(?![\w-])")
_EIRCODE = re.compile(r"(?<![\w-])(?P<v>(?:[AC-FHKNPRTV-Y]\d{2}|D6W) ?[0-9AC-FHKNPRTV-Y]{4})(?![\w-])")
# Canadian postcodes in any case, with or without the space ("t6g 1z2", "H3T1E2"); a TNM stage is not one ("T3N1M0")
_POSTCODE_CA = re.compile(r"(?<![\w-])(?P<v>[ABCEGHJ-NPRSTVXYabceghj-nprstvxy]\d[ABCEGHJ-NPRSTV-Zabceghj-nprstv-z] ?"
                          r"\d[ABCEGHJ-NPRSTV-Zabceghj-nprstv-z]\d)(?![\w-])")
_TNM = re.compile(r"(?i)[a-z]?t\d[a-d]?n\d[a-c]?m\d")
# an outward code alone, where a label or "area" says it is one: "postcode NE1", "the BT12 area"
_OUTWARD = re.compile(r"(?:(?i:post\s?code|postal\s+(?:code|district))\s*:?\s*(?P<v>[A-Za-z]{1,2}\d{1,2}[A-Za-z]?)\b"
                      r"|\b(?P<w>[A-Z]{1,2}\d{1,2}[A-Z]?)\s+(?:area|district)\b)")
# any code after a postcode label: "Postcode: 1013 KP", "Postleitzahl 80636", "eircode t12 x70d", "PIN 560038"
_POSTCODE_LABELLED = re.compile(r"(?i:\b(?:post\s?code|postal\s+code|zip(?:\s?code)?|eircode|postleitzahl|plz|pin\s?code|"
                                r"pin|code\s+postal|c[oó]digo\s+postal)\b\.?\s*[:#-]?\s*)(?P<v>(?=[A-Za-z0-9 ]*\d)(?=[A-Za-z0-9 -]{4})"
                                r"[A-Za-z0-9]{2,5}(?:[ -]{1,2}[A-Za-z0-9]{2,4})?)(?![\w-])")
# an Indian PIN code after a town: "Indiranagar, Bengaluru 560038", "Chennai - 600040"
_PIN_AFTER_TOWN = re.compile(r",\s+[A-Z][a-z]+(?:\s+[A-Z][a-z]+)?\s*[-,]?\s+(?P<v>[1-8]\d{5})(?![\w/.-]?\d)")
_IRISH_COUNTIES = (r"Carlow|Cavan|Clare|Cork|Donegal|Dublin|Galway|Kerry|Kildare|Kilkenny|Laois|Leitrim|Limerick|Longford|"
                   r"Louth|Mayo|Meath|Monaghan|Offaly|Roscommon|Sligo|Tipperary|Waterford|Westmeath|Wexford|Wicklow|"
                   r"Antrim|Armagh|Down|Fermanagh|Londonderry|Derry|Tyrone")
# Irish rural addresses: townland, village, town, county: "Ardnagreina, Kilcrohane, Bantry, Co. Cork"
_IRISH_ADDRESS = re.compile(rf"(?P<v>(?:[A-Z][\w'’-]+(?:\s+[A-Z][\w'’-]+)?,\s+){{1,4}}(?:Co\.?|County)\s+"
                            rf"(?:{_IRISH_COUNTIES}))\b")
_POSTCODE_AU = re.compile(r"\b(?:NSW|VIC|QLD|SA|WA|TAS|NT|ACT|Auckland|Wellington|Christchurch)\s+(?P<v>\d{4})\b(?![.,:/]?\d)")
_ADDR_WORD = r"(?:\d+(?:st|nd|rd|th)|[^\W\d][\w'’.-]*)"
_NAMED_WORD = r"(?:[A-Z][\w'’.-]*|\d{1,5}[A-Za-z]?|of|the|on|upon|y|de|la|le|an|am)"
_NAMED_PLACE = re.compile(rf"(?<![\w'’.-])((?:c/o\s+)?[A-Z][\w'’.-]*(?:\s+{_NAMED_WORD}){{0,3}}(?:,\s*[A-Z][\w'’.-]*"
                          rf"(?:\s+{_NAMED_WORD}){{0,3}}){{1,4}}),?\s*$")
_NAMED_LEAD = re.compile(r"(?:(?:Address|Addr|Home|Correspondence|Post|Send|Mail|Write|New|Lives|Living|Moved|To|At|"
                         r"Re|Ref|Patient|Pt|NOK)\b:?\s*)+")
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


# a post box or a rural route ("P.O. Box 228", "Rural Route 2, Box 118"); a flat, unit, lot or croft number
# before the rest of an address ("Flat 3/2, 14 Hyndland Road", "Croft 7, North Dell, Ness"), a floor
_BOX = re.compile(r"(?P<v>\b(?:(?:Rural\s+Route|Star\s+Route|RR|HC)\s*\d+,?\s+)?(?:P\.?\s?O\.?\s*Box|Post\s+Office\s+Box|"
                  r"Box|Private\s+Bag|Locked\s+Bag|PMB)\s+\d{1,6}\b|\b(?:Flat|Apt|Apartment|Unit|Suite|Lot|Plot|Croft)\.?"
                  r"\s+\d{1,4}[A-Za-z]?(?:/\d{1,4}[A-Za-z]?)?(?=,?\s+(?:\d|[A-Z][a-z]))|\b\d{1,2}(?:st|nd|rd|th)\s+Floor"
                  r"(?=,\s))")
_UNIT_BOX = re.compile(r"^(?:Box|Flat|Apt|Apartment|Unit|Suite|Lot|Plot|Croft)\b")
# continental streets, name then number, and a postal code before the town: "Hauptstraße 12, 80331 München",
# "Calle Mayor 5, 3º izq, 28013 Madrid", "12 rue des Lilas, 75011 Paris", "Prinsengracht 263, 1016 GV Amsterdam"
_STREET_END = (r"stra(?:ss|ß)e|str\.|weg|gasse|platz|allee|ring|damm|ufer|gracht|straat|laan|plein|kade|singel|dijk|"
               r"gatan|gata|vägen|gade|vej|vejen|veien|gränd|torget|"
               r"vej|gade|gatan|vägen|veien|gata|katu|tie|utca|ulica")
_STREET_WORDS = (r"(?i:via|viale|corso|piazza|largo|strada|calle|avenida|paseo|plaza|carrer|rua|travessa|rue|avenue|"
                 r"boulevard|chemin|place|quai|impasse|allée)")
_CONTINENTAL = re.compile(
    rf"(?P<v>(?:(?:[{_UP}][{_LOW}{_UP}'’.-]*(?:{_STREET_END})|{_STREET_WORDS}\s+(?:[{_LOW}'’]+\s+){{0,3}}[{_UP}][\w'’-]+"
    rf"(?:\s+[{_UP}][\w'’-]+){{0,2}})\s+\d{{1,4}}[a-z]?|\d{{1,4}}[a-z]?,?\s+{_STREET_WORDS}\s+(?:[{_LOW}'’]+\s+){{0,3}}"
    rf"[{_UP}][\w'’-]+(?:\s+[{_UP}][\w'’-]+){{0,2}})(?:,\s*\d{{1,2}}(?!\d)[ºª°]?(?:\s*[{_LOW}]{{1,5}}\.?)?)?"
    rf"(?:,?\s*(?:[A-Z]{{1,2}}-)?(?:\d{{3}}\s\d{{2}}|\d{{4}}-\d{{3}}|\d{{4,5}})(?:\s?[A-Z]{{2}})?\s+[{_UP}][\w'’-]+"
    rf"(?:\s+[{_UP}][\w'’-]+)?)?)")
# US states, Canadian provinces and Australian states ("Ely, NV", "Toronto, ON", "Bondi NSW"); a district number
_PLACE_CODE = re.compile(r"^,?\s*(?:(?:A[LKZRB]|C[AOT]|D[EC]|FL|GA|HI|I[DLNA]|K[SY]|LA|M[EDAINSOTB]|N[EVHJMYCDBLSTU]|O[HKRN]|"
                         r"PA|PE|QC|RI|S[CDK]|T[NX]|UT|V[TA]|W[AVIY]|YT|NSW|VIC|QLD|TAS|ACT)\b|\d{1,2}\b(?![.,:/]?\d))")


def _tail(text: str, end: int) -> int:
    """The end of an address after its towns, a state or province ("NV", "NSW") or a district number
    ("Dublin 2")."""
    end = _towns(text, end, segments=4)
    m = _PLACE_CODE.match(text[end:end + 6])
    if m and not re.match(r"\s*(?:mg|ml|%|x\b)", text[end + m.end():end + m.end() + 4]):
        end += m.end()
    return end


def _address_spans(text: str) -> list[Found]:
    found = []
    for m in _BOX.finditer(text):
        s, e = m.span("v")
        if _UNIT_BOX.match(m.group("v")) and not text[e:e + 2].startswith((",", " ")):
            continue
        found.append(Found(s, _tail(text, e), "address"))
    for m in _CONTINENTAL.finditer(text):
        words = [w.lower() for w in re.findall(r"[^\W\d_]+", m.group("v"))]
        if not any(w in _CLINICAL_WORDS or _DRUGLIKE.search(w) for w in words):
            # a postal code and a town end it ("80331 München", "411 19 Göteborg", "4050-180 Porto")
            closed = re.search(r"(?:\d{3}\s\d{2}|\d{4}-\d{3}|\d{4,5})(?:\s?[A-Z]{2})?\s+\S+$", m.group("v"))
            found.append(Found(m.start("v"), m.end("v") if closed else _towns(text, m.end("v")), "address"))
    for m in list(_STREET.finditer(text)) + list(_HOUSE.finditer(text)) + list(_STREET_FIRST.finditer(text)):
        words = [w.lower() for w in re.findall(r"[A-Za-z]+", m.group("v"))]
        small = [w for w in re.findall(r"[A-Za-z]+", m.group("v"))[:-1] if w.islower()]
        if any(w in _STOP and w not in ("the", "y", "de", "la", "of") for w in small) or any(
                w in _CLINICAL_WORDS or _DRUGLIKE.search(w) for w in words):
            continue
        s, e = m.span("v")
        e = _tail(text, e)
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
        if not b:
            b = _NAMED_PLACE.search(before)
            lead = b and _NAMED_LEAD.match(b.group(1))
            if b and lead:  # "Address The Bothy, ..." -> "The Bothy, ..."
                b = _NAMED_PLACE.search(before, b.start(1) + lead.end()) if lead.end() < len(b.group(1)) else None
        if b and not re.search(r"[.;:!?]\s", b.group(1)):
            words = [w.lower() for w in re.findall(r"[A-Za-z]+", b.group(1))]
            if not any(w in _CLINICAL_WORDS or _DRUGLIKE.search(w) for w in words):
                s = m.start() - len(before) + b.start(1)
                e = s + len(b.group(1))
                e -= len(_US_STATE.search(b.group(1)).group(0)) if _US_STATE.search(b.group(1)) and \
                    re.match(r"\d", m.group(0)) else 0
                found.append(Found(s, e, "address"))
    for m in _IRISH_ADDRESS.finditer(text):
        s, e = m.span("v")
        while (lead := re.match(r"([A-Z][\w'’-]+)(?:\s+[A-Z][\w'’-]+)?,\s+", text[s:e])) and \
                (_base(lead.group(1)) in _NOT_NAME or _base(lead.group(1)) in _STOP or _base(lead.group(1)) in _FIELD_WORDS):
            s += lead.end()  # "Home address: Ardnagreina, ..." starts after the label
        found.append(Found(s, e, "address"))
    for pattern in (_POSTCODE_LABELLED, _PIN_AFTER_TOWN):
        found += [Found(*m.span("v"), "postcode") for m in pattern.finditer(text)]
    for pattern in (_POSTCODE_UK, _EIRCODE, _POSTCODE_CA, _POSTCODE_AU):
        for m in pattern.finditer(text):
            v = m.group("v")
            if pattern is _POSTCODE_UK and (m.group("area").upper() not in _UK_AREAS or v.isupper() and " " in v
                                            and v.count(" ") == 1):
                continue  # not a UK postcode area, or a plain one the rules already find
            if pattern is _EIRCODE and not (re.search(r"[A-Z]", v[-4:]) and re.search(r"\d", v[-4:])):
                continue
            if pattern is _POSTCODE_CA and _TNM.fullmatch(v.replace(" ", "")):
                continue
            found.append(Found(*m.span("v"), "postcode"))
    for m in _OUTWARD.finditer(text):
        group = "v" if m.group("v") else "w"
        if re.match(r"[A-Za-z]+", m.group(group)).group(0).upper() in _UK_AREAS:
            found.append(Found(*m.span(group), "postcode"))
    for m in _POSTCODE_LOWER.finditer(text):
        if not re.search(r"\d(?:st|nd|rd|th)$", m.group("v")):
            found.append(Found(*m.span("v"), "postcode"))
    return found


# ---- hospitals, wards, services ----
_PLACE_ENDS = (r"Hospitals?|Infirmary|Hospice|Cent(?:re|er)|Institute|Clinic|Practice|Surgery|Trust|Health\s+Board|"
               r"Care\s+Home|Nursing\s+Home|Foundation|Medical\s+Group|Health\s+System|Healthcare|Memorial")
_GENERIC = frozenset("""the a an day oncology haematology hematology cancer chemotherapy medical surgical health care
acute assessment intensive high dependency coronary short stay ambulatory renal treatment admissions emergency
maternity isolation side private clinical research teenage young adult adults infusion radiotherapy triage unit
local district general community nearest main children's childrens teaching new big other same university nhs
foundation trust hospital hospitals centre center clinic practice surgery institute infirmary hospice and of for
breast lung palliative support information services service outpatient outpatients inpatient day-case gp family
national regional specialist regional""".split())
_HOSPITAL_TITLE = re.compile(rf"(?P<v>(?:St\.?\s+|Saint\s+)?[A-Z][\w'’-]+(?:\s+(?:and|of|for|&|the|[A-Z][\w'’-]+)){{0,6}}?"
                             rf"\s+(?:{_PLACE_ENDS})(?:\s+of\s+[A-Z][\w'’-]+(?:\s+[A-Z][\w'’-]+){{0,2}}|,?\s+[A-Z][a-z]{{3,}}(?=\s*(?:[,.;)]|$)|\s+[a-z]))?)\b")
_HOSPITAL_LOWER = re.compile(r"(?i)\b(?P<v>(?:st\.?\s+[a-z]+'?s\s+|[a-z][a-z'’-]+\s+){1,3}(?:hospital|hosp\b\.?|infirmary|hospice|"
                             r"medical\s+cent(?:re|er)|health\s+cent(?:re|er)))\b")
_HOSPITAL_SHORT = re.compile(r"\b(?P<v>Royal\s+[A-Z][a-z]+(?:\s+(?:and|&)\s+[A-Z][a-z]+|\s+[A-Z][a-z]+)?|[A-Z][a-z]+(?:\s+[A-Z][a-z]+)?\s+General)\b"
                             r"(?!\s+(?:College|Society|Mail|Navy|Air|Academy|Institution|Assembly|Medical\s+Council|"
                             r"Practitioner|Practice|Surgeon|Anaesthe\w*|Anesthe\w*|Manager|Secretary|Election))")
_WARDS = [
    re.compile(r"\b(?P<v>Ward\s+[A-Z]?\d{1,3}[A-Z]?(?:\s+(?:North|South|East|West)\b)?)\b"),
    re.compile(r"\b(?P<v>ward\s+[A-Z]?\d{1,3}[A-Za-z]?)\b(?!\s*(?:days?|times|weeks?|hours?|patients|beds|x\b))"),
    re.compile(rf"\b(?P<v>[A-Z][{_LOW}]+(?:\s+[A-Z][{_LOW}]+)?\s+(?:Ward|Unit|Wing|Suite|ward))\b"),
    re.compile(r"(?i:\b(?:on|to|from)\s+)(?P<v>[a-z]{4,}\s+ward)\b"),  # "moved to nightingale ward"
    # hospitals named in other languages: "Ysbyty Gwynedd", "Hôpital Saint-Louis", "Universitätsklinikum Heidelberg"
    re.compile(rf"\b(?P<v>(?:Ysbyty|H[oô]pital|Centre\s+Hospitalier(?:\s+Universitaire)?|CHU|Klinikum|Krankenhaus|"
               rf"Ospedale|Policlinico|Hospital(?=\s+(?:de|del|do|da|San|Santa|Sant')\s)|Cl[ií]nica|Ziekenhuis|Szpital|"
               rf"[{_UP}][{_LOW}]*(?:klinikum|krankenhaus|ziekenhuis|sjukhus|sykehus|spital|klinik))(?:\s+(?:de\s+la|de|del|"
               rf"di|do|da|des|du|der|am|an|St\.?|Saint|San|Santa|Sant'|y|rechts|links)){{0,2}}(?:[\s-]+[{_UP}][{_LOW}][\w'’-]*)"
               rf"{{1,3}})"),
    re.compile(r"\b(?P<v>(?:St\.?|Saint)\s+[A-Z][a-z]++(?:'s|’s|s)?+)(?!\s+(?:disease|syndrome|wort|fire|dance))"),
    # one-word hospitals in Nordic languages ("Rigshospitalet", "Sahlgrenska sjukhuset" is caught above)
    re.compile(rf"\b(?P<v>[{_UP}][{_LOW}]+(?:hospitalet|sjukhuset|sykehuset|sygehus|sygehuset))\b"),
    # "Hospice of the Western Reserve", "Hospital of St Cross", "Institute of Cancer Research"
    re.compile(r"\b(?P<v>(?:Hospital|Hospice|Infirmary|Institute|Clinic)\s+of\s+(?:the\s+)?(?:St\.?\s+)?[A-Z][\w'’-]+"
               r"(?:\s+[A-Z][\w'’-]+){0,3})"),
    # "ROYAL STOKE", "ROYAL DERBY HOSPITAL" in capitals
    re.compile(r"\b(?P<v>ROYAL\s+[A-Z]{3,}(?:\s+(?:HOSPITAL|INFIRMARY|GENERAL|[A-Z]{3,}))?)\b"),
]


_CARE_PLACE = re.compile(
    rf"(?i:\b(?:admitted|admission|transferred|transfer|referred|referral|moved|sent|seen|treated|operated|scanned|"
    rf"scan|surgery|biopsy|opinion|screening|trial|die|died|discharged|follow-up|attends|attending|inpatient|"
    rf"proton\s+beam|radiotherapy|chemo)(?:\s+[a-z]+){{0,2}}?\s+(?:at|to|from|in|by)\s+)(?:the\s+)?"
    rf"(?P<v>(?:[A-Z]{{2,5}}\s+)?[{_UP}][{_LOW}][\w'’-]*(?:[\s-][{_UP}][\w'’-]+){{0,2}})")


_PLACE_TOKEN = re.compile(r"[^\W_][\w'’&.-]*")
# before an acronym that is also clinical ("MRI", "ARI"): a move of the patient, not "at MRI" ("tumour size at MRI")
# or "from the MRI report"
_PLACE_CUE = re.compile(r"(?i:\b(?:transferred|admitted|discharged|moved|referred|seen|treated|blue-lighted)\s+"
                        r"(?:to|from|at|in))\s+$")


def _place_key(word: str) -> str:
    return word.lower().replace("’", "'").rstrip(".,:;'")


@lru_cache(maxsize=1)
def places() -> tuple[frozenset[str], int, frozenset[str], frozenset[str]]:
    """The gazetteer (``phi_places.txt``): names (lower case, words joined by one space), the most words in a
    name, acronyms, and acronyms that are also clinical abbreviations."""
    sections: dict[str, set[str]] = {"names": set(), "acronyms": set(), "ambiguous": set()}
    section = None
    for line in PLACES_FILE.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            section = sections[line.strip("[]")]
        else:
            section.add(" ".join(_place_key(w) for w in line.split()) if section is sections["names"] else line)
    longest = max(len(n.split()) for n in sections["names"])
    return (frozenset(sections["names"]), longest, frozenset(sections["acronyms"]), frozenset(sections["ambiguous"]))


def _gazetteer_spans(text: str) -> list[Found]:
    """Hospitals the gazetteer knows: "Derriford", "Groote Schuur", "the Christie" in any case (one word in small
    letters only when it is 7 letters or more: "treliske", not "guy's"), acronyms in capitals ("JCUH", "QEUH"),
    and acronyms that are also clinical abbreviations only after a move of the patient ("transferred to MRI")."""
    names, longest, acronyms, ambiguous = places()
    tokens = list(_PLACE_TOKEN.finditer(text))
    keys = [_place_key(t.group(0)) for t in tokens]
    found = []
    for i, token in enumerate(tokens):  # the longest name from each word on ("the Mater", "Mater Private"): merged
        word = token.group(0).rstrip(".,:;'’")
        if word in acronyms or (word in ambiguous and _PLACE_CUE.search(text, max(0, token.start() - 30),
                                                                          token.start())):
            found.append(Found(token.start(), token.start() + len(word), "hospital"))
            continue
        for n in range(min(longest, len(tokens) - i), 0, -1):
            if " ".join(keys[i:i + n]) in names:
                end = tokens[i + n - 1].start() + len(tokens[i + n - 1].group(0).rstrip(".,:;"))
                if not (n == 1 and text[token.start():end].islower() and end - token.start() < 7):
                    found.append(Found(token.start(), end, "hospital"))
                break
    return found


def _care_place_spans(text: str) -> list[Found]:
    found = []
    for m in _CARE_PLACE.finditer(text):
        words = [_base(w) for w in re.findall(r"[^\W\d_][\w'’-]*", m.group("v"))]
        if any(_excluded(w) or w in _GENERIC or w in _LAB for w in words):
            continue  # "referred to Oncology", "moved to Tagrisso", "seen in Clinic"
        found.append(Found(*m.span("v"), "hospital"))
    return found


def _hospital_spans(text: str) -> list[Found]:
    found = _care_place_spans(text) + _gazetteer_spans(text)
    for pattern in (_HOSPITAL_TITLE, _HOSPITAL_LOWER, _HOSPITAL_SHORT, *_WARDS):
        for m in pattern.finditer(text):
            s, e = m.span("v")
            if pattern is _HOSPITAL_LOWER:  # "went to leeds general infirmary" -> "leeds general infirmary"
                # "brian's at torbay hosp" -> "torbay hosp": the name starts after the last small word before it
                leads = list(re.finditer(r"([a-z'’-]+)\s+", text[s:e], re.I))[:-1]
                cut = [x for x in leads if _base(x.group(1)) in _STOP]
                if cut:
                    s += cut[-1].end()
                while (lead := re.match(r"([a-z'’-]+)\s+", text[s:e], re.I)) and (
                        lead.group(1).lower() in _STOP or lead.group(1).lower() in _NOT_NAME - {"st", "saint"}
                        or lead.group(1).lower() in _GENERIC):
                    s += lead.end()
            words = [_base(w) for w in re.findall(r"[A-Za-z'’-]+", text[s:e])]
            specific = [w for w in words if w not in _GENERIC and w not in ("st", "saint", "ward", "unit", "wing",
                                                                             "suite")]
            if pattern is _HOSPITAL_LOWER and any(w in _STOP for w in words[:-1]):
                continue
            if (not specific and not re.search(r"\d", text[s:e])) or any(w in _STOP for w in specific) or any(
                    _DRUGLIKE.search(w) for w in specific):
                continue  # "the Day Unit", "the hospital's policy", "my local hospital"
            while (lead := re.match(r"(?:the|The|a|A|at|At)\s+", text[s:e])):
                s += lead.end()
            tail = re.search(r",\s+([A-Z][a-z]{3,})$", text[s:e]) if pattern is _HOSPITAL_TITLE else None
            if tail and (_base(tail.group(1)) in _CLINICAL_WORDS or _EPONYM_NEXT.match(text[e:e + 30])):
                e -= len(tail.group(0))  # "St Vincent's University Hospital, Castleman disease": not a town
            found.append(Found(s, e, "hospital"))
    return found


# ---- web addresses: any host whose ending is a public suffix ("walkforwalter.scot", "linktr.ee/jaz")
_HOST = re.compile(r"(?<![\w@./-])(?P<v>(?:https?://)?(?P<h>(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.)+(?P<t>[a-z]{2,24}))"
                   r"(?::\d{2,5})?(?:/[^\s,;)\]>\"']*[^\s,;.)\]>\"'!?])?)(?![\w@-])")
_NOT_SUFFIX = frozenset("kg mg ml mm cm gy pt dr st vs am pm".split())  # units and abbreviations that are also suffixes


@lru_cache(maxsize=1)
def _suffixes():
    """tldextract with the public suffix list it ships (no download: an empty list of URLs to fetch)."""
    import tldextract

    return tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)


def _url_spans(text: str) -> list[Found]:
    if "." not in text:
        return []
    found = []
    for m in _HOST.finditer(text):
        if m.group("t") in _NOT_SUFFIX:
            continue
        parts = _suffixes()(m.group("h"))
        if parts.suffix and len(parts.domain) >= 2 and re.search(r"[a-z]", parts.domain, re.I):
            found.append(Found(*m.span("v"), "url"))
    return found


def general_spans(text: str) -> list[Found]:
    """Names, ages of 90 and over, addresses, postcodes and hospitals found by general knowledge (may overlap).

    >>> [(t[f.start:f.end], f.kind) for t in ["kwame asante is 93 yo, 18 moorside rd, bolton"]
    ...  for f in sorted(general_spans(t))]
    [('kwame asante', 'name'), ('93 yo', 'age_over_89'), ('18 moorside rd, bolton', 'address')]
    """
    if not text:
        return []
    names = []
    for f in _name_spans(text) + _surname_given_spans(text) + _more_name_spans(text) + _field_and_speaker_spans(text):
        if t := _SMALL_TITLE.search(text, max(0, f.start - 6), f.start):  # "mrs eileen fairclough"
            f = Found(f.start - len(t.group(0)), f.end, f.kind)
        names.append(f)
    return (names + _relative_spans(text) + _age_spans(text) + _address_spans(text) + _hospital_spans(text)
            + _url_spans(text))
