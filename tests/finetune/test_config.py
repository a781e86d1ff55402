import pytest

from core.config import load_config
from core.errors import OncoLoopError
from finetune.bootstrap import BootstrapConfig
from tests.conftest import REPO


def test_every_shipped_bootstrap_config_loads():
    for path in sorted((REPO / "configs" / "bootstrap").glob("*.yaml")):
        cfg = load_config(BootstrapConfig, path)
        assert cfg.vocab_size > 0 and cfg.epochs > 0


def test_overrides_are_typed():
    cfg = load_config(BootstrapConfig, None, ["epochs=3", "lr=1e-4", "max_steps=1e2"])
    assert (cfg.epochs, cfg.lr, cfg.max_steps) == (3, 1e-4, 100)


@pytest.mark.parametrize("override,message", [
    ("epoch=3", "unknown config key"),
    ("epochs=three", "expected int"),
    ("epochs", "key=value"),
])
def test_bad_overrides_say_what_is_wrong(override, message):
    with pytest.raises(OncoLoopError, match=message):
        load_config(BootstrapConfig, None, [override])


def test_bad_yaml_names_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("epochs: [1,\n")
    with pytest.raises(OncoLoopError, match="bad.yaml is not valid YAML"):
        load_config(BootstrapConfig, bad)
    with pytest.raises(OncoLoopError, match="not found"):
        load_config(BootstrapConfig, tmp_path / "missing.yaml")
