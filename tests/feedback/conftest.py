"""Store fixtures: every store test runs on SQLite and on a real PostgreSQL (marker ``postgres``; the
``database_url`` and ``store`` fixtures are in tests/helpers/store.py)."""

from __future__ import annotations

import pytest

from tests.helpers.store import database_url, store  # noqa: F401 (fixtures)


@pytest.fixture
def people(store):
    """A clinician, a reviewer and an admin (passwords: '<name>-password')."""
    return {role: store.add_user(name, f"{name}-password", role)
            for name, role in (("carla", "clinician"), ("rita", "reviewer"), ("adam", "admin"))}


@pytest.fixture
def answered(store, people):
    """A clinician's conversation with one answered question; returns the message id."""
    conv = store.start_conversation(people["clinician"], arm="champion", model_version="v1")
    mid = store.record_question(people["clinician"], conv, "What is the usual first-line regimen for stage III colon cancer?")
    store.record_answer(mid, "Adjuvant FOLFOX or CAPOX after resection.", "v1", latency_ms=120,
                        guard_actions=["preamble", "dosing_notice"])
    return mid
