"""The urgent-care detector: sentence embeddings and a learned classifier, with keyword rules for recall.

A message describing an oncological or medical emergency ("temp 38.4 and shivering since chemo on
Tuesday", "my dad's legs went weak and he can't pee") must get the guard's urgent notice; a question *about*
the same condition ("what is tumour lysis syndrome?"), a resolved past event or a routine side effect must
not. Keywords cannot tell these apart in words they were not written for, so the detector learns them:

1. every message is embedded with the project's MiniLM sentence embedder (:mod:`core.embed`, offline),
   and also described by its character n-grams (TF-IDF: lay spellings, typos and shorthand such as "temp 38.4",
   "BO/day", "sats 86%" that a sentence embedding blurs). Lab and vital values beyond alarm thresholds ("K 6.9",
   "Na 116", "BP 230/135", "ALT 620") are parsed as numbers and said in words at the end of the message first
   (:func:`serve.urgent_values.annotate`), so both models read "dangerously high potassium" however it was written;
2. two logistic regressions (scikit-learn), one on each representation, say whether the message is urgent; their
   mean probability ``p_urgent >= threshold`` flags it. Two more, trained on the urgent messages only, say which
   of the :data:`CONDITIONS` it describes (the notice names them);
3. the keyword rules (:data:`URGENT_RULES`, the guard's original detector) fire as well: they are precise,
   and they name a condition the classifier may rank second; so does a decisive alarm value alone
   (:func:`serve.urgent_values.value_conditions`: potassium, sodium, calcium, blood pressure, oxygen, troponin,
   liver enzymes, creatinine, haemoglobin, platelets, glucose ...), unless the message asks about a threshold.

Training is deterministic (lbfgs, fixed data order) and takes a few seconds at first use: the labelled
development split ``data/eval/detectors/urgent_dev.jsonl`` (plus ``urgent_dev_extra.jsonl``,
``urgent_dev_extra2.jsonl`` and ``urgent_dev_extra3.jsonl``, messages the team wrote for training) is read,
hashed (:attr:`UrgentDetector.data_hash`) and fitted. The test split is never read here;
``python -m serve.guard --eval data/eval/detectors/urgent_test.jsonl`` measures it, and
``python -m serve.guard --cv 10`` (or ``--cv speaker``) estimates held-out figures on the training messages.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from core.errors import OncoLoopError
from serve.urgent_values import annotate, value_conditions

REPO = Path(__file__).resolve().parents[1]
TRAINING_FILES = tuple(REPO / "data/eval/detectors" / name for name in (
    "urgent_dev.jsonl", "urgent_dev_extra.jsonl", "urgent_dev_extra2.jsonl", "urgent_dev_extra3.jsonl"))

# label -> the words the notice uses for it
CONDITIONS: dict[str, str] = {
    "neutropenic_sepsis": "possible neutropenic sepsis",
    "spinal_cord_compression": "possible metastatic spinal cord compression",
    "svc_obstruction": "possible superior vena cava obstruction / stridor",
    "hypercalcaemia": "possible severe hypercalcaemia",
    "tumour_lysis": "possible tumour lysis syndrome",
    "immune_colitis": "possible severe immune-related colitis",
    "immune_pneumonitis": "possible immune-related pneumonitis",
    "immune_hepatitis": "possible immune-related hepatitis",
    "immune_myocarditis": "possible immune-related myocarditis",
    "immune_endocrine_crisis": "possible immune-related endocrine crisis (adrenal, pituitary, diabetic)",
    "hyponatraemia": "possible severe hyponatraemia",
    "raised_icp_seizure": "possible raised intracranial pressure / seizure",
    "major_bleeding": "possible major bleeding",
    "pe_vte": "possible pulmonary embolism / venous thrombosis",
    "bowel_obstruction": "possible bowel obstruction",
    "infusion_reaction_anaphylaxis": "possible anaphylaxis / severe infusion reaction",
    "cardiac_tamponade": "possible cardiac tamponade",
    "hypertensive_crisis": "possible hypertensive crisis",
    "acute_kidney_injury": "possible acute kidney injury",
}


# ---- the keyword rules (precise, narrow: they need a described patient) -------------------------------

def _rx(pattern: str) -> re.Pattern:
    return re.compile(pattern, re.IGNORECASE)


# A described patient: a first-hand case, not a question about a condition in general.
_CASE = _rx(r"\b(?:my|this|our|her|his|the)\s+(?:\w+\s+)?patient\b|\bpatient(?:'s)?\s+(?:has|had|is|now|reports|"
            r"developed|phoned|presents|with)\b|\b(?:he|she)(?:'s|\s+is|\s+has|\s+had|\s+feels|\s+reports)\b|"
            r"\b(?:now|just|today|yesterday|tonight|since this morning|this morning|since)\b|\bphoned\b|"
            r"\bfamily says\b|\bday\s+\d+\b|\b\d+\s+(?:minutes?|hours?|days?)\s+(?:ago|into)\b|"
            r"\b(?:temp(?:erature)?|potassium|calcium|neutrophils|BP|heart rate)\b[^.?\d]{0,20}\d")
_CHEMO = (r"(?:chemo\w*|docetaxel|paclitaxel|carboplatin|cisplatin|FOLF\w+|R-CHOP|CHOP|AC\b|EC\b|induction|"
          r"capecitabine|cycle|neutrophils?\s*(?:count\s*)?(?:of\s*|is\s*|was\s*)?0\.\d|neutropeni\w*|AML|"
          r"leuk\w+mia|lymphoma|myeloma|post-chemo|SACT|gemcitabine|irinotecan|oxaliplatin|etoposide|"
          r"cyclophosphamide|doxorubicin)")
_FEVER = (r"(?:fever\w*|febrile|pyrexi\w*|rigors?|shiver\w*|3[89]\.\d\s*°?\s*C\b|"
          r"temp(?:erature)?\s*(?:of|is|was|:|at)?\s*(?:\d{2}\.\d\s*then\s*)?3[89](?:\.\d)?)")
_NEURO_LEGS = (r"(?:leg\s+weakness|weak(?:ness)?\s+(?:in\s+)?(?:his|her|the|both)?\s*legs|"
               r"legs?\s+(?:are\s+|feel\s+)?weak|"
               r"numb\w*|saddle|urinary\s+retention|(?:trouble|difficulty)\s+passing\s+urine|incontinen\w*|"
               r"can't\s+walk|cannot\s+walk|unable\s+to\s+walk)")

# condition: patterns that must all match
URGENT_RULES: dict[str, list[re.Pattern]] = {
    "neutropenic_sepsis": [_rx(_FEVER), _rx(_CHEMO), _CASE],
    "spinal_cord_compression": [_rx(r"\bback\s+pain|\bspin\w*\s+pain|\bcord\s+compression"), _rx(_NEURO_LEGS), _CASE],
    "svc_obstruction": [
        _rx(r"facial\s+swelling|swollen\s+face|face\s+(?:is\s+)?swollen|(?:distended|engorged)\s+(?:neck\s+)?veins|"
            r"\bSVC\b|superior\s+vena\s+cava"),
        _rx(r"breathless\w*|short(?:ness)?\s+of\s+breath|dyspn\w*|lying\s+flat|stridor|swelling|veins"), _CASE],
    "tumour_lysis": [
        _rx(r"potassium\s*(?:of\s*|is\s*|was\s*)?[6-9](?:\.\d)?\b|hyperkal\w*|phosphate\s+(?:is\s+)?(?:high|raised)|"
            r"urine\s+output\s+(?:is\s+)?(?:falling|dropping|low)|tumou?r\s+lysis"),
        _rx(r"induction|chemo\w*|lymphoma|leuk\w+mia|started|venetoclax|rasburicase|tumou?r\s+lysis"), _CASE],
    "hypercalcaemia": [
        _rx(r"calcium\s*(?:came\s+back\s*|of\s*|is\s*|was\s*|:\s*)?(?:[3-4]\.\d)|hypercalc\w*"),
        _rx(r"confus\w*|drows\w*|thirst\w*|vomit\w*|[3-4]\.\d\s*mmol"), _CASE],
    "infusion_reaction_anaphylaxis": [
        _rx(r"\bwheez\w*|stridor|BP\s*[4-8]\d\s*/|hypotens\w*|throat\s+swelling|collaps\w*"),
        _rx(r"infusion|minutes\s+into|first\s+(?:dose|cycle)"), _CASE],
    "immune_colitis": [
        _rx(r"\b(?:[7-9]|1\d|2\d)\s+(?:\w+\s+)?stools|bloody\s+diarrh\w*|diarrh\w*\s+with\s+blood|"
            r"stools?\s+.{0,30}blood"),
        _rx(r"ipilimumab|nivolumab|pembrolizumab|atezolizumab|durvalumab|immunotherapy|checkpoint"), _CASE],
    "raised_icp_seizure": [
        _rx(r"seizure\s+lasting\s+(?:[5-9]|\d{2})|status\s+epilepticus|(?:still\s+)?(?:not\s+responsive|unresponsive)"),
        _CASE],
}


def rule_conditions(text: str) -> list[str]:
    """The conditions the keyword rules find described in ``text`` (in :data:`CONDITIONS` order).

    >>> rule_conditions("Had docetaxel 8 days ago, temperature 38.6 C today. Can it wait?")
    ['neutropenic_sepsis']
    >>> rule_conditions("How is febrile neutropenia defined in guidelines after chemotherapy?")
    []
    """
    return [name for name, patterns in URGENT_RULES.items() if all(p.search(text) for p in patterns)]


# ---- the learned detector ------------------------------------------------------------------------------

Embedder = Callable[[list[str]], np.ndarray]


def read_labelled(path: Path) -> list[dict]:
    """Labelled urgent-care messages (``{"text", "urgent", "condition"}`` per line) from a JSONL file.

    Raises:
        OncoLoopError: the file is missing, is not JSONL, or a record lacks ``text``/``urgent`` or names an
            unknown condition.
    """
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise OncoLoopError(f"cannot read {path} ({e}); pass a JSONL file of labelled urgent-care messages "
                            "such as data/eval/detectors/urgent_dev.jsonl.")
    items = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as e:
            raise OncoLoopError(f"{path}:{n} is not valid JSON ({e}); each line must be one labelled message.")
        if not isinstance(item, dict) or not isinstance(item.get("text"), str) or not isinstance(item.get("urgent"), bool):
            raise OncoLoopError(f"{path}:{n} needs a string 'text' and a boolean 'urgent' "
                                '(e.g. {"text": "...", "urgent": true, "condition": "pe_vte"}).')
        if item["urgent"] and item.get("condition") not in CONDITIONS:
            raise OncoLoopError(f"{path}:{n}: an urgent message needs a 'condition', one of: {', '.join(CONDITIONS)}.")
        items.append(item)
    if not items:
        raise OncoLoopError(f"{path} holds no labelled messages.")
    return items


@dataclass
class UrgentDetector:
    """MiniLM and character n-grams + logistic regression (urgent or not; which condition), and the keyword rules.

    Args:
        embed: texts -> unit-length embeddings (default: :func:`core.embed.embed`, MiniLM).
        threshold: ``p_urgent`` from which a message is urgent (chosen by cross-validation on the dev split).
        rules: whether the keyword rules can also flag a message.
        files: the labelled training files (missing optional ones are skipped; the first must exist).
    """

    embed: Embedder | None = None
    threshold: float = 0.5
    rules: bool = True
    model: bool = True  # false: the keyword rules alone (no embedding, nothing to fit)
    files: tuple[Path, ...] = TRAINING_FILES
    values: bool = True  # lab and vital values beyond alarm thresholds said in words for both models (urgent_values)
    value_rule: bool = True  # an alarm value alone flags a message (urgent_values.value_conditions)
    combine: str = "mean"  # how the two models' p_urgent are combined: "mean" or "max"
    data_hash: str = ""
    _fitted: tuple | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def _embedder(self) -> Embedder:
        if self.embed is None:
            from core.embed import embed

            self.embed = embed
        return self.embed

    def training_items(self) -> list[dict]:
        """The labelled messages the classifier is fitted on (dev split and its extra file)."""
        items = read_labelled(self.files[0])
        for extra in self.files[1:]:
            if extra.exists():
                items += read_labelled(extra)
        return items

    def fit(self, items: list[dict] | None = None) -> "UrgentDetector":
        """Fit the classifiers (deterministic); ``items`` default to :meth:`training_items`."""
        from sklearn.linear_model import LogisticRegression

        items = items if items is not None else self.training_items()
        texts = self._model_input([i["text"] for i in items])
        self.data_hash = _hash(items)
        from sklearn.feature_extraction.text import TfidfVectorizer

        x = self._embedder()(texts)
        ngrams = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True)
        g = ngrams.fit_transform(texts)
        y = np.array([i["urgent"] for i in items])
        labels = [i["condition"] for i in items if i["urgent"]]
        urgent = (LogisticRegression(C=C_URGENT, class_weight="balanced", max_iter=3000).fit(x, y),
                  LogisticRegression(C=C_URGENT_NGRAMS, class_weight="balanced", max_iter=3000).fit(g, y))
        conditions = (LogisticRegression(C=C_CONDITION, max_iter=3000).fit(x[y], labels),
                      LogisticRegression(C=C_CONDITION, max_iter=3000).fit(g[np.flatnonzero(y)], labels))
        self._fitted = (ngrams, urgent, conditions)
        return self

    def _models(self) -> tuple:
        with self._lock:  # the gateway's worker threads may all arrive at once on the first request
            if self._fitted is None:
                self._fit_or_load()
        return self._fitted

    def cache_key(self, items: list[dict]) -> str:
        """The cached fit's file name: the training data, the features and the model settings all change it."""
        import sklearn

        return (f"urgent-v{MODEL_VERSION}-{_hash(items)}-values{int(self.values)}-{self.combine}-C{C_URGENT}-"
                f"{C_URGENT_NGRAMS}-{C_CONDITION}-sklearn{sklearn.__version__}.joblib")

    def _fit_or_load(self) -> None:
        """Fit on the training files, or load the same fit from the cache (each gateway, evaluation or test
        process would otherwise embed the training set again: seconds of CPU)."""
        import joblib

        items = self.training_items()
        path = _cache_dir() / self.cache_key(items) if self.embed is None and _cache_dir() else None
        if path is not None and path.exists():
            try:
                self._fitted, self.data_hash = joblib.load(path), _hash(items)
                return
            except Exception:  # a truncated or foreign file: fit again and overwrite it
                pass
        self.fit(items)
        if path is not None:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_suffix(f".tmp{os.getpid()}-{threading.get_ident()}")
                joblib.dump(self._fitted, tmp)
                tmp.replace(path)
            except OSError:
                pass  # a read-only cache costs only time

    def warm(self) -> None:
        """Fit now (the gateway calls this at start so the first chat does not wait)."""
        if self.model:
            self._models()

    def _model_input(self, texts: list[str]) -> list[str]:
        """What both models read: the text, and with :attr:`values` its alarm values in words."""
        return [annotate(t) for t in texts] if self.values else list(texts)

    def scores(self, texts: list[str]) -> tuple[np.ndarray, list[str]]:
        """``p_urgent`` and the most likely condition of each text (the classifiers only, no rules)."""
        ngrams, urgent, conditions = self._models()
        if not texts:
            return np.zeros(0), []
        texts = self._model_input([t[:MAX_CHARS] for t in texts])
        x, g = self._embedder()(texts), ngrams.transform(texts)
        both = np.stack([urgent[0].predict_proba(x)[:, 1], urgent[1].predict_proba(g)[:, 1]])
        p = both.max(0) if self.combine == "max" else both.mean(0)
        c = (conditions[0].predict_proba(x) + conditions[1].predict_proba(g)) / 2
        return p, [str(conditions[0].classes_[k]) for k in c.argmax(1)]

    def detect_many(self, texts: list[str]) -> list[list[str]]:
        """The urgent conditions each text describes (empty list: not urgent)."""
        out: list[list[str]] = [[] for _ in texts]
        todo = [k for k, t in enumerate(texts) if t and t.strip()]
        if not self.model:
            return [rule_conditions(t[:MAX_CHARS]) if k in todo else [] for k, t in enumerate(texts)]
        p, best = self.scores([texts[k] for k in todo])
        for j, k in enumerate(todo):
            text = texts[k][:MAX_CHARS]
            found = self.rule_conditions(text, specific=True) if self.rules else []
            if p[j] >= self.threshold and best[j] not in found:
                found.insert(0, best[j])
            if not found and self.rules:  # shock, hypoxia, low GCS alone: flagged, named by the values
                found = self.rule_conditions(text)
            out[k] = found
        return out

    def rule_conditions(self, text: str, specific: bool = False) -> list[str]:
        """The conditions this detector's rules find: the keyword rules, and alarm values if :attr:`value_rule`
        (``specific``: only the values that name their condition, see :data:`serve.urgent_values.NONSPECIFIC`)."""
        found = rule_conditions(text)
        if self.value_rule:
            found += [c for c in value_conditions(text, specific) if c not in found]
        return found

    def detect(self, text: str) -> list[str]:
        """The urgent conditions ``text`` describes (empty list: not urgent)."""
        return self.detect_many([text])[0]


MODEL_VERSION = 3  # part of the cache key: raise it when the features or the models change
C_URGENT = 4.0  # inverse regularisation strengths, chosen by cross-validation on the dev split
C_URGENT_NGRAMS = 10.0
C_CONDITION = 10.0
# The lowest threshold whose 10-fold CV false alarms stay under 0.04 on dev + extra + extra2 + extra3 (544):
# recall 0.990, false alarms 0.038 (0.55: 0.984 / 0.021). CV overstated test recall by about two points in the
# first two rounds, so the CV recall has to clear the 0.97 target by that margin.
DEFAULT_THRESHOLD = 0.5
MAX_CHARS = 2000  # MiniLM reads 256 tokens; a longer message is judged on its start

def cross_validate(items: list[dict], folds: int | str = 10, thresholds: tuple[float, ...] = (0.4, 0.45, 0.5, 0.55, 0.6, 0.65),
                   embed: Embedder | None = None, **options) -> dict:
    """Held-out recall and false alarms on the training messages: the honest estimate without the test split.

    Args:
        items: labelled messages (:meth:`UrgentDetector.training_items`).
        folds: a number of stratified folds, or ``"speaker"``: leave one kind of writer out (patients,
            relatives, nurses, doctors, pharmacists), the harder question of whether it holds for a new register.
        thresholds: the ``p_urgent`` thresholds to report (the keyword rules fire at every one).
        embed: the embedder (default MiniLM); the messages are embedded once.
        options: further :class:`UrgentDetector` fields (``values``, ``value_rule``, ``combine``).

    Returns:
        ``{threshold: {"recall", "false_alarms", "per_condition": {condition: (found, total)}}}``
    """
    from sklearn.model_selection import LeaveOneGroupOut, StratifiedKFold

    texts = [i["text"] for i in items]
    proto = UrgentDetector(embed=embed, **options)
    inputs = proto._model_input(texts)
    vectors = proto._embedder()(inputs)
    index = {t: k for k, t in enumerate(inputs)}
    lookup: Embedder = lambda batch: vectors[[index[t] for t in batch]]  # noqa: E731
    y = np.array([i["urgent"] for i in items])
    if folds == "speaker":
        splits = LeaveOneGroupOut().split(texts, y, [i.get("speaker", "?") for i in items])
    else:
        splits = StratifiedKFold(int(folds), shuffle=True, random_state=0).split(texts, y)
    p, ruled = np.zeros(len(items)), np.zeros(len(items), dtype=bool)
    for train, held in splits:
        fold = UrgentDetector(embed=lookup, **options).fit([items[k] for k in train])
        p[held] = fold.scores([texts[k] for k in held])[0]
        ruled[held] = [bool(fold.rule_conditions(texts[k])) for k in held]
    out = {}
    for t in thresholds:
        flagged = (p >= t) | ruled
        per: dict[str, list[int]] = {}
        for item, f in zip(items, flagged):
            if item["urgent"]:
                counts = per.setdefault(item["condition"], [0, 0])
                counts[0] += f
                counts[1] += 1
        out[t] = {"recall": float(flagged[y].mean()), "false_alarms": float(flagged[~y].mean()),
                  "per_condition": {c: tuple(v) for c, v in sorted(per.items())}}
    return out


def _hash(items: list[dict]) -> str:
    """A short hash of the labelled training messages (text, label, condition; in order)."""
    return hashlib.sha256("\n".join(json.dumps([i["text"], i["urgent"], i.get("condition")])
                                     for i in items).encode()).hexdigest()[:16]


def _cache_dir() -> Path | None:
    """``$ONCOLOOP_CACHE`` (default ``~/.cache/oncoloop``, as for the converted base model); "" turns it off."""
    value = os.environ.get("ONCOLOOP_CACHE", "~/.cache/oncoloop")
    return Path(value).expanduser() if value else None


_default: UrgentDetector | None = None
_default_lock = threading.Lock()


def default_detector() -> UrgentDetector:
    """The process-wide detector (fitted at first use, then shared by every guard)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = UrgentDetector(threshold=DEFAULT_THRESHOLD)
    return _default
