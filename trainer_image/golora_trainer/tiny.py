"""A tiny Qwen2-architecture causal LM + Go BPE tokenizer, for CPU runs, tests and the demo.

No model hub is reachable in CI or the dev cluster, so the tests build their base model:
a byte-level BPE tokenizer (vocab ~3,000) trained with ``tokenizers`` on Go source from
``$(go env GOROOT)/src``, with a ChatML (Qwen-style) chat template and ``<|im_end|>`` as EOS,
and a ~1M-parameter ``Qwen2ForCausalLM`` with random weights. The result is a normal model
directory (``AutoModelForCausalLM`` / ``AutoTokenizer`` load it), so training runs exactly the
code path it runs for Qwen2.5-7B.

``pretrain_steps`` > 0 trains the whole tiny model on Go first (chat-formatted doc->function
pairs and raw files from packages outside ``gosrc.HELDOUT_PACKAGES``): such a base writes
Go-shaped code and stops at EOS. With 0 steps the base is random; after ~20 LoRA steps it
emits nothing but tabs — the blog's collapse, used as the quality gate's planted failure.

Built models are cached under ``$GOLORA_CACHE/tiny/<key>`` (default ``~/.cache/golora``).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import math
import os
import random
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from . import gosrc, settings

log = logging.getLogger(__name__)

BUILDER_VERSION = 3  # bump when the recipe changes: cached models are keyed by it
EOS = "<|im_end|>"
PAD = "<|endoftext|>"
SPECIAL_TOKENS = (PAD, "<|im_start|>", EOS)
DEFAULT_SYSTEM = "You are a helpful assistant."
PAIR_SHARE = 0.85  # pretraining batches: chat-formatted pairs vs raw Go files

# ChatML as Qwen2.5 uses it (system turn injected when absent).
CHAT_TEMPLATE = (
    "{%- if messages[0]['role'] != 'system' %}"
    "{{- '<|im_start|>system\\n" + DEFAULT_SYSTEM + "<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}"
    "{{- '<|im_start|>assistant\\n' }}"
    "{%- endif %}"
)


@dataclass(frozen=True)
class TinySpec:
    vocab_size: int = 3000
    hidden_size: int = 128
    intermediate_size: int = 384
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    max_position_embeddings: int = 2048
    pretrain_steps: int = 0
    pretrain_batch: int = 8
    pretrain_seq_len: int = 256
    pretrain_lr: float = 3e-3
    seed: int = 0

    def key(self) -> str:
        blob = json.dumps({**asdict(self), "builder": BUILDER_VERSION, "go": gosrc.go_version()}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def cache_root() -> Path:
    return Path(settings.current().cache).expanduser()


# --- tokenizer ----------------------------------------------------------------------------
def train_tokenizer(texts: list[str], vocab_size: int):
    """Byte-level BPE over Go source, wrapped as a transformers fast tokenizer with ChatML."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token=EOS, pad_token=PAD, additional_special_tokens=["<|im_start|>"]
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.padding_side = "right"
    fast.model_max_length = 32768
    return fast


# --- model --------------------------------------------------------------------------------
def build_model(spec: TinySpec, tokenizer):
    import torch
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(spec.seed)
    eos_id = tokenizer.convert_tokens_to_ids(EOS)
    pad_id = tokenizer.convert_tokens_to_ids(PAD)
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_hidden_layers,
        num_attention_heads=spec.num_attention_heads,
        num_key_value_heads=spec.num_key_value_heads,
        max_position_embeddings=spec.max_position_embeddings,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=eos_id,
        pad_token_id=pad_id,
        dtype="float32",
    )
    model = Qwen2ForCausalLM(config)
    model.generation_config = GenerationConfig(eos_token_id=[eos_id, pad_id], pad_token_id=pad_id)
    return model


def _pretrain_batches(tokenizer, spec: TinySpec):
    """Endless batches mixing chat-formatted pairs (the shape fine-tuning uses) and raw Go."""
    import torch

    rng = random.Random(spec.seed)
    L = spec.pretrain_seq_len
    docs: list[list[int]] = []
    for p in gosrc.stdlib_pairs(include=None, exclude=gosrc.HELDOUT_PACKAGES, max_pairs=6000):
        msgs = [{"role": "user", "content": p["instruction"]}, {"role": "assistant", "content": p["output"]}]
        ids = tokenizer(tokenizer.apply_chat_template(msgs, tokenize=False), add_special_tokens=False)["input_ids"]
        if len(ids) <= L:  # whole conversations only: every one ends with EOS, so the base learns to stop
            docs.append(ids)
    if not docs:
        raise RuntimeError("no Go pairs short enough to pretrain on")
    raw = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in gosrc.go_corpus(max_bytes=1_000_000)]
    pad = tokenizer.pad_token_id
    while True:
        rows = []
        for _ in range(spec.pretrain_batch):
            if rng.random() < PAIR_SHARE:
                ids = rng.choice(docs)
            else:
                ids = rng.choice(raw)
                start = rng.randrange(max(1, len(ids) - L))
                ids = ids[start : start + L]
            rows.append(ids)
        width = max(len(r) for r in rows)
        input_ids = torch.full((len(rows), width), pad)
        labels = torch.full((len(rows), width), -100)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for k, r in enumerate(rows):
            input_ids[k, : len(r)] = torch.tensor(r)
            labels[k, : len(r)] = torch.tensor(r)
            mask[k, : len(r)] = 1
        yield input_ids, mask, labels


def pretrain(model, tokenizer, spec: TinySpec) -> list[float]:
    """Full-parameter next-token training on Go (cosine LR, AdamW); returns the losses."""
    import torch

    torch.manual_seed(spec.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=spec.pretrain_lr, weight_decay=0.01)
    warm = max(1, spec.pretrain_steps // 20)

    def lr_at(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, spec.pretrain_steps - warm)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    model.train()
    losses = []
    batches = _pretrain_batches(tokenizer, spec)
    t0 = time.monotonic()
    for step in range(spec.pretrain_steps):
        input_ids, mask, labels = next(batches)
        loss = model(input_ids=input_ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
        if (step + 1) % 50 == 0:
            log.info("tiny pretrain step %d/%d loss %.3f (%.0fs)", step + 1, spec.pretrain_steps,
                     sum(losses[-50:]) / 50, time.monotonic() - t0)
    model.eval()
    return losses


def build_tiny(output: str | Path, spec: TinySpec = TinySpec()) -> Path:
    """Build tokenizer + model (+ optional pretraining) into ``output`` (a model directory)."""
    import torch

    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    tokenizer = train_tokenizer(gosrc.go_corpus(), spec.vocab_size)
    model = build_model(spec, tokenizer)
    losses = pretrain(model, tokenizer, spec) if spec.pretrain_steps else []
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    info = {
        "spec": asdict(spec),
        "key": spec.key(),
        "params": sum(p.numel() for p in model.parameters()),
        "go": gosrc.go_version(),
        "pretrain_first_loss": losses[0] if losses else None,
        "pretrain_last_loss": sum(losses[-20:]) / len(losses[-20:]) if losses else None,
        "build_seconds": round(time.monotonic() - t0, 1),
    }
    (out / "golora_tiny.json").write_text(json.dumps(info, indent=2) + "\n")
    log.info("tiny model %s: %d params, built in %.1fs", out, info["params"], info["build_seconds"])
    return out


def ensure_tiny(spec: TinySpec = TinySpec(), root: Path | None = None) -> Path:
    """The cached tiny model for ``spec``, built once (under a file lock) if missing."""
    root = (root or cache_root()) / "tiny"
    root.mkdir(parents=True, exist_ok=True)
    target = root / spec.key()
    if (target / "golora_tiny.json").is_file():
        return target
    with open(root / f".{spec.key()}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (target / "golora_tiny.json").is_file():
            return target
        tmp = Path(tempfile.mkdtemp(prefix=f".{spec.key()}-", dir=root))
        try:
            build_tiny(tmp, spec)
            if target.exists():
                shutil.rmtree(target)
            os.replace(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target
