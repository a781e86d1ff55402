import json
from pathlib import Path

import pytest

from core.config import load_config
from core.errors import OncoLoopError
from serve.config import ServeConfig
from serve.engines import choose_engine, engine_spec
from serve.protocol import RequestLimits, parse_chat
from serve.routing import RequestError, ab_arm, check_context, conversation_key

REPO = Path(__file__).resolve().parents[2]


def test_ab_share_is_respected_and_stable():
    keys = [f"id:conv-{i}" for i in range(4000)]
    arms = [ab_arm(k, 0.2) for k in keys]
    assert 0.17 < arms.count("challenger") / len(keys) < 0.23
    assert arms == [ab_arm(k, 0.2) for k in keys]  # same conversation, same arm, every time
    # raising the share only moves champion conversations over, never the other way
    assert all(ab_arm(k, 0.5) == "challenger" for k, a in zip(keys, arms) if a == "challenger")


def test_conversation_key_prefers_explicit_ids():
    body = {"conversation_id": "c", "user": "u", "messages": [{"role": "user", "content": "q"}]}
    assert conversation_key(body, {"x-oncoloop-conversation": "h"}) == "id:h"
    assert conversation_key(body, {}) == "id:c"
    assert conversation_key({**body, "conversation_id": None}, {}) == "user:u"
    later_turn = {"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "q"},
                               {"role": "assistant", "content": "a"}, {"role": "user", "content": "q2"}]}
    assert conversation_key(later_turn, {}) == "first:q"


@pytest.mark.parametrize("body,code,param", [
    ([], "invalid_body", None),
    ({"messages": [{"role": "user", "content": "q"}]}, "invalid_request", "model"),
    ({"model": "champion"}, "invalid_request", "messages"),
    ({"model": "champion", "messages": [{"role": "system", "content": "only a preamble"}]}, "empty_messages",
     "messages"),
    ({"model": "champion", "messages": [{"role": "user", "content": ["parts"]}]}, "invalid_request",
     "messages[0].content"),
    ({"model": "champion", "messages": [{"role": "robot", "content": "q"}]}, "invalid_request", "messages[0].role"),
    ({"model": "champion", "messages": [{"role": "user", "content": "q"}], "max_tokens": 0}, "invalid_request",
     "max_tokens"),
])
def test_parse_chat_refuses(body, code, param):
    with pytest.raises(RequestError) as e:
        parse_chat(json.dumps(body).encode(), RequestLimits())
    assert e.value.status == 400 and e.value.code == code
    assert e.value.param is None or e.value.param.startswith(param)
    assert "fix it" in e.value.message or "ask a question" in e.value.message or "JSON object" in e.value.message


def test_context_check():
    check_context(1000, None, 1024)
    with pytest.raises(RequestError, match="context is 1024 tokens; the prompt has 1024"):
        check_context(1024, None, 1024)


def test_shipped_serve_configs_load():
    paths = sorted((REPO / "configs" / "serve").glob("*.yaml"))
    assert paths
    for path in paths:
        cfg = load_config(ServeConfig, path)
        assert choose_engine(cfg.engine, gpu=False, vllm_here=False) in ("vllm", "transformers")


def test_engine_commands(tiny_base, tmp_path, monkeypatch):
    class Version:
        id, path, mergeable = "v1", str(tiny_base), 1

    cfg = ServeConfig(vllm_venv=str(tmp_path / "venv"), vllm_enforce_eager=True)
    spec = engine_spec("transformers", Version, cfg)
    assert spec.command[spec.command.index("serve") + 1] == str(tiny_base)
    assert spec.served_name == str(tiny_base) and spec.context == 1024
    with pytest.raises(OncoLoopError, match="setup_vllm_cpu.sh"):
        engine_spec("vllm", Version, cfg)
    (tmp_path / "venv" / "bin").mkdir(parents=True)
    (tmp_path / "venv" / "bin" / "python").write_text("")
    spec = engine_spec("vllm", Version, cfg)
    assert spec.command[1].endswith("vllm_launcher.py") and spec.served_name == "v1"
    assert spec.command[spec.command.index("--served-model-name") + 1] == "v1" and "--enforce-eager" in spec.command
    assert spec.env["VLLM_CPU_KVCACHE_SPACE"] == "1"
