"""Every shipped training and DeepSpeed config loads; the config layer's choices and refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.config import load_config
from core.errors import OncoLoopError
from finetune.distributed import Hardware, check_choices, check_precision, client_optimizer, deepspeed_config
from finetune.train_config import TrainConfig
from finetune.trainer import fsdp_arguments

REPO = Path(__file__).resolve().parents[2]
CPU = Hardware(cuda=False, bf16=True, tf32=False)
H100 = Hardware(cuda=True, bf16=True, tf32=True)
V100 = Hardware(cuda=True, bf16=False, tf32=False)
TRAIN_CONFIGS = sorted(p for m in ("lora", "ptuning", "full") for p in (REPO / "configs" / m).glob("*.yaml"))
DS_CONFIGS = sorted((REPO / "configs" / "deepspeed").glob("*.json"))


def test_shipped_configs_exist():
    names = {f"{p.parent.name}/{p.name}" for p in TRAIN_CONFIGS + DS_CONFIGS}
    assert {"lora/tiny_cpu.yaml", "ptuning/tiny_cpu.yaml", "full/tiny_cpu.yaml", "lora/llama3_8b_gpu.yaml",
            "ptuning/llama3_8b_gpu.yaml", "full/llama3_8b_gpu.yaml"} <= names
    assert {f"deepspeed/{n}.json" for n in ("zero0", "zero1", "zero2", "zero3", "zero2_offload",
                                             "zero3_offload", "zero3_nvme")} <= names


@pytest.mark.parametrize("path", TRAIN_CONFIGS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_training_config_loads_and_says_how_to_launch(path):
    cfg = load_config(TrainConfig, path)
    assert cfg.method == path.parent.name
    check_choices(cfg)
    assert "python -m finetune.train --config" in path.read_text() or "--module finetune.train" in path.read_text()
    if cfg.deepspeed:
        assert (REPO / cfg.deepspeed).is_file()
        check_precision(cfg, H100)
        assert deepspeed_config(cfg, H100)["optimizer"]["type"] == "AdamW"
    elif cfg.fsdp:
        check_precision(cfg, H100)
        assert fsdp_arguments(cfg)["fsdp_config"]["version"] == 2
    else:
        check_precision(cfg, CPU)


@pytest.mark.parametrize("path", DS_CONFIGS, ids=lambda p: p.name)
@pytest.mark.parametrize("optimizer", ["adam", "adamw", "lamb", "lion"])
def test_every_deepspeed_config_loads_with_every_optimizer(path, optimizer):
    raw = json.loads(path.read_text())
    stage = raw["zero_optimization"]["stage"]
    assert raw["train_micro_batch_size_per_gpu"] == "auto" and raw["gradient_accumulation_steps"] == "auto"
    cfg = TrainConfig(optimizer=optimizer, deepspeed=str(path))
    gpu = deepspeed_config(cfg, H100)
    assert gpu["optimizer"]["type"] == {"adam": "Adam", "adamw": "AdamW", "lamb": "Lamb", "lion": "Lion"}[optimizer]
    if optimizer == "lion" and stage == 0:
        with pytest.raises(OncoLoopError, match="zero2_offload.json"):
            deepspeed_config(cfg, CPU)
        return
    cpu = deepspeed_config(cfg, CPU)
    if optimizer == "lion":
        assert cpu["zero_optimization"]["offload_optimizer"]["device"] in ("cpu", "nvme")
    if optimizer == "lamb":
        assert "optimizer" not in cpu and client_optimizer(cfg, CPU, cpu)[0].__name__ == "Lamb"
    else:
        assert client_optimizer(cfg, CPU, cpu) is None


def test_adam_without_offload_on_cpu_is_torch_adam_and_adam_is_not_adamw():
    ds = deepspeed_config(TrainConfig(optimizer="adam", deepspeed="configs/deepspeed/zero1.json"), CPU)
    assert ds["optimizer"]["params"]["torch_adam"] is True and ds["optimizer"]["params"]["adam_w_mode"] is False
    ds = deepspeed_config(TrainConfig(optimizer="adamw", deepspeed="configs/deepspeed/zero2_offload.json"), CPU)
    assert "torch_adam" not in ds["optimizer"]["params"]  # offloaded: DeepSpeedCPUAdam


def test_without_deepspeed_the_trainer_builds_each_optimizer():
    names = {o: client_optimizer(TrainConfig(optimizer=o), CPU, None)[0].__name__ for o in ("adam", "adamw", "lamb", "lion")}
    assert names == {"adam": "Adam", "adamw": "AdamW", "lamb": "Lamb", "lion": "Lion"}


@pytest.mark.parametrize("values,hw,message", [
    ({"precision": "fp16"}, CPU, "fp16 needs a CUDA GPU"),
    ({"tf32": True}, CPU, "tf32=true needs an Ampere"),
    ({"tf32": True}, V100, "older than Ampere"),
    ({"precision": "bf16"}, V100, "no bf16 support"),
    ({"precision": "bf16", "deepspeed": "configs/deepspeed/zero2.json"}, CPU, "bf16 with DeepSpeed needs a GPU"),
    ({"method": "full", "fsdp": True}, CPU, "fsdp=true needs CUDA GPUs.*deepspeed=configs/deepspeed/zero3.json"),
])
def test_precision_the_hardware_cannot_do_is_refused(values, hw, message):
    with pytest.raises(OncoLoopError, match=message):
        check_precision(TrainConfig(**values), hw)


@pytest.mark.parametrize("values", [{"precision": "bf16", "tf32": True}, {"precision": "fp16"}])
def test_precision_a_gpu_can_do_passes(values):
    check_precision(TrainConfig(**values), H100)


@pytest.mark.parametrize("values,message", [
    ({"method": "dpo"}, "unknown method 'dpo'"),
    ({"optimizer": "sgd"}, "unknown optimizer 'sgd'"),
    ({"precision": "int4"}, "unknown precision"),
    ({"method": "ptuning", "grouping": "packing"}, "packing cannot be used with method=ptuning"),
    ({"method": "lora", "fsdp": True}, "fsdp=true is for method=full"),
    ({"method": "full", "fsdp": True, "deepspeed": "configs/deepspeed/zero3.json"}, "choose one"),
])
def test_unknown_choices_are_refused(values, message):
    with pytest.raises(OncoLoopError, match=message):
        check_choices(TrainConfig(**values))


def test_unknown_zero_stage_and_optimizer_section_are_refused(tmp_path):
    bad = tmp_path / "zero4.json"
    bad.write_text(json.dumps({"zero_optimization": {"stage": 4}}))
    with pytest.raises(OncoLoopError, match="unknown ZeRO stage 4"):
        deepspeed_config(TrainConfig(deepspeed=str(bad)), CPU)
    bad.write_text(json.dumps({"zero_optimization": {"stage": 1}, "optimizer": {"type": "Adam"}}))
    with pytest.raises(OncoLoopError, match="remove it and choose with optimizer="):
        deepspeed_config(TrainConfig(deepspeed=str(bad)), CPU)
    bad.write_text("{not json")
    with pytest.raises(OncoLoopError, match="not valid JSON"):
        deepspeed_config(TrainConfig(deepspeed=str(bad)), CPU)
    with pytest.raises(OncoLoopError, match="not found"):
        deepspeed_config(TrainConfig(deepspeed="configs/deepspeed/zero9.json"), CPU)


def test_fsdp_becomes_accelerates_fsdp2_plugin_on_gpus(tmp_path):
    """What fsdp=true hands the Trainer (CPU-only here, so the arguments, not a GPU run, are checked)."""
    from finetune.trainer import training_arguments

    cfg = TrainConfig(method="full", fsdp=True, gradient_checkpointing=True)
    check_choices(cfg)
    check_precision(cfg, H100)
    args = training_arguments(cfg, tmp_path, None)
    assert args.fsdp_plugin_args["fsdp_version"] == 2
    assert args.fsdp_plugin_args["auto_wrap_policy"] == "TRANSFORMER_BASED_WRAP"
    assert args.fsdp_plugin_args["state_dict_type"] == "FULL_STATE_DICT"
    assert args.fsdp_plugin_args["activation_checkpointing"] is True and not args.gradient_checkpointing


def test_gpu_without_a_cuda_toolkit_gets_torch_adam_and_a_message_for_lamb():
    no_nvcc = Hardware(cuda=True, bf16=True, tf32=True, cuda_ops=False)
    ds = deepspeed_config(TrainConfig(deepspeed="configs/deepspeed/zero2.json"), no_nvcc)
    assert ds["optimizer"]["params"]["torch_adam"] is True
    assert "torch_adam" not in deepspeed_config(TrainConfig(deepspeed="configs/deepspeed/zero2.json"),
                                                H100)["optimizer"]["params"]
    with pytest.raises(OncoLoopError, match="needs its fused CUDA op"):
        deepspeed_config(TrainConfig(optimizer="lamb", deepspeed="configs/deepspeed/zero2.json"), no_nvcc)
