"""Bundled data: valid, big enough, spread over the topics, and eval/safety held out from the seed."""

import json
from collections import Counter

import pytest

from core import data as data_cli
from core.data import SAFETY_CATEGORIES, TOPICS, check_file, load_jsonl
from core.errors import OncoLoopError
from tests.conftest import REPO

SEED = REPO / "data" / "oncology_seed.jsonl"
EVAL = REPO / "data" / "eval" / "oncology_eval.jsonl"
SAFETY = REPO / "data" / "eval" / "safety.jsonl"


@pytest.mark.parametrize("path", [SEED, EVAL, SAFETY], ids=lambda p: p.name)
def test_bundled_files_validate(path, capsys):
    assert data_cli.main(["validate", "--require-source", str(path)]) == 0
    assert "OK" in capsys.readouterr().out


def test_seed_and_eval_cover_every_topic():
    seed, held_out = load_jsonl(SEED), load_jsonl(EVAL)
    assert len(seed) >= 400 and len(held_out) >= 80
    for records in (seed, held_out):
        topics = Counter(r["meta"]["topic"] for r in records)
        assert set(topics) == set(TOPICS), f"topics missing: {set(TOPICS) - set(topics)}"
    assert sum(1 for r in seed if r["input"].strip()) >= 40, "some seed records need a clinical-context input"


def test_safety_suite_covers_every_category():
    items = load_jsonl(SAFETY, "safety")
    assert len(items) >= 40
    counts = Counter(i["category"] for i in items)
    assert set(counts) == set(SAFETY_CATEGORIES) and min(counts.values()) >= 5


def _key(record):
    return " ".join((record["instruction"] + " " + record.get("input", "")).lower().split())


@pytest.mark.slow
def test_no_eval_or_safety_item_duplicates_a_seed_item():
    from core.embed import nearest

    seed = load_jsonl(SEED)
    held_out = load_jsonl(EVAL) + load_jsonl(SAFETY, "safety")
    seed_keys = {_key(r) for r in seed}
    assert not [r for r in held_out if _key(r) in seed_keys], "exact duplicates of seed items"
    # Near duplicates: paraphrases score >= 0.9 cosine with MiniLM ("What is X?" vs "Define X." is 0.92).
    scores, idx = nearest([_key(r) for r in held_out], [_key(r) for r in seed])
    close = [(held_out[i]["meta"]["id"], seed[j]["meta"]["id"], round(float(s), 3))
             for i, (s, j) in enumerate(zip(scores, idx)) if s >= 0.9]
    assert not close, f"near duplicates of seed items: {close}"
    # And lexically: no pair shares more than half its words.
    seed_sets = [set(k.split()) for k in seed_keys]
    for r in held_out:
        words = set(_key(r).split())
        worst = max(len(words & s) / len(words | s) for s in seed_sets)
        assert worst < 0.6, f"{r['meta']['id']} shares {worst:.0%} of its words with a seed item"


def test_broken_file_is_reported_with_line_numbers(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join([
        json.dumps({"instruction": "Define TNM.", "input": "", "output": "Tumour, node, metastasis."}),
        '{"instruction": "missing brace"',
        json.dumps({"instruction": "No answer", "input": ""}),
        json.dumps({"instruction": "", "input": 3, "output": "x"}),
        "",
    ]) + "\n")
    assert data_cli.main(["validate", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:2: invalid JSON" in err
    assert f"{bad}:3: missing field 'output'" in err
    assert f"{bad}:4: field 'instruction' must be a non-empty string" in err
    assert f"{bad}:4: field 'input' must be a string, got int" in err
    assert f"{bad}:5: blank line" in err
    assert f"{bad}:1" not in err


def test_empty_and_missing_files_fail(tmp_path, capsys):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    assert data_cli.main(["validate", str(empty), str(tmp_path / "nope.jsonl")]) == 2
    err = capsys.readouterr().err
    assert "empty file" in err and "file not found" in err


def test_load_refuses_bad_file_naming_it(tmp_path):
    bad = tmp_path / "x.jsonl"
    bad.write_text('{"instruction": "q", "input": "", "output": "a"}\n[1, 2]\n')
    with pytest.raises(OncoLoopError, match=r"x.jsonl:2: expected a JSON object"):
        load_jsonl(bad)


def test_safety_schema_checks_category(tmp_path):
    bad = tmp_path / "s.jsonl"
    bad.write_text(json.dumps({"instruction": "q", "category": "poetry", "expected": "x"}) + "\n")
    assert [p.message for p in check_file(bad)] == [
        "unknown category 'poetry'; use one of " + ", ".join(SAFETY_CATEGORIES)]


@pytest.mark.parametrize("module", ["core.data", "finetune.data"])  # finetune.data: the older, documented name
def test_validate_command_runs_under_both_names(module, tmp_path):
    import subprocess
    import sys

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"instruction": "q"}\n', encoding="utf-8")
    ok = subprocess.run([sys.executable, "-m", module, "validate", str(SAFETY)], cwd=REPO, capture_output=True,
                        text=True, timeout=60)
    assert ok.returncode == 0 and "OK" in ok.stdout, ok.stderr
    failed = subprocess.run([sys.executable, "-m", module, "validate", str(bad)], cwd=REPO, capture_output=True,
                            text=True, timeout=60)
    assert failed.returncode == 2 and "missing field 'output'" in failed.stderr
