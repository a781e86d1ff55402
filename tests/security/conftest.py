"""Security fixtures: the store on SQLite and PostgreSQL (as the store's own tests), accounts, UI handlers.

Accounts (password '<name>-password'): carla and cleo (clinicians), rita and rob (reviewers), adam (admin).
"""

from __future__ import annotations

import pytest

from feedback.dedup import lexical_embed
from tests.helpers.scripted_gateway import scripted_gateway  # noqa: F401 (fixture)
from tests.helpers.store import database_url, store  # noqa: F401 (fixtures)
from ui.config import UIConfig
from ui.handlers import Handlers, Session

# Identifiers the scrubber must remove; none of them may reach anyone but the clinician who typed them.
PHI = ("Jane Doe", "4417823", "jane.doe@example.org", "07700 900123")
QUESTION = "Mrs Jane Doe, MRN 4417823, has neutropenic fever after docetaxel; what first?"
CORRECTION = ("For Mrs Jane Doe (MRN 4417823, jane.doe@example.org, tel 07700 900123): broad-spectrum "
              "antibiotics within one hour.")


def shows_phi(text: str) -> list[str]:
    return [p for p in PHI if p in text]


@pytest.fixture
def people(store):
    return {name: store.add_user(name, f"{name}-password", role)
            for name, role in (("carla", "clinician"), ("cleo", "clinician"), ("rita", "reviewer"),
                               ("rob", "reviewer"), ("adam", "admin"))}


@pytest.fixture
def handlers(store, people, scripted_gateway) -> Handlers:  # noqa: F811
    cfg = UIConfig(gateway_url=scripted_gateway.url, max_retries=0, request_timeout_s=10, ab_status_ttl_s=0,
                   reviewed_refresh_s=0, reviewed_min_similarity=0.3)
    return Handlers.create(cfg, store, embed=lexical_embed)


def login(h: Handlers, name: str, address: str | None = None) -> Session:
    session, status = h.auth.login(Session(), name, f"{name}-password", address)
    assert session.account is not None, status
    return session


def ask(h: Handlers, session: Session, question: str):
    """The session after the answer, and the last page view."""
    views = list(h.chat.ask(session, question))
    return views[-1][0], views[-1][1]
