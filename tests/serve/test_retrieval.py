"""Approved corrections reach answers at once: retrieval in the gateway, scrubbed, recorded with the answer."""

from __future__ import annotations

import pytest

from core.prompt import CONTEXT_HEADER
from feedback.store import FeedbackStore
from serve.engines import Engine, EngineSpec
from serve.guard import Guard
from serve.registry import main as registry_cli
from serve.retrieval import Retriever, last_question, with_context
from tests.helpers.scripted_engine import (ScriptedEngine, ScriptedPool, ask, serve_gateway, serve_in_thread,
                                           stop_servers)

QUESTION = "What is the usual first-line treatment for hairy cell leukaemia?"
REWORDED = "Newly diagnosed hairy cell leukemia: what do we give first?"  # cosine 0.81 to QUESTION
UNRELATED = "How often should a BRCA1 carrier have breast MRI?"
CORRECTION = ("A purine analogue, cladribine, gives durable complete remissions in most patients; Mrs Jane Doe, "
              "MRN 00482913, responded well. Rituximab may be added.")


def approved_correction(store: FeedbackStore, question: str, correction: str, approve: bool = True) -> int:
    """A clinician's correction of an answer, approved by a reviewer when ``approve``; returns the review id."""
    carla = store.add_user(f"carla{abs(hash(question)) % 1000}", "carla-password-1", "clinician")
    rita = store.add_user(f"rita{abs(hash(question)) % 1000}", "rita-password-1", "reviewer")
    conv = store.start_conversation(carla, model_version="v1")
    msg = store.record_question(carla, conv, question)
    store.record_answer(msg, "Watchful waiting.", "v1")
    rating = store.rate(carla, msg, thumbs=-1, tags=("incorrect",), correction=correction)
    return store.review(rita, rating, "approve") if approve else -1


@pytest.fixture(scope="module")
def retrieval_gateway(tmp_path_factory):
    """The gateway app in process over a scripted engine, with retrieval on a store of its own (real MiniLM)."""
    from core.settings import get_settings

    home = tmp_path_factory.mktemp("retrieval") / "home"
    store = FeedbackStore.open(get_settings({"ONCOLOOP_HOME": str(home)}))
    review = approved_correction(store, QUESTION, CORRECTION)
    approved_correction(store, "Which antiemetic prevents delayed nausea after cisplatin?",
                        "An NK1 antagonist with dexamethasone and a 5-HT3 antagonist.", approve=False)
    engine = ScriptedEngine()
    engine.answer = "Cladribine."
    engine_url, engine_server, engine_thread = serve_in_thread(engine.app)
    spec = EngineSpec("transformers", "v1", ["scripted", "--host", "127.0.0.1"], int(engine_url.rsplit(":", 1)[1]),
                      "/models/v1")
    pool = ScriptedPool(Engine(spec, tmp_path_factory.mktemp("engine-logs")))
    url, server, thread = serve_gateway(pool, home, Guard(), Retriever(k=2, min_similarity=0.5, store=store))
    yield engine, url, review
    stop_servers((server, thread), (engine_server, engine_thread))


def _context_messages(body: dict) -> list[str]:
    return [m["content"] for m in body["messages"] if m["role"] == "system" and m["content"].startswith(CONTEXT_HEADER)]


@pytest.mark.parametrize("stream", [False, True])
def test_a_reworded_question_gets_the_approved_correction_scrubbed(retrieval_gateway, stream):
    engine, url, review = retrieval_gateway
    _, text, _, chunks = ask(url, REWORDED, stream)
    sent = engine.received[-1]
    [context] = _context_messages(sent)
    assert "cladribine" in context and QUESTION in context
    assert "Jane Doe" not in context and "00482913" not in context  # only scrubbed text leaves the store
    roles = [m["role"] for m in sent["messages"]]
    assert roles == ["system", "system", "user"]  # preamble, context, the question
    context_field = chunks[-1].model_extra["oncoloop"]["context"]
    assert [c["review"] for c in context_field] == [review] and context_field[0]["similarity"] >= 0.5


def test_an_unrelated_question_gets_no_context_and_pending_corrections_are_never_used(retrieval_gateway):
    engine, url, _ = retrieval_gateway
    _, _, _, [answer] = ask(url, UNRELATED, stream=False)
    assert _context_messages(engine.received[-1]) == [] and answer.model_extra["oncoloop"]["context"] == []
    _, _, _, [answer] = ask(url, "Which antiemetics prevent delayed nausea after cisplatin chemotherapy?", stream=False)
    assert _context_messages(engine.received[-1]) == []  # the matching correction is not approved


def test_with_context_goes_after_every_leading_system_message():
    msgs = [{"role": "system", "content": "preamble"}, {"role": "system", "content": "client"},
            {"role": "user", "content": "q"}]
    assert with_context(msgs, []) is msgs
    assert last_question(msgs) == "q"


def test_the_store_keeps_the_context_of_an_answer_and_lineage_shows_it(oncoloop_home, capsys):
    store = FeedbackStore.open()
    review = approved_correction(store, QUESTION, CORRECTION)
    carla = store.add_user("dana", "dana-password-1", "clinician")
    msg = store.record_question(carla, store.start_conversation(carla), REWORDED)
    store.record_answer(msg, "Cladribine.", "v1", 120, ["preamble"], [review])
    assert registry_cli(["lineage", "--message", str(msg)]) == 0
    assert f"approved answers given as context (review ids): {review}" in capsys.readouterr().out


def test_a_request_can_opt_out_of_retrieval_and_the_field_never_reaches_the_engine(retrieval_gateway):
    engine, url, _ = retrieval_gateway
    _, _, _, [answer] = ask(url, REWORDED, stream=False, extra_body={"retrieval": False})
    sent = engine.received[-1]
    assert _context_messages(sent) == [] and answer.model_extra["oncoloop"]["context"] == []
    assert "retrieval" not in sent
