"""Asking versions through a gateway with the ``openai`` client (concurrent, with progress), and a private
gateway (``python -m serve versions=[...] challenger_share=0``) started for one evaluation."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from core.errors import OncoLoopError
from core.process import die_with_parent, free_port, stop_group
from eval.sets import EvalItem

REPO = Path(__file__).resolve().parent.parent
# A/B off: a request naming the champion gets the champion, never the challenger. Guard audit mode
# (serve/guard.py): identifiers reach the engine, so the safety suite sees whether the model echoes them.
EVAL_HEADERS = {"X-OncoLoop-AB": "off", "X-OncoLoop-Guard": "audit"}


def gateway_key() -> str:
    """Evaluation's gateway key: ``$ONCOLOOP_API_KEY``, else its own local key (scope ``eval``: audit mode)."""
    from feedback.keys import client_key

    return client_key("eval", ("eval",))


@dataclass
class Answer:
    text: str
    version: str
    guard: list[str] = field(default_factory=list)  # the gateway's guard actions (oncoloop.guard)
    latency_ms: int = 0


def ask_all(base_url: str, model: str, items: list[EvalItem], max_tokens: int, temperature: float = 0.0,
            concurrency: int = 4, timeout_s: float = 300.0, retries: int = 4, label: str = "",
            retrieval: bool = True) -> list[Answer]:
    """Answers of ``model`` (alias or version id) to every item, in item order.

    Raises:
        OncoLoopError: the gateway is unreachable, does not serve ``model``, or refuses a request.
    """
    import openai
    from tqdm import tqdm

    client = openai.OpenAI(base_url=base_url.rstrip("/") + "/v1", api_key=gateway_key(), timeout=timeout_s,
                           max_retries=retries)

    def one(item: EvalItem) -> Answer:
        start = time.monotonic()
        try:
            resp = client.chat.completions.create(model=model, messages=item.messages, max_tokens=max_tokens,
                                                  temperature=temperature, extra_headers=EVAL_HEADERS,
                                                  extra_body={"ab": False, "retrieval": retrieval})
        except openai.APIConnectionError as e:
            raise OncoLoopError(f"the gateway at {base_url} is unreachable ({e}); start it with `python -m serve` "
                                "or leave --gateway-url out to start a private one.") from None
        except openai.NotFoundError as e:
            raise OncoLoopError(f"the gateway at {base_url} does not serve {model!r}: {_message(e)} Start a "
                                f"gateway that serves it: `python -m serve versions=[{model}]`.") from None
        except openai.APIStatusError as e:
            raise OncoLoopError(f"the gateway refused the question {item.id!r} for {model}: {_message(e)}") from None
        extra = (resp.model_extra or {}).get("oncoloop") or {}
        text = resp.choices[0].message.content or ""
        return Answer(text, extra.get("version") or resp.model, list(extra.get("guard") or []),
                      int(1000 * (time.monotonic() - start)))

    with ThreadPoolExecutor(concurrency) as pool:
        answers = list(tqdm(pool.map(one, items), total=len(items), desc=label or model, unit="answer",
                            file=sys.stderr, leave=False))
    return answers


def _message(e) -> str:
    body = getattr(e, "body", None)
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])
    return str(e)


class PrivateGateway:
    """``python -m serve`` serving the champion plus pinned ``versions``, for one evaluation; a context manager."""

    def __init__(self, versions: list[str], engine: str = "auto", timeout_s: float = 600.0,
                 log_dir: Path | None = None, guard: str = "", overrides: list[str] | None = None):
        self.versions, self.engine, self.timeout_s, self.guard = versions, engine, timeout_s, guard
        self.overrides = list(overrides or [])
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        from core.settings import get_settings

        self.log = (log_dir or get_settings().ensure_layout().runs_dir / "eval") / f"gateway-{self.port}.log"
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> "PrivateGateway":
        self.log.parent.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "serve", "--port", str(self.port), "--engine", self.engine,
               f"versions=[{','.join(self.versions)}]", "challenger_share=0", "poll_interval_s=1", *self.overrides]
        if self.guard:
            guard = Path(self.guard) if Path(self.guard).exists() else REPO / self.guard  # repo-relative works too
            cmd[3:3] = ["--guard", str(guard.absolute())]
        with open(self.log, "ab") as out:
            # SIGTERM when this process dies (even by kill -9): the gateway then stops its own engines
            self.proc = subprocess.Popen(cmd, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                         env={**os.environ, "PYTHONPATH": str(REPO)}, preexec_fn=die_with_parent())
        try:
            self._wait()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait(self) -> None:
        key = gateway_key()
        deadline = time.monotonic() + self.timeout_s
        state: dict = {}
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise OncoLoopError(f"the private gateway exited (status {self.proc.returncode}); its log "
                                    f"{self.log} ends with:\n{self._tail()}")
            try:
                state = httpx.get(f"{self.url}/ready", timeout=5, headers={"Authorization": f"Bearer {key}"}).json()
            except (httpx.HTTPError, ValueError):
                state = {}
            engines = state.get("engines") or {}
            failed = [v for v in self.versions if v in (state.get("failed") or []) and v not in engines]
            if failed:
                raise OncoLoopError(f"the private gateway cannot serve {', '.join(failed)}: its engine failed to "
                                    f"start. Check the version directory; the gateway log {self.log} ends with:\n"
                                    f"{self._tail()}")
            if state.get("ready") and all(engines.get(v, {}).get("state") == "ready" for v in self.versions):
                return
            time.sleep(0.5)
        raise OncoLoopError(f"the private gateway did not serve {', '.join(self.versions)} within {self.timeout_s:.0f}"
                            f" s (state {state}); see {self.log}:\n{self._tail()}")

    def _tail(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-2000:]
        except OSError:
            return ""

    def stop(self) -> None:
        stop_group(self.proc, 60)

    def __exit__(self, *exc) -> None:
        self.stop()
