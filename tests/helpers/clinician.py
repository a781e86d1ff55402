"""Simulated clinicians and reviewers driving the running UI through its named Gradio API endpoints.

Used by the UI's load test and the closed-loop test::

    ui = UIServer(home, gateway_url)           # python -m ui as a subprocess
    ui.wait()
    carla = SimulatedClinician(ui.url, "carla", "carla-password")
    answer = carla.ask("How is tumour lysis syndrome prevented?")   # {"message_id", "answer", "version", ...}
    carla.rate(answer["message_id"], thumbs="down", tags=("incomplete",), correction="Hydration and allopurinol.")
    rita = SimulatedReviewer(ui.url, "rita", "rita-password")
    rita.approve(rita.queue()[0]["rating_id"])

Each simulated person holds its own ``gradio_client.Client``, so the UI keeps a separate session
(login and chat) for each, as for separate browser tabs.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from core.process import free_port, stop_group

REPO = Path(__file__).resolve().parents[2]


class UIError(AssertionError):
    """The UI answered an action with an error message."""


class UIServer:
    """``python -m ui`` as a subprocess in an OncoLoop home; stopped by :meth:`stop`."""

    def __init__(self, home: Path, gateway_url: str, *overrides: str, port: int | None = None,
                 env: dict | None = None):
        self.home = Path(home)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = self.home / "ui.log"
        self.home.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "ui", "--port", str(self.port), "--gateway-url", gateway_url, *overrides],
                cwd=REPO, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                env={**os.environ, "ONCOLOOP_HOME": str(self.home), "GRADIO_ANALYTICS_ENABLED": "False",
                     **(env or {})})

    def wait(self, timeout: float = 180.0) -> "UIServer":
        """Wait until the app answers its config (it is then ready for clients)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"python -m ui exited ({self.proc.returncode}):\n{self.log_tail()}")
            try:
                if httpx.get(f"{self.url}/config", timeout=5).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"python -m ui did not start within {timeout:.0f} s:\n{self.log_tail()}")

    def log_tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""

    def stop(self) -> None:
        stop_group(self.proc, 20)


def _client(url: str):
    from gradio_client import Client

    return Client(url, verbose=False, analytics_enabled=False, download_files=False)


def _check(status: str) -> str:
    if isinstance(status, str) and status.startswith("**Error:**"):
        raise UIError(status.removeprefix("**Error:** "))
    return status


class SimulatedClinician:
    """One clinician with their own UI session: logs in at once, then asks and rates."""

    role = "clinician"

    def __init__(self, ui_url: str, username: str, password: str):
        self.client = _client(ui_url)
        self.username = username
        status, self.account_role, *_ = self.client.predict(username, password, api_name="/login")
        _check(status)

    def ask(self, question: str) -> dict:
        """Ask in this session's conversation; returns ``message_id``, ``answer``, ``version`` (shown), ``guard``.

        Raises:
            UIError: the page showed an error (the question may still be stored, as unanswered).
        """
        chat, status, meta, *_ = self.client.predict(question, api_name="/ask")
        _check(status)
        if not isinstance(meta, dict) or meta.get("status") != "answered":
            raise UIError(f"no answer: {status!r} {meta!r}")
        return meta

    def new_conversation(self) -> None:
        self.client.predict(api_name="/new_conversation")

    def rate(self, message_id: int, thumbs: str | None = None, score: int | None = None, tags=(),
             correction: str | None = None) -> int:
        """Rate one of this session's answers; returns the rating id.

        Args:
            thumbs: "up", "down" or None.
        """
        status, result = self.client.predict(message_id, thumbs, None if score is None else str(score),
                                             list(tags), correction or "", api_name="/rate")
        _check(status)
        return result["rating_id"]


class SimulatedReviewer(SimulatedClinician):
    """A reviewer: reads the queue of corrections and decides on them."""

    role = "reviewer"

    def queue(self) -> list[dict]:
        """Corrections waiting: dicts with ``rating_id``, ``question``, ``answer``, ``correction``, ``tags``,
        ``model_version``, ``guard_actions``, ``rater``."""
        _table, status, items = self.client.predict(api_name="/review_queue")
        _check(status)
        return items

    def review(self, rating_id: int, decision: str, edited_text: str | None = None, note: str | None = None) -> dict:
        status, result, *_ = self.client.predict(rating_id, decision, edited_text or "", note or "",
                                                 api_name="/review")
        _check(status)
        return result

    def approve(self, rating_id: int, edited_text: str | None = None) -> dict:
        """Approve a correction as it is, or (with ``edited_text``) approve an edited version."""
        return self.review(rating_id, "edit" if edited_text else "approve", edited_text)

    def reject(self, rating_id: int, note: str | None = None) -> dict:
        return self.review(rating_id, "reject", note=note)
