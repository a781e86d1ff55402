"""Memory planning: the ZeRO accounting, checked against DeepSpeed's own estimators and real models.

DeepSpeed's estimators (deepspeed.runtime.zero.stage_1_and_2 / stage3) cover full fine-tuning with
mixed-precision Adam. With additional_buffer_factor=1 our figures agree with theirs to the byte except
for two documented differences in DeepSpeed's formulas:
  * ZeRO-3 gathers the largest layer: DeepSpeed charges it 4 bytes per parameter, we charge the dtype's
    width (2 bytes in fp16/bf16);
  * ZeRO-3 without offload: DeepSpeed charges 18 bytes per partitioned parameter; we charge 20, the
    ZeRO paper's 16 plus the 4-byte fp32 gradient partition that DeepSpeed itself counts at stage 2
    ("18 = 2 grads16 + 4 grads32 + 4 params32 + 8 optimizer states" in stage_1_and_2.py).
  * DeepSpeed's CPU figures include a max(4 x GPUs per node, ...) term for every rank loading the model
    in fp32 at start-up; we compare CPU figures where that term does not dominate (<= 4 GPUs).
"""

from __future__ import annotations

import json
import re

import pytest
import torch

from finetune.plan import (
    GiB, KNOWN_SHAPES, LLAMA2_7B, Layout, ModelShape, activation_bytes, estimate, main, plan, resolve_shape,
    trainable_params,
)
from finetune.train_config import TrainConfig

FULL = TrainConfig(method="full", optimizer="adam")
TINY = ModelShape(vocab=400, hidden=32, intermediate=64, layers=2, heads=2, kv_heads=2, tied=True)


def _ds2(total, gpus, offload):
    from deepspeed.runtime.zero.stage_1_and_2 import estimate_zero2_model_states_mem_needs

    return estimate_zero2_model_states_mem_needs(total, num_gpus_per_node=gpus, cpu_offload=offload,
                                                 additional_buffer_factor=1.0)


def _ds3(total, largest, gpus, offload, offload_params):
    from deepspeed.runtime.zero.stage3 import estimate_zero3_model_states_mem_needs

    cpu, gpu, _ = estimate_zero3_model_states_mem_needs(total, largest, num_gpus_per_node=gpus, cpu_offload=offload,
                                                        cpu_offload_params=offload_params, zero_init=True,
                                                        additional_buffer_factor=1.0)
    return cpu, gpu


@pytest.mark.parametrize("shape", [LLAMA2_7B, KNOWN_SHAPES["meta-llama/Llama-3.1-8B"], TINY], ids=["7b", "8b", "tiny"])
@pytest.mark.parametrize("gpus", [1, 2, 4, 8])
def test_full_fine_tuning_model_states_agree_with_deepspeed(shape, gpus):
    psi, big = shape.total_params(), shape.largest_layer_params()
    est = {(s, o): estimate(shape, FULL, Layout(s, o, "fp16", gpus)) for s, o in
           [(2, "none"), (2, "optimizer"), (3, "none"), (3, "optimizer"), (3, "optimizer+params")]}
    close = lambda a, b: abs(a - b) <= 4  # integer division on both sides  # noqa: E731

    cpu, gpu = _ds2(psi, gpus, offload=False)
    assert close(est[2, "none"].model_states, gpu)
    cpu, gpu = _ds2(psi, gpus, offload=True)
    assert close(est[2, "optimizer"].model_states, gpu)
    if gpus <= 4:
        assert close(est[2, "optimizer"].cpu_per_node, cpu)

    gather_gap = 2 * big  # DeepSpeed: 4 bytes per gathered parameter, ours: 2 in fp16
    cpu, gpu = _ds3(psi, big, gpus, True, True)
    assert close(est[3, "optimizer+params"].model_states + gather_gap, gpu)
    assert close(est[3, "optimizer+params"].cpu_per_node, cpu)
    cpu, gpu = _ds3(psi, big, gpus, True, False)
    assert close(est[3, "optimizer"].model_states + gather_gap, gpu)
    assert close(est[3, "optimizer"].cpu_per_node, cpu)
    cpu, gpu = _ds3(psi, big, gpus, False, False)
    assert close(est[3, "none"].model_states + gather_gap - 2 * psi // gpus, gpu)
    assert est[3, "none"].model_states <= 1.12 * gpu  # the one real disagreement stays small


def test_printed_deepspeed_tables_match_ours(capsys):
    """The user-facing estimators (the *_all_cold printers) give the same GB figures."""
    from deepspeed.runtime.zero.stage3 import estimate_zero3_model_states_mem_needs_all_cold
    from deepspeed.runtime.zero.stage_1_and_2 import estimate_zero2_model_states_mem_needs_all_cold

    psi, big, gpus = LLAMA2_7B.total_params(), LLAMA2_7B.largest_layer_params(), 2
    capsys.readouterr()
    estimate_zero2_model_states_mem_needs_all_cold(psi, num_gpus_per_node=gpus, additional_buffer_factor=1.0)
    estimate_zero3_model_states_mem_needs_all_cold(psi, big, num_gpus_per_node=gpus, additional_buffer_factor=1.0)
    rows = re.findall(r"^\s+([\d.]+)GB \|\s+([\d.]+)GB \| (.*)$", capsys.readouterr().out, re.M)
    table = {opts.replace(" ", "").replace("OffloadDeviceEnum.", ""): (float(c), float(g)) for c, g, opts in rows}
    ours = lambda s, o: estimate(LLAMA2_7B, FULL, Layout(s, o, "fp16", gpus))  # noqa: E731
    z2_off = table["offload_optimizer=cpu"]
    assert z2_off == (round(ours(2, "optimizer").cpu_per_node / GiB, 2), round(ours(2, "optimizer").model_states / GiB, 2))
    assert table["offload_optimizer=none"][1] == round(ours(2, "none").model_states / GiB, 2)
    z3_both = table["offload_param=cpu,offload_optimizer=cpu,zero_init=1"]
    assert z3_both[0] == round(ours(3, "optimizer+params").cpu_per_node / GiB, 2)
    assert z3_both[1] == round((ours(3, "optimizer+params").model_states + 2 * big) / GiB, 2)
    assert len(rows) == 2 + 6


def test_zero_paper_accounting_sixteen_bytes_partitioned_by_stage():
    psi, n = LLAMA2_7B.total_params(), 4
    states = lambda s: (lambda e: (e.params, e.grads, e.optimizer))(estimate(LLAMA2_7B, FULL, Layout(s, "none", "bf16", n)))  # noqa: E731
    assert sum(states(0)) == 16 * psi
    assert states(1) == (2 * psi, 2 * psi, 12 * psi // n)
    assert states(2) == (2 * psi, 2 * psi // n, 12 * psi // n)
    assert states(3) == (2 * psi // n, 2 * psi // n, 12 * psi // n)
    fp32 = estimate(LLAMA2_7B, FULL, Layout(0, "none", "fp32"))
    assert (fp32.params, fp32.grads, fp32.optimizer, fp32.buffers) == (4 * psi, 4 * psi, 8 * psi, 0)
    lion = estimate(LLAMA2_7B, TrainConfig(method="full", optimizer="lion"), Layout(0, "none", "bf16"))
    assert lion.optimizer == 8 * psi  # master weights + one momentum


def test_lora_keeps_the_base_frozen_and_cheap():
    cfg = TrainConfig(method="lora", lora_r=16)
    psi, t = LLAMA2_7B.total_params(), trainable_params(LLAMA2_7B, cfg)
    assert t == 32 * 16 * 4 * (4096 + 4096)
    e = estimate(LLAMA2_7B, cfg, Layout(0, "none", "bf16"))
    assert (e.params, e.grads, e.optimizer, e.buffers) == (2 * (psi + t), 2 * t, 12 * t, 4 * t)
    full = estimate(LLAMA2_7B, FULL, Layout(0, "none", "bf16"))
    assert e.model_states < full.model_states / 7
    assert estimate(LLAMA2_7B, cfg, Layout(3, "none", "bf16", 8)).params == 2 * (psi + t) // 8


def _peft_trainable(model_dir, peft_config) -> int:
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    model = get_peft_model(AutoModelForCausalLM.from_pretrained(str(model_dir)), peft_config)
    return model.get_nb_trainable_parameters()[0]


def test_counts_match_real_models(tiny_base):
    from deepspeed.runtime.zero.stage3 import model_to_params
    from peft import LoraConfig, PromptEncoderConfig
    from transformers import AutoModelForCausalLM

    shape = resolve_shape(str(tiny_base))
    model = AutoModelForCausalLM.from_pretrained(str(tiny_base))
    assert (shape.total_params(), shape.largest_layer_params()) == model_to_params(model)
    lora = TrainConfig(method="lora", lora_r=4, lora_target_modules=["q_proj", "v_proj", "down_proj", "lm_head"])
    assert trainable_params(shape, lora) == _peft_trainable(tiny_base, LoraConfig(
        r=4, target_modules=lora.lora_target_modules, task_type="CAUSAL_LM"))
    for kind in ("MLP", "LSTM"):
        pt = TrainConfig(method="ptuning", ptuning_virtual_tokens=5, ptuning_encoder_type=kind,
                         ptuning_encoder_hidden_size=24)
        assert trainable_params(shape, pt) == _peft_trainable(tiny_base, PromptEncoderConfig(
            num_virtual_tokens=5, encoder_reparameterization_type=kind, encoder_hidden_size=24,
            task_type="CAUSAL_LM"))


def test_known_shapes_count_like_transformers():
    from accelerate import init_empty_weights
    from transformers import LlamaConfig, LlamaForCausalLM

    for name in ("meta-llama/Llama-2-7b-hf", "meta-llama/Llama-3.2-1B", "mistralai/Mistral-7B-v0.1"):
        s = KNOWN_SHAPES[name]
        with init_empty_weights():
            model = LlamaForCausalLM(LlamaConfig(vocab_size=s.vocab, hidden_size=s.hidden, intermediate_size=s.intermediate,
                                                 num_hidden_layers=s.layers, num_attention_heads=s.heads,
                                                 num_key_value_heads=s.kv_heads, tie_word_embeddings=s.tied))
        model.tie_weights()  # on the meta device tying waits for this call
        assert s.total_params() == sum({id(p): p.numel() for p in model.parameters()}.values()), name


def _saved_activation_bytes(model, ids) -> int:
    """Bytes autograd keeps for backward, weights excluded, each storage counted once."""
    weights = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: dict[int, int] = {}

    def pack(t):
        storage = t.untyped_storage()
        if storage.data_ptr() not in weights:
            seen[storage.data_ptr()] = max(seen.get(storage.data_ptr(), 0), storage.nbytes())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(input_ids=ids, labels=ids)
    return sum(seen.values())


@pytest.mark.parametrize("h,i,layers,heads,kv,vocab,b,s", [(64, 172, 2, 4, 4, 400, 2, 64),
                                                         (128, 344, 4, 4, 2, 1000, 4, 96)])
def test_activation_estimate_is_close_to_what_autograd_keeps(h, i, layers, heads, kv, vocab, b, s):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=vocab, hidden_size=h, intermediate_size=i, num_hidden_layers=layers,
                                         num_attention_heads=heads, num_key_value_heads=kv,
                                         attn_implementation="sdpa")).train()
    measured = _saved_activation_bytes(model, torch.randint(0, vocab, (b, s)))
    shape = ModelShape(vocab, h, i, layers, heads, kv)
    est = activation_bytes(shape, TrainConfig(per_device_batch_size=b, max_seq_len=s), "fp32", False)
    assert 0.8 < est / measured < 1.25, (est, measured)
    assert activation_bytes(shape, TrainConfig(per_device_batch_size=b, max_seq_len=s), "fp32", True) < est


def _config(tmp_path, **fields):
    import yaml

    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(fields))
    return str(path)


def test_cli_reads_sizes_from_directory_version_and_hub_table(tiny_base, tmp_path, capsys):
    assert main(["--config", _config(tmp_path, base=str(tiny_base), method="lora"), "--gpu-memory", "1"]) == 0
    out = capsys.readouterr().out
    table = [line for line in out.splitlines() if re.match(r"\s+[0-3] ", line)]
    assert len(table) == 24 and all(line.split()[-1] == "yes" or "<-" in line for line in table)
    assert "24 of 24 configurations fit in 1 GiB" in out
    assert re.search(r"^\s+0 none\s+fp32 .* yes <- this config$", out, re.M)

    from finetune.bootstrap import install

    install(tiny_base)  # registered and champion: an alias works as the base
    capsys.readouterr()
    assert main(["--config", _config(tmp_path, base="champion", method="full"), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 24 and rows[0]["layout"] == {"stage": 0, "offload": "none", "dtype": "fp32", "gpus": 1, "nodes": 1}
    assert rows[0]["params"] == 4 * resolve_shape(str(tiny_base)).total_params()

    ds = tmp_path / "z3.json"
    ds.write_text(json.dumps({"zero_optimization": {"stage": 3, "offload_optimizer": {"device": "cpu"}}}))
    cfg = _config(tmp_path, base="meta-llama/Meta-Llama-3-8B", method="full", precision="bf16", deepspeed=str(ds))
    assert main(["--config", cfg, "--gpus", "8", "--gpu-memory", "80"]) == 0
    out = capsys.readouterr().out
    assert "8,030.3M parameters" in out
    assert re.search(r"^\s+0 none\s+bf16 .* no$", out, re.M)  # 16 bytes x 8B does not fit one 80 GB GPU
    assert re.search(r"^\s+3 optimizer\s+bf16 .* (yes|tight) <- this config$", out, re.M)


def test_cli_overrides_and_bad_input(tmp_path, capsys):
    cfg = _config(tmp_path, base="my-org/unknown-7b", method="full")
    assert main(["--config", cfg]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cannot find the sizes of base 'my-org/unknown-7b'") and "--params 7B" in err
    assert main(["--config", cfg, "--hidden", "4096", "--layers", "32", "--params", "7B", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert sum(rows[0][k] for k in ("params", "grads", "optimizer")) == 16 * 7_000_000_000
    with pytest.raises(SystemExit) as exit_:
        main(["--config", cfg, "--params", "seven"])
    assert exit_.value.code == 2 and "cannot read 'seven' as a parameter count" in capsys.readouterr().err
    assert main(["--config", _config(tmp_path, base="x", method="dpo"), "--hidden", "8", "--layers", "1"]) == 2
    assert "unknown method 'dpo'" in capsys.readouterr().err
    assert main(["--config", _config(tmp_path, base="x", deepspeed="configs/deepspeed/nope.json"),
                 "--hidden", "8", "--layers", "1"]) == 2
    assert "DeepSpeed config configs/deepspeed/nope.json not found" in capsys.readouterr().err
    assert main(["--config", str(tmp_path / "missing.yaml")]) == 2
    assert "not found" in capsys.readouterr().err


def test_every_layout_is_planned_once():
    layouts = [(e.layout.stage, e.layout.offload, e.layout.dtype) for e in plan(TINY, FULL, gpus=2)]
    assert len(layouts) == len(set(layouts)) == 24
    assert {o for s, o, _ in layouts if s == 0} == {"none"}
    assert {o for s, o, _ in layouts if s in (1, 2)} == {"none", "optimizer"}
    assert (3, "optimizer+params", "bf16") in layouts


def test_every_shipped_training_config_can_be_planned(tiny_base, capsys):
    """The shipped configs' own header command (`python -m finetune.plan --config ...`) works for each."""
    from finetune.bootstrap import install
    from tests.conftest import REPO

    install(tiny_base)  # the tiny configs train the champion
    configs = sorted(p for m in ("lora", "ptuning", "full") for p in (REPO / "configs" / m).glob("*.yaml"))
    assert len(configs) >= 3, "each method ships at least its tiny_cpu.yaml"
    for path in configs:
        capsys.readouterr()
        assert main(["--config", str(path), "--gpus", "8", "--gpu-memory", "80"]) == 0, capsys.readouterr().err
        out = capsys.readouterr().out
        assert out.count("<- this config") == 1, path  # the config's own ZeRO stage, offload and dtype
