"""The named Gradio API endpoints (contract for simulated clinicians), in process, over the scripted gateway."""

from __future__ import annotations


import pytest

from feedback.abtest import challenger_share
from core.process import free_port
from tests.helpers.clinician import SimulatedClinician, SimulatedReviewer, UIError
from tests.helpers.gateway import record_gate
from tests.helpers.scripted_gateway import Reply, register_versions
from ui.app import build_app

pytestmark = pytest.mark.slow


@pytest.fixture
def app_url(handlers):
    app = build_app(handlers)
    app.queue(default_concurrency_limit=8)
    port = free_port()
    app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, ssr_mode=False)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        app.close()


def test_every_named_endpoint_works_through_gradio_client(app_url, handlers, store, scripted_gateway, oncoloop_home):
    scripted_gateway.routes = {"champion": "v1", "challenger": "v2"}
    scripted_gateway.replies = [Reply(version="v2", alias="challenger", guard=("preamble", "dosing_notice"))]
    with pytest.raises(UIError, match="wrong username or password"):
        SimulatedClinician(app_url, "carla", "bad-password")
    carla = SimulatedClinician(app_url, "carla", "carla-password")
    answer = carla.ask("What dose of dexamethasone for cord compression?")
    assert answer["version"] == "blinded (A/B test running)" and answer["guard"] == ["preamble", "dosing_notice"]
    assert store.message(answer["message_id"]).model_version == "v2"
    with pytest.raises(UIError, match="the question has 20000 characters"):
        carla.ask("x" * 20_000)
    rid = carla.rate(answer["message_id"], thumbs="down", score=1, tags=("unsafe",), correction="8-16 mg daily.")
    with pytest.raises(UIError, match="may not review"):
        SimulatedReviewer(app_url, "carla", "carla-password").queue()
    rita = SimulatedReviewer(app_url, "rita", "rita-password")
    [item] = rita.queue()
    assert (item["rating_id"], item["guard_actions"], item["tags"]) == (rid, ["preamble", "dosing_notice"], ["unsafe"])
    assert rita.approve(rid, edited_text="Dexamethasone 16 mg daily, then taper.")["decision"] == "edit"
    assert rita.queue() == []
    carla.new_conversation()

    registry = register_versions(store, oncoloop_home)
    record_gate(oncoloop_home, "v2")  # v2 passed its gate: promoted without force
    adam = SimulatedClinician(app_url, "adam", "adam-password")
    assert adam.client.predict(0.0, "A/B finished", api_name="/set_share") == \
        "Challenger share set to 0% (reason recorded)."
    assert challenger_share(store.store) == 0.0
    assert adam.client.predict("v2", "won the gate", api_name="/promote").startswith("Promoted: champion v1 → v2")
    assert adam.client.predict("bad release", api_name="/rollback").startswith("Rolled back: champion v2 → v1")
    assert "champion → `v1`" in adam.client.predict(api_name="/admin_overview")
    assert carla.client.predict("v2", "sneaky", api_name="/promote").startswith("**Error:** carla is a clinician")
    assert registry.aliases()["champion"] == "v1"
