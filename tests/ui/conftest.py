"""UI fixtures: a store with accounts, and a scripted OpenAI-compatible gateway over real HTTP
(tests/helpers/scripted_gateway.py). The browser and load tests use the real gateway over a tiny model instead.
"""

from __future__ import annotations

import pytest

from feedback.dedup import lexical_embed
from feedback.store import FeedbackStore
from tests.conftest import REPO
from tests.helpers.scripted_gateway import scripted_gateway  # noqa: F401 (fixture)
from ui.config import UIConfig
from ui.handlers import Handlers


@pytest.fixture
def store(oncoloop_home):
    fs = FeedbackStore.open()
    yield fs
    fs.store.engine.dispose()


@pytest.fixture
def accounts(store):
    """A clinician, a reviewer and an admin (passwords: '<name>-password')."""
    return {role: store.add_user(name, f"{name}-password", role)
            for name, role in (("carla", "clinician"), ("rita", "reviewer"), ("adam", "admin"))}


@pytest.fixture
def handlers(store, accounts, scripted_gateway) -> Handlers:
    cfg = UIConfig(gateway_url=scripted_gateway.url, max_retries=0, request_timeout_s=10, ab_status_ttl_s=0,
                   reviewed_refresh_s=0, reviewed_min_similarity=0.3)
    return Handlers.create(cfg, store, embed=lexical_embed)


PEOPLE = (("carla", "clinician"), ("rita", "reviewer"), ("adam", "admin"))


@pytest.fixture(scope="session")
def ui_stack(tmp_path_factory, bundled_model):
    """The real thing: ``python -m serve`` (transformers engine, the tiny fixture as champion, served as it was
    trained: without the preamble) and ``python -m ui`` in their own home, with accounts carla (clinician),
    rita (reviewer), adam (admin); password '<name>-password'."""
    from core.settings import get_settings
    from tests.helpers.clinician import UIServer
    from tests.helpers.gateway import Gateway, add_version, registry_at

    home = tmp_path_factory.mktemp("ui_stack") / "home"
    add_version(home, bundled_model, "v1")
    registry_at(home).set_alias("champion", "v1", "test", "first")
    store = FeedbackStore.open(get_settings({"ONCOLOOP_HOME": str(home)}))
    for name, role in PEOPLE:
        store.add_user(name, f"{name}-password", role)
    gateway = Gateway(home, "--engine", "transformers", "--guard", str(REPO / "configs/guard/tiny_cpu.yaml"),
                      "challenger_share=0")
    ui = None
    try:
        gateway.wait(lambda s: s.get("ready") is True, timeout=300)
        ui = UIServer(home, gateway.url, "max_tokens=16", "embedder=lexical", "reviewed_refresh_s=1").wait()
        yield {"home": home, "gateway": gateway, "ui": ui, "store": store}
    finally:
        if ui is not None:
            ui.stop()
        gateway.stop()
        store.store.engine.dispose()
