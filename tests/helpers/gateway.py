"""A real gateway (``python -m serve``) as a subprocess in an OncoLoop home, and the registry moves tests make."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from feedback.db import open_store
from feedback.keys import local_key
from core.settings import get_settings
from core.process import free_port, stop_group
from serve.registry import Registry

REPO = Path(__file__).resolve().parents[2]


class Gateway:
    """``python -m serve`` as a subprocess; stopped (with its engines) by :meth:`stop`."""

    def __init__(self, home: Path, *args: str, env: dict | None = None):
        self.home = home
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # the tests' own gateway key (admin: /ready's details too), kept in the home as OncoLoop's clients keep theirs
        self.key = local_key("tests", ("admin",), get_settings({"ONCOLOOP_HOME": str(home)}))
        self.headers = {"Authorization": f"Bearer {self.key}"}
        self.log = home / "gateway.log"
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "serve", "--port", str(self.port), *args], cwd=REPO, stdout=out,
                stderr=subprocess.STDOUT, env={**os.environ, "ONCOLOOP_HOME": str(home), **(env or {})},
                start_new_session=True)

    def wait(self, until, timeout: float = 600.0, what: str = "the gateway to be ready") -> dict:
        """Poll ``/ready`` until ``until(state)`` holds; fail with the gateway's log otherwise."""
        deadline = time.monotonic() + timeout
        state: dict = {}
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"the gateway exited:\n{self.log.read_text()[-3000:]}"
            try:
                state = self.ready()
                if until(state):
                    return state
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"timed out waiting for {what}; last state {state}\n{self.diagnosis()}")

    def diagnosis(self) -> str:
        """What a stuck gateway is doing: the registry as this process reads it, the store files the gateway
        holds open, and its log after it was asked for every thread's and task's stack (SIGUSR1, SIGUSR2)."""
        lines = []
        try:
            lines.append(f"registry read by the test: {registry_at(self.home).aliases()}")
        except Exception as e:  # a diagnosis must not hide the failure it explains
            lines.append(f"registry read by the test failed: {e!r}")
        try:
            held = [os.readlink(f) for f in Path(f"/proc/{self.proc.pid}/fd").iterdir()]
            lines.append(f"store files open in the gateway: {sorted(f for f in held if 'oncoloop.db' in f)}")
            for sig in (signal.SIGUSR1, signal.SIGUSR2):
                os.kill(self.proc.pid, sig)
            time.sleep(2)
        except OSError as e:
            lines.append(f"cannot inspect the gateway: {e!r}")
        return "\n".join(lines) + "\n" + self.log.read_text()[-12000:]

    def ready(self) -> dict:
        """``/ready`` with the details (engine URLs, process ids)."""
        return httpx.get(f"{self.url}/ready?details=true", timeout=5, headers=self.headers).json()

    def client(self, timeout: float = 60):
        """An ``openai`` client of this gateway, with the tests' key."""
        import openai

        return openai.OpenAI(base_url=f"{self.url}/v1", api_key=self.key, max_retries=0, timeout=timeout)

    def stop(self) -> None:
        stop_group(self.proc, 30)


def registry_at(home: Path) -> Registry:
    return Registry(open_store(get_settings({"ONCOLOOP_HOME": str(home)})))


def record_gate(home: Path, candidate: str, passed: bool = True, at: str = "2026-01-01T00:00:00+00:00") -> Path:
    """A gate decision for ``candidate`` as ``eval.gate`` writes it (``reports/<id>/decision.json``)."""
    report_dir = home / "reports" / f"{at[:10]}-gate-{candidate}-{'pass' if passed else 'fail'}"
    report_dir.mkdir(parents=True, exist_ok=True)
    (report_dir / "decision.json").write_text(json.dumps({
        "candidate": candidate, "champion": "x", "passed": passed, "promoted": False, "report_dir": str(report_dir),
        "reasons": [f"retention_chrf_no_regression: {'PASS' if passed else 'FAIL'}"], "created_at": at}))
    return report_dir


def add_version(home: Path, source: Path, name: str) -> Path:
    """Copy a model directory in as version ``name`` and register it."""
    target = home / "models" / name
    shutil.copytree(source, target)
    registry_at(home).register(target)
    return target


def ptuning_adapter(base: Path, out: Path) -> Path:
    """A P-tuning adapter on ``base`` saved as a version directory (``mergeable: false``)."""
    from peft import PromptEncoderConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base, dtype="float32")
    config = PromptEncoderConfig(task_type="CAUSAL_LM", num_virtual_tokens=4, encoder_hidden_size=16)
    get_peft_model(model, config).save_pretrained(out)
    (out / "meta.json").write_text(json.dumps({"method": "ptuning", "base": str(base), "mergeable": False}))
    return out
