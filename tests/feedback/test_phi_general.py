"""The general recognisers of the PHI scrubber (name lists, ages of 90 and over, address, postcode and hospital
shapes): literal examples each way, without spaCy (fast)."""

from __future__ import annotations

import pytest

from feedback.phi_general import general_spans, name_lists
from feedback.phi_rules import merge


def _found(text: str) -> list[tuple[str, str]]:
    return [(text[f.start:f.end], f.kind) for f in merge(general_spans(text))]


@pytest.mark.parametrize("text,value,kind", [
    ("typing for my nan edna hargreaves, she is poorly", "edna hargreaves", "name"),
    ("pls call MS LUCY ABERNETHY back", "LUCY ABERNETHY", "name"),
    ("seen today: Wilhelmina de Vries with her carer", "Wilhelmina de Vries", "name"),
    ("re o'sullivan, padraig for cycle 6", "o'sullivan, padraig", "name"),
    ("his wife akosua is his carer", "akosua", "relative_name"),
    ("Discussed with daughter (Morwenna) at the bedside", "Morwenna", "relative_name"),
    ("Frail 92F with DLBCL", "92F", "age_over_89"),
    ("he is ninety-three and still gardening", "ninety-three", "age_over_89"),
    ("Dorothy Ashworth, 99, for review", "99", "age_over_89"),
    ("aged one hundred and two", "one hundred and two", "age_over_89"),
    ("moved to 18 moorside rd, bolton last year", "18 moorside rd, bolton", "address"),
    ("1108 W Belmont Ave, Apt 2R, Chicago, IL 60657", "1108 W Belmont Ave, Apt 2R, Chicago", "address"),
    ("The Old Rectory, Mill Lane, Great Ayton", "The Old Rectory, Mill Lane, Great Ayton", "address"),
    ("post it to 22 Heol y Parc, Pontypridd please", "22 Heol y Parc", "address"),
    ("send to 3 the paddocks, ashby de la zouch, le65 1ht", "le65 1ht", "postcode"),
    ("transferred to leeds general infirmary overnight", "leeds general infirmary", "hospital"),
    ("from Kettering General to Bristol Haematology and Oncology Centre", "Bristol Haematology and Oncology Centre",
     "hospital"),
    ("now on Ward B2, then Larch Ward", "Ward B2", "hospital"),
])
def test_finds(text, value, kind):
    found = _found(text)
    assert any(value in v and (k == kind or kind in ("address", "postcode")) for v, k in found), found


@pytest.mark.parametrize("text", [
    "Ann Arbor stage IIIB, IPI 3; Sister Mary Joseph nodule; Hodgkin lymphoma, Ewing sarcoma.",
    "sats 92% on air, Hb 95 g/L, HR 96, infusion over ninety minutes, 94 mg/m2",
    "take 2 tablets the same way each day for 3 days in a row",
    "Clinic at 2pm; the Day Unit and the oncology ward; my local hospital; the hospital's policy",
    "Oligometastatic Stage IV disease may still be offered SABR.",
    "Pembrolizumab 200 mg Q3W; Khorana score 2; CAPOX x 8 cycles; Gleason 4+4=8, PSA 22.",
    "What should I do if my temperature is 38.5 after chemotherapy?",
])
def test_leaves_clinical_text_alone(text):
    assert _found(text) == []


def test_name_lists_are_loaded_and_exclude_common_words():
    first, last = name_lists()
    assert len(first) > 5000 and len(last) > 5000
    assert {"maureen", "tadeusz", "kwame"} <= first and {"hargreaves", "nguyen"} <= last
    assert not {"will", "grace", "may", "stage", "the"} & (first | last)
