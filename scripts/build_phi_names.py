"""Rebuild feedback/phi_names.txt: given names and surnames from Faker's person providers (MIT), for the scrubber.

The scrubber uses the lists to recognise names that spaCy's small model and the cue rules miss: lower-case
("maureen doyle"), single given names ("ask Joanne"), SURNAME in capitals after a title. Words that are common
English words as well as names ("will", "grace", "long") are left out, as are words of two letters.

    pip install faker==40.63.0 && python scripts/build_phi_names.py   # not needed at run time
"""

import importlib
import pkgutil
import re
import unicodedata
from pathlib import Path

import faker
import faker.providers.person as person
from spacy.lang.en.stop_words import STOP_WORDS

OUT = Path(__file__).resolve().parents[1] / "feedback" / "phi_names.txt"
LATIN = re.compile(r"^[a-zà-öø-ÿā-žḁ-ỿ'’-]{3,}$")
# common English (and clinical) words that some locale lists as a name
AMBIGUOUS = set("""will grace may mark hope faith joy rose ivy june april august bill jack frank art dawn rich guy max
ray don eve sue pat sky summer autumn chase wade lance bob chip dean drew gene clay cliff dale glen heath lily iris
holly amber ruby pearl jade crystal sunny star angel baby honey precious miracle destiny royal king prince princess
duke earl lord noble major sterling page rusty buddy sandy misty storm rain river brook ocean forest hunter ranger
archer baker cook carter mason porter miller fisher taylor butler turner walker parker bishop abbot chance cash
price penny rich bond lamb fox wolf bear bird crane drake finch hawk lark robin swan wren jay mole crow
long son man hung young bright hale hart hill wood moor field ford green brown white black gray grey gold silver
stone rock lake shore bay vale dell fern heather hazel olive sage basil clove bean bell bliss blue cole rye
case mass marsh more most much nice page park pine poor post pound rice rush scott short small smart spring
stark steel strong sweet tower trim well west wise worth young love lucky happy merry early late major minor
august frank faith wolf sharp best cross day days even evans lewis ward wells jones wright hall may
chemo stage grade scan bed cell cells node trial drug dose cancer tumor tumour blood bone brain lung liver
kidney heart chest back breast skin nurse doctor patient clinic ward unit centre center hospital plan review
mild severe acute chronic early late low high normal new old next last first second third line""".split())


# Faker has no Welsh, Scottish Gaelic or Irish locale: common given names of those languages, from general knowledge
# (UK and Irish clinics see them daily)
CELTIC_GIVEN = set("""aled alun angharad aoife bethan blodwen branwen bronwen cadi cai caoimhe carys catrin catriona
cerys ciarán ciaran cormac dafydd deiniol dilys dwynwen efa eilidh eirlys eleri elin elis emyr eurig ffion gareth
geraint gethin glenys glyn gruff gruffudd gruffydd gwen gwenllian gwilym gwyn heledd huw hywel ianto idris ieuan ifan
iolo iwan llinos lowri mabli mairi mared meinir morag myfanwy nia niamh oisín oisin osian owain padraig pádraig rhodri
rhian rhiannon rhys ruaridh saoirse seren sian siân sinead sinéad sioned siobhan tadhg tegan tomos""".split())


def _fold(word: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFKD", word) if not unicodedata.combining(c))


def main() -> None:
    first, last = set(), set()
    for module in pkgutil.iter_modules(person.__path__):
        provider = importlib.import_module(f"{person.__name__}.{module.name}").Provider
        for attr in dir(provider):
            target = first if attr.startswith("first_name") or attr == "first_romanized_names" else \
                last if attr.startswith("last_name") or attr == "last_romanized_names" else None
            values = getattr(provider, attr)
            if target is None or not isinstance(values, (tuple, list, dict, set)):
                continue
            for name in values:
                if isinstance(name, str):
                    target.update(w for w in name.lower().split() if LATIN.match(w))
    first |= CELTIC_GIVEN
    for names in (first, last):  # people type "Jose", "Tomas", "Zielinska" as often as "José"
        names.update({f for w in names if (f := _fold(w)) != w and LATIN.match(f)})
    drop = AMBIGUOUS | {w.lower() for w in STOP_WORDS}
    first, last = sorted(first - drop), sorted(last - drop)
    OUT.write_text(f"# given names and surnames (lower case) from Faker {faker.VERSION} person providers (MIT licence,\n"
                   "# (c) Daniele Faraglia and contributors) and common Welsh, Scottish Gaelic and Irish given names, less common\n"
                   "# English words; built by scripts/build_phi_names.py\n"
                   + "[first]\n" + "\n".join(first) + "\n[last]\n" + "\n".join(last) + "\n", encoding="utf-8")
    print(f"{OUT}: {len(first)} given names, {len(last)} surnames")


if __name__ == "__main__":
    main()
