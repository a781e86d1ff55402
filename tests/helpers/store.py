"""The store on SQLite and on a real PostgreSQL (marker ``postgres``), for the store's and the security tests.

The PostgreSQL case needs ``ONCOLOOP_TEST_PG_URL`` (``.ci/run`` starts a server with
``scripts/ci_postgres.sh`` and sets it); each test gets its own schema, dropped afterwards.
"""

from __future__ import annotations

import os
import uuid

import pytest
from sqlalchemy import create_engine, make_url, text

from feedback.store import FeedbackStore

PG_ENV = "ONCOLOOP_TEST_PG_URL"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request, oncoloop_home, monkeypatch):
    """The store URL of this test, also set as ONCOLOOP_DATABASE_URL for CLIs run in process."""
    if request.param == "sqlite":
        url = f"sqlite:///{oncoloop_home / 'oncoloop.db'}"
        monkeypatch.setenv("ONCOLOOP_DATABASE_URL", url)
        yield url
        return
    base = os.environ.get(PG_ENV)
    if not base:
        pytest.skip(f"{PG_ENV} is not set; start a server with `export {PG_ENV}=$(bash scripts/ci_postgres.sh)`")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base)
    with admin.begin() as c:
        c.execute(text(f"CREATE SCHEMA {schema}"))
    url = make_url(base).update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(False)
    monkeypatch.setenv("ONCOLOOP_DATABASE_URL", url)
    try:
        yield url
    finally:
        with admin.begin() as c:
            c.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


@pytest.fixture
def store(database_url) -> FeedbackStore:
    fs = FeedbackStore.open()
    yield fs
    fs.store.engine.dispose()
