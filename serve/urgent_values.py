"""Lab and vital-sign values in a message, read as numbers and said in words for the urgent-care detector.

"K 6.9", "Na 116", "Adj Ca 3.6", "BP 230/135", "sats 88% RA", "ALT 620", "Hb 68 from 95", "temp 101.5 F": staff
shorthand and patients' portal read-outs carry the emergency in a number, which neither a sentence embedding nor
character n-grams read as a size. A rule that parses the number generalises to wordings it was not written for,
so each value beyond an emergency threshold becomes a short phrase ("dangerously high potassium") that the
detector appends to the message before both of its models see it (:func:`annotate`), and
:func:`value_conditions` names the conditions such values point to. Thresholds are textbook alarm values (UK
and US units both), not tuned on any labelled set.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Finding:
    """One value beyond an alarm threshold."""

    analyte: str  # e.g. "potassium"
    value: float
    phrase: str  # what the detector reads, e.g. "dangerously high potassium"
    condition: str  # the serve.urgent.CONDITIONS label it points to most often


def _rx(pattern: str) -> re.Pattern:
    return re.compile(pattern, re.IGNORECASE)


_NUM = r"(\d{1,4}(?:\.\d+)?)"
_GLUE = r"\s*(?:\+|2\+)?\s*(?:level|count|reading)?\s*(?:is|was|were|of|=|:|now|today|came\s+back(?:\s+at)?|at|up\s+to|rising|up)?\s*"


def _lab(names: str) -> re.Pattern:
    # the whole number, and not a percentage ("BM 30% blasts" is a bone marrow, not a glucose)
    return _rx(rf"(?<![\w/])(?:{names})\b{_GLUE}{_NUM}(?!\d|\.\d|\s*%)")


# (analyte, pattern whose group 1 is the value, test(value, match) -> phrase or None, condition)
_POTASSIUM = _lab(r"K|potassium|pot")
_SODIUM = _lab(r"Na|sodium")
_MG = _rx(r"\s*mg")
_CALCIUM = _lab(r"(?:adj(?:usted)?\.?\s*|corr(?:ected)?\.?\s*)?(?:Ca|calcium)")
_TEMP = _rx(r"(?<![\w/])(?:T|temp(?:erature)?|pyrexi\w*|febrile|fever(?:\s+of)?|running|thermometer\s+says)"
            r"\s*(?:is|was|of|=|:|at|reading|now|up\s+to)?\s*(\d{2,3}(?:\.\d)?)\s*(°?\s*[CF]\b)?")
_BARE_TEMP = _rx(r"(?<![\w./-])(3[89]\.\d|4[01]\.\d|10[0-5]\.\d)(?![\d/%.])\s*(°?\s*[CF]\b)?(?!\s*(?:mm|mg|kg|ml|mL|g\b|x|%))")
_BP = _rx(r"(?<![\w/.])(\d{2,3})\s*(?:/|\s+over\s+)\s*(\d{2,3})(?![\d/])")
_BP_CONTEXT = _rx(r"\b(?:BP|blood\s+pressure|bp\s+machine|pressure|hypertensi\w*|SBP)\b")
_SBP = _lab(r"SBP|systolic")
_HR = _lab(r"HR|heart\s+rate|pulse")
_SATS = _rx(r"(?<![\w/])(?:sats?|SpO2|O2\s*sat\w*|saturation\w*|oxygen\b[^.\d]{0,30})\s*(?:is|was|of|=|:|now|down\s+to|says|at)?"
            r"\s*(\d{2})(?:\s*%|\b)")
_TROPONIN = _rx(r"\btrop\w*\s*(?:[IT]\s+)?(?:is|was|of|=|:|now|up|rising|has\s+risen\s+to)?\s*(\d+(?:\.\d+)?)\s*(ng/mL)?")
_TROP_RISING = _rx(r"\btrop\w*[^.]{0,25}\b(?:rising|risen|up\b|increasing|->|→)")
_TRANSAMINASE = _lab(r"ALT|AST|transaminases?")
_ULN = _rx(r"\b(?:ALT|AST|LFTs?|transaminases?|liver\s+enzymes)\b[^.]{0,20}?(\d+(?:\.\d+)?)\s*(?:x|times)\s*(?:the\s+)?(?:ULN|upper)")
_BILIRUBIN = _lab(r"bili(?:rubin)?|T\s*bili")
_CREATININE = _lab(r"creat(?:inine)?|Cr")
_FROM = _rx(r"(?<![\w/])(?:creat(?:inine)?|Cr)\b[^.\d]{0,12}(\d+(?:\.\d+)?)\s*(?:from|\(?was)\s*(\d+(?:\.\d+)?)")
_FROM_REV = _rx(r"(?<![\w/])(?:creat(?:inine)?|Cr)\b[^.\d]{0,12}(?:from\s*)?(\d+(?:\.\d+)?)\s*(?:->|→|to)\s*(\d+(?:\.\d+)?)")
_EGFR = _lab(r"e?GFR")
_HB = _lab(r"Hb|ha?emoglobin")
_PLATELETS = _lab(r"plts?|platelets?")
_NEUTROPHILS = _lab(r"neut(?:rophil)?s?|ANC")
_GLUCOSE = _lab(r"glucose|BM|CBG|BG|blood\s+sugar|sugars?")
_SUGAR_HI = _rx(r"\b(?:sugar|glucose|meter|BM)\w*[^.]{0,25}['\"]?\bHI\b")
_KETONES = _lab(r"ketones?")
_PH = _rx(r"\bpH\s*(?:of|is|was|:)?\s*(\d\.\d{1,2})")
_GCS = _lab(r"GCS")
_URINE = _rx(r"\b(?:UO|UOP|urine\s+output)\b[^.\d<]{0,15}(<\s*)?(\d+(?:\.\d+)?)\s*(ml/kg|mL/kg|ml|mL)?")
_PHOSPHATE = _lab(r"PO4|phos(?:phate)?")
_URATE = _lab(r"urate|uric\s+acid")
_STOOLS = _rx(r"(?:diarrh\w*|poo\w*|stools?|BO|runs|loo|toilet)[^.\d]{0,20}(\d{1,2})\s*(?:x|times)\b|"
              r"\b(\d{1,2})(?:\s*-\s*\d{1,2})?\s*(?:x\s*|times\s+)?(?:watery\s+|loose\s+|bloody\s+)?(?:stools|BO|poos)\b")
_SEIZURE_MINUTES = _rx(r"\b(?:fit|seiz\w*|convuls\w*|fitting)\b[^.]{0,30}?(\d{1,2})(?:\s*-\s*\d{1,2})?\s*min")


def _first(pattern: re.Pattern, text: str, test) -> list[float]:
    """The values of every match of ``pattern`` (group 1) for which ``test`` holds."""
    out = []
    for m in pattern.finditer(text):
        try:
            v = float(m.group(1))
        except (TypeError, ValueError):
            continue
        if test(v, m):
            out.append(v)
    return out


def value_findings(text: str) -> list[Finding]:
    """The lab and vital values in ``text`` beyond an emergency threshold (each analyte once).

    >>> [f.phrase for f in value_findings("Burkitt D1: K 6.9, PO4 2.6, Cr 240 from 80, UO 10 ml/h")]
    ['dangerously high potassium', 'rapidly rising creatinine, kidney injury', 'very low urine output', 'high phosphate']
    >>> value_findings("K 4.1, Ca 2.38, Na 138, creat 72, BP 128/80. All ok for C4?")
    []
    >>> value_findings("Breast ca 5 years ago, lung ca 12 months on ADT; BM 30% blasts")
    []
    """
    found: list[Finding] = []

    def add(analyte: str, values: list[float], phrase: str, condition: str) -> None:
        if values and all(f.analyte != analyte for f in found):
            found.append(Finding(analyte, values[0], phrase, condition))

    add("potassium", _first(_POTASSIUM, text, lambda v, m: 6.0 <= v < 10), "dangerously high potassium", "tumour_lysis")
    add("sodium", _first(_SODIUM, text, lambda v, m: 90 <= v <= 125), "dangerously low sodium", "hyponatraemia")
    # "ca" is also cancer ("breast ca 5 years ago"): a whole number counts only after "calcium" or before mg/dL
    add("calcium", _first(_CALCIUM, text, lambda v, m: "." in m.group(1) and (3.0 <= v < 6 or 12 <= v < 25) or (
        12 <= v < 25 and ("calcium" in m.group(0).lower() or _MG.match(text, m.end())))), "dangerously high calcium",
        "hypercalcaemia")
    fever = _first(_TEMP, text, lambda v, m: 38.0 <= v < 43 or (100.4 <= v < 108 and "C" not in (m.group(2) or "")))
    fever += _first(_BARE_TEMP, text, lambda v, m: v < 43 or "C" not in (m.group(2) or "").upper())
    add("temperature", fever, "fever", "neutropenic_sepsis")
    pairs = [(int(m.group(1)), int(m.group(2))) for m in _BP.finditer(text)]
    bp_context = bool(_BP_CONTEXT.search(text))
    high = [s for s, d in pairs if 60 <= s <= 300 and 30 <= d < s and (s >= 180 or d >= 120) and (bp_context or s >= 190)]
    add("blood pressure", high, "very high blood pressure", "hypertensive_crisis")
    low = [s for s, d in pairs if 50 <= s < 90 and 20 <= d < s] + _first(_SBP, text, lambda v, m: 40 <= v < 90)
    add("low blood pressure", low, "low blood pressure, shock", "infusion_reaction_anaphylaxis")
    add("heart rate", _first(_HR, text, lambda v, m: v >= 120 and v < 250), "fast heart rate", "neutropenic_sepsis")
    add("slow heart rate", _first(_HR, text, lambda v, m: 20 <= v <= 45), "very slow heart rate", "immune_myocarditis")
    add("oxygen", _first(_SATS, text, lambda v, m: 50 <= v < 92), "low oxygen saturation", "immune_pneumonitis")
    trop = _first(_TROPONIN, text, lambda v, m: v >= 50 or (m.group(2) and v >= 0.1))
    add("troponin", trop or ([1.0] if _TROP_RISING.search(text) else []), "raised troponin, heart muscle injury",
        "immune_myocarditis")
    liver = _first(_TRANSAMINASE, text, lambda v, m: 200 <= v < 20000) + _first(_ULN, text, lambda v, m: v >= 5)
    add("liver enzymes", liver, "very high liver enzymes, hepatitis", "immune_hepatitis")
    add("bilirubin", _first(_BILIRUBIN, text, lambda v, m: 3 <= v < 30 and "." in m.group(1) or 45 <= v < 1000),
        "jaundice, high bilirubin", "immune_hepatitis")
    rising = [a for a, b in ((float(m.group(1)), float(m.group(2))) for m in _FROM.finditer(text)) if a >= 1.5 * b > 0]
    rising += [b for a, b in ((float(m.group(1)), float(m.group(2))) for m in _FROM_REV.finditer(text)) if b >= 1.5 * a > 0]
    creat = rising + _first(_CREATININE, text, lambda v, m: v >= 300 or (2.5 <= v < 20 and "." in m.group(1)))
    add("creatinine", creat, "rapidly rising creatinine, kidney injury", "acute_kidney_injury")
    add("egfr", _first(_EGFR, text, lambda v, m: 1 <= v < 20), "very low kidney function", "acute_kidney_injury")
    add("haemoglobin", _first(_HB, text, lambda v, m: 20 <= v <= 70 or (3 <= v <= 7 and "." in m.group(1))),
        "very low haemoglobin, blood loss", "major_bleeding")
    add("platelets", _first(_PLATELETS, text, lambda v, m: v <= 10), "very low platelets, bleeding risk", "major_bleeding")
    add("neutrophils", _first(_NEUTROPHILS, text, lambda v, m: v < 0.5 and "." in m.group(1) or 10 <= v < 500),
        "very low neutrophils", "neutropenic_sepsis")
    sugar = _first(_GLUCOSE, text, lambda v, m: 25 <= v < 100 or 400 <= v < 2000) + ([1.0] if _SUGAR_HI.search(text) else [])
    add("glucose", sugar, "very high blood sugar, ketoacidosis", "immune_endocrine_crisis")
    add("ketones", _first(_KETONES, text, lambda v, m: 3 <= v < 20), "high ketones, ketoacidosis", "immune_endocrine_crisis")
    add("ph", _first(_PH, text, lambda v, m: 6.5 <= v < 7.3), "acidosis", "immune_endocrine_crisis")
    add("gcs", _first(_GCS, text, lambda v, m: 3 <= v <= 13), "reduced consciousness", "raised_icp_seizure")
    urine = [float(m.group(2)) for m in _URINE.finditer(text)
             if (m.group(3) or "").lower() == "ml/kg" and float(m.group(2)) <= 0.5
             or (m.group(3) or "").lower() != "ml/kg" and float(m.group(2)) <= 20]
    add("urine output", urine, "very low urine output", "acute_kidney_injury")
    add("phosphate", _first(_PHOSPHATE, text, lambda v, m: 1.8 <= v < 5 or 6.5 <= v < 20), "high phosphate", "tumour_lysis")
    add("urate", _first(_URATE, text, lambda v, m: 0.55 <= v < 2 or 9 <= v < 30 or 550 <= v < 2000), "high urate",
        "tumour_lysis")
    stools = [float(m.group(1) or m.group(2)) for m in _STOOLS.finditer(text) if 7 <= float(m.group(1) or m.group(2)) < 40]
    add("stools", stools, "severe diarrhoea", "immune_colitis")
    add("seizure", _first(_SEIZURE_MINUTES, text, lambda v, m: 5 <= v < 60), "prolonged seizure", "raised_icp_seizure")
    return found


def annotate(text: str) -> str:
    """``text`` with the alarm values it holds said in words at the end (what the detector's models read).

    >>> annotate("Adj Ca 3.6, GCS 13.")
    'Adj Ca 3.6, GCS 13. [dangerously high calcium; reduced consciousness]'
    >>> annotate("Adj Ca 2.4.")
    'Adj Ca 2.4.'
    """
    found = value_findings(text)
    return f"{text} [{'; '.join(f.phrase for f in found)}]" if found else text


# Values that alone make a message urgent: a described patient with one of these needs assessment now, whatever
# the words around it. Fever, heart rate, phosphate/urate and a low eGFR (often chronic) are left to the models
# (they need context: chemo, a second sign, a baseline).
DECISIVE = frozenset({"potassium", "sodium", "calcium", "blood pressure", "low blood pressure", "oxygen", "troponin",
                      "liver enzymes", "creatinine", "haemoglobin", "platelets", "glucose", "ketones", "ph",
                      "gcs", "stools", "seizure"})
# signs of shock, hypoxia or a low conscious level belong to many emergencies: they flag a message, but name their
# condition only when nothing more specific (a keyword rule, the classifier) names one
NONSPECIFIC = frozenset({"low blood pressure", "oxygen", "gcs"})
# a question about a threshold or a teaching case quotes values without describing a patient
_EDUCATION = re.compile(r"\b(?:threshold|cut-?off|definition|defined?|counts?\s+as|teaching|exam\s+question|"
                        r"what\s+(?:level|value|number)|at\s+what|how\s+(?:high|low)\s+(?:does|should|must|can))\b",
                        re.IGNORECASE)


def value_conditions(text: str, specific: bool = False) -> list[str]:
    """The conditions that decisive alarm values in ``text`` point to (none in a question about thresholds).

    Args:
        text: the message.
        specific: leave out the values in :data:`NONSPECIFIC` (low blood pressure, low oxygen, low GCS).

    >>> value_conditions("Na 116, GCS 12, vomiting.")
    ['hyponatraemia', 'raised_icp_seizure']
    >>> value_conditions("BP 78/40, sats 85%", specific=True), value_conditions("BP 78/40")
    ([], ['infusion_reaction_anaphylaxis'])
    >>> value_conditions("At what sodium level, e.g. Na 120, is hypertonic saline used?")
    []
    """
    if _EDUCATION.search(text):
        return []
    out: list[str] = []
    for f in value_findings(text):
        if f.analyte in DECISIVE and f.condition not in out and not (specific and f.analyte in NONSPECIFIC):
            out.append(f.condition)
    return out
