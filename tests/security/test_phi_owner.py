"""PHI only to its owner: another clinician, a reviewer or an admin never reads a clinician's raw text."""

from __future__ import annotations

import pytest

from core.errors import OncoLoopError
from serve import registry as registry_cli
from tests.helpers.scripted_gateway import Reply
from tests.security.conftest import CORRECTION, QUESTION, ask, login, shows_phi


@pytest.fixture
def carla_asked(handlers, scripted_gateway):
    """carla asks with identifiers and suggests a correction with more; returns (session, message id, rating id)."""
    scripted_gateway.replies = [Reply(chunks=("Take cultures, then antibiotics.",))]
    carla, view = ask(handlers, login(handlers, "carla"), QUESTION)
    mid = view.meta["message_id"]
    _, result = handlers.rating.rate(carla, mid, "down", None, ["incomplete"], CORRECTION)
    return carla, mid, result["rating_id"]


def test_the_owner_sees_her_raw_conversation(handlers, store, people, carla_asked):
    carla, mid, _ = carla_asked
    assert carla.turns[-1].question == QUESTION  # her own chat, as typed
    assert store.message(mid, viewer=people["carla"]).question == QUESTION
    assert [m.question for m in store.messages(carla.conversation_id, viewer=people["carla"])] == [QUESTION]


def test_another_clinician_cannot_read_it_by_id(handlers, store, people, carla_asked):
    carla, mid, _ = carla_asked
    with pytest.raises(OncoLoopError, match="not one of cleo's"):
        store.message(mid, viewer=people["cleo"])
    with pytest.raises(OncoLoopError, match="not one of cleo's"):
        store.messages(carla.conversation_id, viewer=people["cleo"])
    cleo = login(handlers, "cleo")  # nor through the UI: rating her answer by id, or writing into her chat
    status, _ = handlers.rating.rate(cleo, mid, "up")
    assert status.startswith("**Error:**") and not shows_phi(status)
    with pytest.raises(OncoLoopError, match="not one of cleo's"):
        store.record_question(people["cleo"], carla.conversation_id, "mine now?")


def test_reviewers_and_admins_get_scrubbed_text_only(handlers, store, people, carla_asked):
    carla, mid, rid = carla_asked
    for name in ("rita", "adam"):
        seen = store.message(mid, viewer=people[name])
        assert "neutropenic fever" in seen.question and not shows_phi(seen.question), seen.question
    rows, status, items = handlers.review.queue(login(handlers, "rita"))
    assert status == "1 correction(s) waiting." and items[0]["rating_id"] == rid
    assert "antibiotics within one hour" in items[0]["correction"]  # the content is there ...
    assert not shows_phi(repr(rows) + repr(items))  # ... the identifiers are not
    [item] = store.review_queue(people["rob"])
    assert not shows_phi(f"{item.question} {item.answer} {item.correction}")


def test_the_reviewed_panel_shows_colleagues_scrubbed_approvals(handlers, store, scripted_gateway, carla_asked):
    _, _, rid = carla_asked
    assert handlers.review.review(login(handlers, "rita"), rid, "approve")[0].startswith("Review #")
    _, view = ask(handlers, login(handlers, "cleo"), "Mrs Jane Doe, MRN 4417823, has neutropenic fever after "
                  "docetaxel; what first?")
    assert "antibiotics within one hour" in view.reviewed  # the approved correction is shown ...
    assert not shows_phi(view.reviewed), view.reviewed  # ... without carla's patient's identifiers


def test_lineage_and_admin_overview_show_no_identifiers(handlers, store, people, carla_asked, capsys,
                                                        oncoloop_home):
    from tests.helpers.gateway import record_gate
    from tests.helpers.scripted_gateway import register_versions

    _, mid, _ = carla_asked
    assert registry_cli.main(["lineage", "--message", str(mid)]) == 0
    out = capsys.readouterr().out
    assert f"message {mid} was answered by v1" in out and not shows_phi(out)
    register_versions(store, oncoloop_home)
    record_gate(oncoloop_home, "v2")
    adam = login(handlers, "adam")
    assert handlers.admin.promote(adam, "v2", "asked by Mrs Jane Doe, MRN 4417823").startswith("Promoted")
    overview = handlers.admin.overview(adam)
    assert "champion: v1 → v2" in overview and not shows_phi(overview), overview
