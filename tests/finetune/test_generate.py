"""Synthetic data generation through the openai client, against real local OpenAI-compatible servers.

* ``transformers serve`` with the tiny base: a real model behind a real HTTP server. The tiny model
  cannot write JSON, so these tests check what really happens then: every answer is rejected and
  counted, each record is retried with growing waits, nothing is written, the CLI says why.
* A replay server (FastAPI on 127.0.0.1, queued replies, the project's "fake model that replays"
  pattern): the happy path end to end over real HTTP with the real openai client, including a 500,
  an invalid answer, a seed near-duplicate and a near-duplicate of an earlier record.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from fastapi import Request  # module level: FastAPI resolves the handler's string annotation here

from core.data import check_file, load_jsonl
from core.errors import OncoLoopError
from core.process import free_port
from feedback.dedup import THRESHOLDS, contaminated, lexical_embed
from finetune.generate import (
    InvalidAnswer, NearDuplicateFilter, build_messages, generate, main, parse_record,
)
from tests.conftest import REPO

SEED = load_jsonl(REPO / "data" / "oncology_seed.jsonl")


@pytest.fixture(scope="module")
def tiny_server(tiny_base, tmp_path_factory):
    """``transformers serve <tiny_base>`` on 127.0.0.1 (CPU, no hub); yields its /v1 URL."""
    exe = Path(sys.executable).with_name("transformers")
    exe = str(exe) if exe.is_file() else shutil.which("transformers")
    assert exe, "the `transformers` command (transformers[serving]) must be installed for this test"
    port = free_port()
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(log.parent / "hf")}
    with log.open("w") as out:
        proc = subprocess.Popen([exe, "serve", str(tiny_base), "--host", "127.0.0.1", "--port", str(port),
                                 "--device", "cpu"], stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.time() + 180
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                pytest.fail(f"transformers serve did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


class ReplayServer:
    """An OpenAI-compatible chat endpoint that answers with queued replies (an int is an HTTP error)."""

    def __init__(self):
        import uvicorn
        from fastapi import FastAPI
        from fastapi.responses import JSONResponse

        self.replies: list[str | int] = []
        self.requests: list[dict] = []
        app = FastAPI()

        @app.post("/v1/chat/completions")
        async def chat(request: Request):
            body = await request.json()
            self.requests.append({"body": body, "auth": request.headers.get("authorization")})
            reply = self.replies.pop(0)
            if isinstance(reply, int):
                return JSONResponse({"error": {"message": "replayed failure"}}, status_code=reply)
            return {"id": "r", "object": "chat.completion", "created": 0, "model": body["model"],
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": reply}}]}

        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        while not self.server.started:
            time.sleep(0.05)
        self.url = f"http://127.0.0.1:{self.port}/v1"

    def stop(self):
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture
def replay():
    server = ReplayServer()
    yield server
    server.stop()


def rec(instruction: str, output: str = "A guideline-based answer of reasonable length.", input: str = "") -> str:
    return json.dumps({"instruction": instruction, "input": input, "output": output})


# --- pure functions, literal examples -------------------------------------------------------------

def test_parse_record_accepts_json_in_prose_or_fences_and_rejects_the_rest():
    good = parse_record('Here it is:\n```json\n{"instruction": "How is grade 3 diarrhoea from irinotecan '
                        'managed?", "input": "", "output": "Loperamide at high dose, fluids, hold the drug '
                        'and review {dose} on recovery."}\n```\nHope this helps.')
    assert good == {"instruction": "How is grade 3 diarrhoea from irinotecan managed?", "input": "",
                    "output": "Loperamide at high dose, fluids, hold the drug and review {dose} on recovery."}
    assert parse_record('{"instruction": "  Define the ECOG scale. ", "output": "A 0-5 scale of '
                        'functional status."}')["input"] == ""
    cases = {
        "enenenenen": "no JSON object",
        '["instruction", "output"]': "no JSON object",
        '{"instruction": "What is the dose?"': "no JSON object",
        '{"input": "", "output": "Some answer that is long enough."}': "missing field 'instruction'",
        '{"instruction": "What is CAR-T?", "input": 5, "output": "Engineered T cells."}':
            "field 'input' must be a string, got int",
        '{"instruction": "What is CAR-T?", "input": "", "output": "  "}': "field 'output' must be a non-empty string",
        '{"instruction": "Hi?", "input": "", "output": "Too short."}': "too short",
    }
    for text, reason in cases.items():
        with pytest.raises(InvalidAnswer) as err:
            parse_record(text)
        assert err.value.reason == reason, text


def test_prompt_uses_seed_examples_of_the_topic():
    examples = [r for r in SEED if r["meta"]["topic"] == "emergencies"][:2]
    system, user = build_messages("emergencies", examples)
    assert "exactly one JSON object" in system["content"]
    assert all(json.dumps(e["instruction"]) in user["content"] for e in examples)
    assert 'topic "emergencies"' in user["content"] and '"instruction", "input" and "output"' in user["content"]


def test_lexical_near_duplicates():
    seed = "What does the USPSTF currently recommend for breast cancer screening in average-risk women?"
    f = NearDuplicateFilter([seed], method="lexical")
    assert f.embedder == "lexical"
    assert f.check("What does the USPSTF currently recommend for breast cancer screening in average risk women?") == "seed"
    assert f.check("How is malignant spinal cord compression treated?") is None
    f.add("How is malignant spinal cord compression treated?")
    assert f.check("How is malignant spinal cord compression treated today?") == "generated"


def test_generator_drops_what_the_export_would_call_the_same_question():
    """One de-duplication path: a generated question repeats a seed question exactly when the export's
    decontamination (``feedback.dedup``) would say so. The generator used to compare word bigrams (Jaccard
    >= 0.6) and kept a spelling variant or a reordering of a seed question that the export drops."""
    seed = ["What is tumour lysis syndrome?", "How is febrile neutropenia defined?", "Define ECOG 2."]
    asked = ["What is tumor lysis syndrome?", "Febrile neutropenia: how is it defined?", "Define ECOG 3.",
             "How is hypercalcaemia of malignancy treated?"]
    f = NearDuplicateFilter(seed, method="lexical")
    export_says = contaminated(asked, seed, lexical_embed, THRESHOLDS["lexical"][1]).tolist()
    assert [f.check(q) == "seed" for q in asked] == export_says == [True, True, False, False]


@pytest.mark.slow  # loads MiniLM
def test_embedding_near_duplicates_catch_paraphrases_words_miss():
    seed = "What does the USPSTF currently recommend for breast cancer screening in average-risk women?"
    paraphrase = "For women at average risk, what breast cancer screening does the USPSTF now advise?"
    assert NearDuplicateFilter([seed], method="lexical").check(paraphrase) is None  # character n-grams miss it
    f = NearDuplicateFilter([seed, "Define febrile neutropenia."], method="embed", threshold=0.85)
    assert f.embedder == "minilm"
    assert f.check(paraphrase) == "seed"
    assert f.check("How should hypercalcaemia of malignancy be managed?") is None
    f.add("How should hypercalcaemia of malignancy be managed?")
    assert f.check("How is hypercalcaemia of malignancy managed?") == "generated"


# --- a real model behind transformers serve ----------------------------------------------------------

@pytest.mark.slow
def test_tiny_model_answers_are_rejected_counted_and_retried(tiny_server, tiny_base):
    waits = []
    records, stats = generate(tiny_server, str(tiny_base), n=2, topics=["staging", "toxicities"], max_requests=2,
                              retries=2, backoff=0.01, temperature=0.0, max_tokens=12, dedup="lexical",
                              sleep=waits.append)
    assert records == []
    assert (stats.requests, stats.attempts, stats.transport_errors) == (2, 6, 0)
    assert stats.invalid == 6 and sum(stats.invalid_reasons.values()) == 6
    assert set(stats.invalid_reasons) <= {"no JSON object", "too short"} and stats.last_invalid
    assert len(waits) == 4 and waits[1] > waits[0] and waits[3] > waits[2]  # exponential, per record
    assert "6 invalid answers" in stats.summary()


@pytest.mark.slow
def test_cli_against_tiny_model_writes_nothing_and_says_why(tiny_server, tiny_base, tmp_path, capsys):
    out = tmp_path / "gen.jsonl"
    code = main(["--base-url", tiny_server, "--model", str(tiny_base), "--out", str(out), "--n", "1",
                 "--max-requests", "1", "--retries", "1", "--backoff", "0.01", "--max-tokens", "8",
                 "--dedup", "lexical"])
    assert code == 2 and not out.exists()
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "produced no usable record" in err and "2 invalid answers" in err


@pytest.mark.slow
def test_endpoint_refusals_are_clear(tiny_server, tiny_base):
    with pytest.raises(OncoLoopError, match="HTTP 400.*pinned"):
        generate(tiny_server, "some-other-model", n=1, retries=0, dedup="lexical", max_tokens=4)
    with pytest.raises(OncoLoopError, match=r"HTTP 404 \(does --base-url end in /v1\?\)"):
        generate(tiny_server[:-3], str(tiny_base), n=1, retries=0, dedup="lexical", max_tokens=4)


def test_unreachable_endpoint_is_a_clear_error(tmp_path, capsys):
    url = f"http://127.0.0.1:{free_port()}/v1"
    waits = []
    with pytest.raises(OncoLoopError, match="cannot reach an OpenAI-compatible endpoint.*after 3 tries"):
        generate(url, "m", n=1, retries=2, backoff=0.01, dedup="lexical", sleep=waits.append)
    assert len(waits) == 2
    assert main(["--base-url", url, "--model", "m", "--out", str(tmp_path / "x.jsonl"), "--retries", "0",
                 "--dedup", "lexical"]) == 2
    assert "error: cannot reach" in capsys.readouterr().err


# --- the happy path over real HTTP --------------------------------------------------------------------

def test_round_trip_retries_filters_and_writes_provenance(replay, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    seed_q = SEED[0]["instruction"]
    replay.replies = [  # requests alternate topics: toxicities, emergencies, toxicities, ...
        500,  # transport failure: retried
        "I cannot do that.",  # invalid: retried
        rec("How is grade 3 hand-foot syndrome from capecitabine managed?"),
        rec("What are the red flags of malignant spinal cord compression?", input="Known prostate cancer"),
        rec(seed_q),  # repeats the seed: dropped
        rec("How is grade 3 hand-foot syndrome from capecitabine managed today?"),  # repeats a kept one
        rec("When should prophylactic G-CSF be given with chemotherapy?"),
    ]
    out = tmp_path / "gen.jsonl"
    code = main(["--base-url", replay.url, "--model", "replay-model", "--out", str(out), "--n", "3",
                 "--topics", "toxicities", "emergencies", "--backoff", "0.01", "--dedup", "lexical"])
    assert code == 0, capsys.readouterr().err
    summary = capsys.readouterr().out
    assert "3 kept from 5 requests (7 calls): 1 transport errors, 1 invalid answers" in summary
    assert "1 near-duplicates of the seed, 1 of each other" in summary
    assert check_file(out) == []
    records = load_jsonl(out)
    assert [r["instruction"] for r in records] == [
        "How is grade 3 hand-foot syndrome from capecitabine managed?",
        "What are the red flags of malignant spinal cord compression?",
        "When should prophylactic G-CSF be given with chemotherapy?"]
    assert records[1]["input"] == "Known prostate cancer"
    assert {r["meta"]["source"] for r in records} == {"generated:replay-model"}
    assert [r["meta"]["topic"] for r in records] == ["toxicities", "emergencies", "toxicities"]
    seed_ids = {r["meta"]["id"] for r in SEED}
    assert all(r["meta"]["few_shot_ids"] and set(r["meta"]["few_shot_ids"]) <= seed_ids for r in records)
    # What went over the wire: the model name, the key default for local servers, topic-seeded prompts.
    assert all(q["body"]["model"] == "replay-model" and q["auth"] == "Bearer EMPTY" for q in replay.requests)
    first = replay.requests[0]["body"]["messages"][1]["content"]
    assert 'topic "toxicities"' in first
    assert sum(json.dumps(r["instruction"]) in first for r in SEED if r["meta"]["topic"] == "toxicities") == 3
