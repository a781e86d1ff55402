"""Login throttling per account and per client address, kept across restarts; session expiry; logout."""

from __future__ import annotations

import datetime as dt
import time

import pytest

from core.errors import OncoLoopError
from feedback import users
from feedback.config import AccessConfig
from feedback.store import FeedbackStore
from tests.security.conftest import ask, login
from ui.handlers import AuthHandler, Session


class Clock:
    def __init__(self):
        self.t = dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.timezone.utc)

    def __call__(self):
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += dt.timedelta(seconds=seconds)


def opened(store, clock, **access) -> FeedbackStore:
    """The same database opened again (a restart, another replica), on the test's clock."""
    fs = FeedbackStore(store.store, AccessConfig(**access))
    fs.throttle.now = clock
    return fs


def fail(fs, username, times, address=None):
    for _ in range(times):
        with pytest.raises(OncoLoopError, match="wrong username or password"):
            fs.authenticate(username, "not-the-password", address)


def test_five_failures_lock_the_account_with_a_growing_delay_that_survives_a_restart(store, people):
    clock = Clock()
    fs = opened(store, clock)
    fail(fs, "carla", 4)
    assert fs.authenticate("carla", "carla-password").username == "carla"  # under the limit; success resets
    fail(fs, "carla", 5)
    restarted = opened(store, clock)
    with pytest.raises(OncoLoopError, match=r"too many failed logins for this account; wait 30 s"):
        restarted.authenticate("carla", "carla-password")  # even the right password waits
    clock.advance(31)
    fail(restarted, "carla", 1)  # the 6th failure in a row: 60 s
    with pytest.raises(OncoLoopError, match="wait 60 s"):
        restarted.authenticate("carla", "carla-password")
    clock.advance(61)
    assert restarted.authenticate("carla", "carla-password").username == "carla"
    fail(restarted, "carla", 1)  # counting starts again after a success
    assert restarted.authenticate("carla", "carla-password").username == "carla"


def test_a_parallel_burst_gets_no_more_password_checks_than_the_limit(store, people, monkeypatch):
    import threading

    from feedback import auth

    checked, real = [], auth.verify_password

    def slow_verify(password_hash, password):
        checked.append(password)
        time.sleep(0.05)  # every guess of the burst is in flight at once
        return real(password_hash, password)

    monkeypatch.setattr(auth, "verify_password", slow_verify)
    fs = opened(store, Clock(), account_max_failures=3)
    start, results = threading.Barrier(12), []

    def guess(n):
        start.wait()
        try:
            fs.authenticate("carla", f"guess-number-{n}")
        except OncoLoopError as e:
            results.append(str(e))

    threads = [threading.Thread(target=guess, args=(n,)) for n in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 12 and len(checked) <= 3, checked  # 3 guesses checked, 9 refused unchecked
    assert sum("too many failed logins" in r for r in results) >= 9


def test_unknown_usernames_lock_alike_so_a_lockout_tells_nothing(store, people):
    clock = Clock()
    fs = opened(store, clock)
    fail(fs, "nobody-here", 5)
    with pytest.raises(OncoLoopError, match="too many failed logins for this account"):
        fs.authenticate("nobody-here", "whatever-pass")
    fail(fs, "CARLA", 5)  # usernames are case-folded: guessing with other cases does not reset the count
    with pytest.raises(OncoLoopError, match="too many failed logins for this account"):
        fs.authenticate("carla", "carla-password")


def test_one_address_spraying_many_accounts_is_locked(store, people):
    clock = Clock()
    fs = opened(store, clock, address_max_failures=6)
    for name in ("carla", "cleo", "rita"):
        fail(fs, name, 2, address="10.0.0.66")
    with pytest.raises(OncoLoopError, match="too many failed logins from your address"):
        fs.authenticate("adam", "adam-password", "10.0.0.66")
    assert fs.authenticate("adam", "adam-password", "10.0.0.7").username == "adam"  # other addresses log in
    clock.advance(3601)  # an hour without failures: forgotten (a shared clinic address is not locked for good)
    fail(fs, "carla", 1, address="10.0.0.66")
    assert fs.authenticate("adam", "adam-password", "10.0.0.66").username == "adam"


def test_the_ui_passes_the_client_address_and_commands_are_throttled_too(store, people, handlers, monkeypatch,
                                                                        capsys):
    from eval import promote

    for _ in range(5):
        _, status = handlers.auth.login(Session(), "adam", "wrong-password", "192.0.2.9")
        assert status.startswith("**Error:** wrong username or password")
    session, status = handlers.auth.login(Session(), "adam", "adam-password", "192.0.2.9")
    assert session.account is None and "too many failed logins" in status
    monkeypatch.setenv("ONCOLOOP_PASSWORD", "adam-password")  # the CLI shares the account's lockout
    assert promote.main(["v2", "--user", "adam", "--reason", "r"]) == 2
    assert "too many failed logins for this account" in capsys.readouterr().err
    assert users.main(["unlock", "adam"]) == 0  # an admin lifts it
    assert "unlocked adam" in capsys.readouterr().out
    assert login(handlers, "adam").account.username == "adam"


def test_sessions_expire_and_logout_ends_them(store, people, handlers, scripted_gateway):
    carla = login(handlers, "carla")
    assert 12 * 3600 - 60 < carla.expires_at - time.monotonic() <= 12 * 3600  # the default: 12 h
    carla, view = ask(handlers, carla, "What is ECOG 1?")
    assert view.meta["status"] == "answered"
    carla.expires_at = time.monotonic() - 1  # 12 h later
    carla, view = ask(handlers, carla, "And ECOG 2?")
    assert "your session has expired; log in again" in view.status and carla.account is None
    status, _ = handlers.rating.rate(carla, view.meta.get("message_id"), "up")
    assert "log in first" in status
    assert store.counts()["messages"] == 1  # nothing stored after expiry
    fresh, _ = handlers.chat.new_conversation(login(handlers, "carla"))
    assert fresh.expires_at > time.monotonic()  # a new conversation keeps the login's expiry, never extends it
    forged = Session(account=people["carla"])  # a session without an expiry is not a login
    assert "expired" in ask(handlers, forged, "Q?")[1].status
    rita = login(handlers, "rita")
    rita, status = handlers.auth.logout(rita)
    assert rita.account is None and status == "Logged out."
    assert handlers.review.queue(rita)[1].startswith("**Error:** log in first")


def test_session_length_is_configurable(store, people):
    short = AuthHandler(store, session_hours=0.5)
    session, _ = short.login(Session(), "carla", "carla-password")
    assert 1700 < session.expires_at - time.monotonic() <= 1800
    with pytest.raises(OncoLoopError, match="session_hours must be above 0"):
        AuthHandler(store, session_hours=0)


def test_the_app_throttles_by_the_browsers_address(store, people, handlers):
    """The login wiring of the Gradio app hands the client's address to the lockout (no browser needed)."""
    from types import SimpleNamespace

    import gradio as gr

    from ui.app import build_app

    handlers.auth.store.throttle.cfg = AccessConfig(address_max_failures=2)
    app = build_app(handlers)
    [do_login] = [d.fn for d in app.fns.values() if d.api_name == "login"]

    def from_address(host, name, password):
        state, status, *_ = do_login(Session(), name, password, gr.Request(client=SimpleNamespace(host=host)))
        return state, status

    for name in ("carla", "cleo"):
        assert "wrong username or password" in from_address("203.0.113.5", name, "bad-password")[1]
    state, status = from_address("203.0.113.5", "adam", "adam-password")
    assert state.account is None and "too many failed logins from your address" in status
    assert from_address("198.51.100.7", "adam", "adam-password")[0].account.username == "adam"
