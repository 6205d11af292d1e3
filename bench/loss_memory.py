#!/usr/bin/env python3
"""Loss-side memory: TRL's fused LM head (golora's loss) against a plain cross-entropy, measured.

The blog's T4 run ran out of memory at batch 4: with Qwen2.5's 152,064-token vocabulary a plain
loss materialises the logits, their fp32 log-softmax and their gradient — megabytes per token.
golora trains through TRL 1.x's fused LM head (``add_fused_lm_head``), which projects and
scores tiles of tokens x vocabulary and never holds the whole logits. (Liger's fused linear
cross-entropy, the other option, is refused by TRL 1.16's SFTTrainer next to its own fused head.)

Each variant runs in its own process: a one-layer Qwen2 with the real vocabulary (152,064)
and a small hidden size (the logits' size depends on tokens x vocabulary only), one sequence
of ``--tokens`` tokens with the first quarter masked as prompt, forward + backward. On a GPU:
bf16 weights under bf16 autocast, peak allocated CUDA memory above the level before the
forward. On CPU: fp32, the process's resident set sampled every millisecond above the level
just before the forward (glibc is told to return large blocks at once:
``MALLOC_MMAP_THRESHOLD_``); there TRL folds each tile with torch ops instead of its Triton
kernel, so the fused head holds several tile-sized temporaries. Printed against golora's
memory model (``golora_trainer.memory.logits_bytes``).

    python bench/loss_memory.py --out bench/results/loss_memory
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "operator"), str(REPO / "trainer_image")]

MIB = 1024**2
VOCAB = 152_064  # Qwen2.5
HIDDEN = 512
VARIANTS = ("plain", "fused")


def _rss() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def worker(variant: str, tokens: int) -> dict:
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    cfg = Qwen2Config(hidden_size=HIDDEN, intermediate_size=2 * HIDDEN, num_hidden_layers=1, num_attention_heads=8,
                      num_key_value_heads=2, vocab_size=VOCAB, max_position_embeddings=max(4096, tokens),
                      tie_word_embeddings=False, attn_implementation="sdpa")
    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    model = Qwen2ForCausalLM(cfg).to(device=device, dtype=torch.bfloat16 if cuda else torch.float32)
    model.model.embed_tokens.weight.requires_grad_(False)
    model.lm_head.weight.requires_grad_(False)  # frozen, as under LoRA: only activations get gradients
    if variant == "fused":
        from trl.trainer.utils import add_fused_lm_head

        add_fused_lm_head(model, outputs=("log_probs", "entropy", "is_top1"))  # what SFTTrainer asks for
    ids = torch.randint(0, VOCAB, (1, tokens), device=device)
    labels = ids.clone()
    labels[:, : tokens // 4] = -100  # the prompt: completion-only loss

    def step():
        with torch.autocast(device, dtype=torch.bfloat16, enabled=cuda):
            if variant == "fused":
                out = model(input_ids=ids, labels=labels, fused_lm_head=True)
                loss = -out.log_probs.sum() / (labels[:, 1:] != -100).sum()
            else:
                loss = model(input_ids=ids, labels=labels).loss
        loss.backward()
        return float(loss)

    step()  # warm-up: kernels, allocator
    model.zero_grad(set_to_none=True)
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        t0 = time.perf_counter()
        loss = step()
        torch.cuda.synchronize()
        return {"variant": variant, "tokens": tokens, "loss": loss, "device": torch.cuda.get_device_name(0),
                "seconds": round(time.perf_counter() - t0, 3),
                "peak_above_base_mib": round((torch.cuda.max_memory_allocated() - base) / MIB, 1)}
    base = _rss()
    peak = [base]
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], _rss())
            time.sleep(0.001)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    t0 = time.perf_counter()
    loss = step()
    seconds = time.perf_counter() - t0
    done.set()
    t.join()
    return {"variant": variant, "tokens": tokens, "loss": loss, "device": "cpu", "seconds": round(seconds, 2),
            "peak_above_base_mib": round((peak[0] - base) / MIB, 1)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="writes <out>.json and <out>.txt")
    ap.add_argument("--tokens", default="1024,2048", help="sequence lengths, comma-separated")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        variant, tokens = args.worker.split(":")
        print(json.dumps(worker(variant, int(tokens))))
        return 0

    from golora_trainer.memory import LOSS_FUSED, LOSS_PLAIN, ModelShape, logits_bytes

    shape = ModelShape(layers=1, hidden=HIDDEN, intermediate=2 * HIDDEN, vocab=VOCAB, heads=8, kv_heads=2,
                       head_dim=HIDDEN // 8)
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072", "OMP_NUM_THREADS": str(os.cpu_count() or 1)}
    rows = []
    for tokens in (int(t) for t in args.tokens.split(",")):
        for variant in VARIANTS:
            proc = subprocess.run([sys.executable, __file__, "--out", args.out, "--worker", f"{variant}:{tokens}"],
                                  capture_output=True, text=True, env=env, check=True)
            row = json.loads(proc.stdout.strip().splitlines()[-1])
            est = logits_bytes(shape, tokens, loss=LOSS_PLAIN if variant == "plain" else LOSS_FUSED)
            row["model_estimate_mib"] = round(est / MIB, 1)
            rows.append(row)
    where = "bf16 on " + rows[0]["device"] if rows[0]["device"] != "cpu" else "fp32 on CPU (torch-op tile folds)"
    lines = [f"loss-side memory, forward + backward, {where}; vocabulary {VOCAB:,}, hidden {HIDDEN}, "
             "one sequence, 3/4 of it completion", "",
             f"{'tokens':>6} {'loss':<6} {'peak MiB':>9} {'model MiB':>10} {'seconds':>8} {'loss value':>11}"]
    for r in rows:
        lines.append(f"{r['tokens']:>6} {r['variant']:<6} {r['peak_above_base_mib']:>9} "
                     f"{r['model_estimate_mib']:>10} {r['seconds']:>8} {r['loss']:>11.4f}")
    lines.append("")
    for tokens in sorted({r["tokens"] for r in rows}):
        plain, fused = (next(r for r in rows if r["tokens"] == tokens and r["variant"] == v) for v in VARIANTS)
        lines.append(f"{tokens} tokens: plain / fused peak {plain['peak_above_base_mib'] / max(fused['peak_above_base_mib'], 0.1):.1f}x; "
                     f"plain {plain['peak_above_base_mib'] * MIB / tokens / 1e6:.2f} MB/token "
                     f"({plain['peak_above_base_mib'] * MIB / tokens / VOCAB:.1f} B per token per vocabulary entry); "
                     f"same loss: {abs(plain['loss'] - fused['loss']) < 2e-2}")
    text = "\n".join(lines)
    print(text)
    Path(args.out + ".json").write_text(json.dumps(rows, indent=2) + "\n")
    Path(args.out + ".txt").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
