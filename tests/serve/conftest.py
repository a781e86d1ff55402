"""A real gateway (``python -m serve``) over real engine processes, in its own OncoLoop home."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.gateway import Gateway, add_version, ptuning_adapter, registry_at


@pytest.fixture(scope="module")
def served_home(tmp_path_factory, tiny_base) -> Path:
    """A home with v1 (champion), v2 (challenger: a P-tuning adapter on v1, served by the adapter engine)
    and v3 (registered, not served), all tiny."""
    home = tmp_path_factory.mktemp("serve") / "home"
    v1 = add_version(home, tiny_base, "v1")
    ptuning_adapter(v1, home / "models" / "v2")
    registry_at(home).register(home / "models" / "v2")
    add_version(home, tiny_base, "v3")
    registry = registry_at(home)
    registry.set_alias("champion", "v1", "test", "first")
    registry.set_alias("challenger", "v2", "test", "A/B")
    return home


@pytest.fixture(scope="module")
def gateway(served_home):
    """The gateway over the transformers engine (v1) and the adapter engine (v2), half the conversations to the challenger."""
    gw = Gateway(served_home, "--engine", "transformers", "challenger_share=0.5", "poll_interval_s=0.5",
                 "restart_backoff_s=0.5", "drain_timeout_s=60")
    try:
        gw.wait(lambda s: s.get("routes") == {"champion": "v1", "challenger": "v2"}
                and all(e["state"] == "ready" for e in s["engines"].values()))
        yield gw
    finally:
        gw.stop()
