import pytest

from core.errors import OncoLoopError
from core.settings import get_settings


def test_home_comes_from_the_environment(oncoloop_home):
    settings = get_settings().ensure_layout()
    assert settings.home == oncoloop_home
    assert all((oncoloop_home / d).is_dir() for d in ("models", "datasets", "runs", "reports"))
    assert settings.database_url == f"sqlite:///{oncoloop_home / 'oncoloop.db'}"


def test_database_url_overrides_sqlite(monkeypatch):
    monkeypatch.setenv("ONCOLOOP_DATABASE_URL", "postgresql+psycopg://u@localhost/onco")
    assert get_settings().database_url == "postgresql+psycopg://u@localhost/onco"


def test_home_that_is_a_file_is_refused(oncoloop_home):
    oncoloop_home.parent.mkdir(parents=True, exist_ok=True)
    oncoloop_home.write_text("not a folder")
    with pytest.raises(OncoLoopError, match="not a folder"):
        get_settings().ensure_layout()
    assert oncoloop_home.read_text() == "not a folder"


def test_unknown_layout_is_refused(oncoloop_home):
    oncoloop_home.mkdir(parents=True)
    (oncoloop_home / "models").write_text("x")
    with pytest.raises(OncoLoopError, match="does not look like an OncoLoop home"):
        get_settings().ensure_layout()
