"""Padding-free micro-batches: a micro-batch's samples laid end to end in one row, no pad tokens.

Go pairs are short (median ~315 tokens) and vary a lot, so even length-bucketed micro-batches
spend GPU time on padding. A packed row holds exactly the samples (and labels) the padded
micro-batch would, so the loss and the gradients are the same; only the pad tokens are gone.

What keeps the samples apart:

- ``position_ids`` restart at 0 for every sample, so RoPE sees each one as it would alone;
- attention never crosses a boundary: ``varlen_attention`` runs each sample's causal attention
  on its own, from the cumulative lengths (``cu_seq_lens_q``) the collator computes on the CPU.
  On CUDA (compute capability >= 8.0, bf16/fp16) that is PyTorch's own variable-length flash
  kernel, ``torch.nn.attention.varlen.varlen_attn`` — no FlashAttention package, no O(T^2) mask;
  elsewhere one ``scaled_dot_product_attention`` call per sample;
- the label of every sample's first token is -100, so the last token of one sample is never
  trained to predict the first of the next (a padded row has no such target either). Prompt
  labels are -100 already (``data.tokenize_pair``): only completions are trained on.

TRL's own ``padding_free`` builds the same row but leaves attention to FlashAttention, which the
image does not have; transformers' sdpa would build a dense block-diagonal T x T mask instead.
A benchmark switch (``GOLORA_PACKING=padding_free``) until the device run says it wins.
"""

from __future__ import annotations

import functools
import logging
from collections import Counter
from dataclasses import dataclass

import torch

from .data import IGNORE_INDEX

log = logging.getLogger(__name__)

PADDING_FREE = "padding_free"
ATTENTION = "golora_varlen"  # the attn_implementation name registered with transformers
# Layer calls of varlen_attention per path, so a benchmark can say which kernel really ran.
CALLS: Counter[str] = Counter()


def packing_requested(value: str | None) -> bool:
    """Whether ``GOLORA_PACKING`` asks for padding-free micro-batches ("", "none": no)."""
    if value in (None, "", "none"):
        return False
    if value == PADDING_FREE:
        return True
    log.warning("GOLORA_PACKING=%s ignored: the only packing is %r", value, PADDING_FREE)
    return False


@dataclass
class PackedCollator:
    """Features (``input_ids``, ``labels``) -> one packed row with per-sample positions and the
    boundaries the attention kernel needs. The row is exactly as long as its samples."""

    def __call__(self, features: list[dict]) -> dict:
        ids: list[int] = []
        labels: list[int] = []
        positions: list[int] = []
        lengths: list[int] = []
        for f in features:
            n = len(f["input_ids"])
            if n == 0:
                continue
            lab = list(f.get("labels", f["input_ids"]))
            lab[0] = IGNORE_INDEX  # nothing before it in its own sample predicts it
            ids += list(f["input_ids"])
            labels += lab
            positions += range(n)
            lengths.append(n)
        cu = torch.zeros(len(lengths) + 1, dtype=torch.int32)
        cu[1:] = torch.cumsum(torch.tensor(lengths, dtype=torch.int32), 0)
        longest = max(lengths)
        return {
            "input_ids": torch.tensor([ids], dtype=torch.long),
            "labels": torch.tensor([labels], dtype=torch.long),
            "position_ids": torch.tensor([positions], dtype=torch.long),
            "cu_seq_lens_q": cu, "cu_seq_lens_k": cu,
            "max_length_q": longest, "max_length_k": longest,
        }


def boundaries_from_positions(position_ids: torch.Tensor) -> torch.Tensor | None:
    """Cumulative lengths from one row of restarting positions (None: a single sequence). For
    callers that pass positions but not ``cu_seq_lens_q`` (TRL's padding-free collator does)."""
    pos = position_ids[0]
    starts = torch.nonzero(pos == 0).flatten()
    if starts.numel() <= 1 or int(starts[0]) != 0:  # one sequence, or a continuation (a cache): not packed
        return None
    end = torch.tensor([pos.numel()], device=pos.device)
    return torch.cat([starts, end]).to(torch.int32)


@functools.cache
def _torch_varlen():
    try:
        from torch.nn.attention.varlen import varlen_attn

        return varlen_attn
    except ImportError:
        return None


def _cuda_kernel_usable(query: torch.Tensor) -> bool:
    return (query.is_cuda and query.dtype in (torch.float16, torch.bfloat16) and _torch_varlen() is not None
            and torch.cuda.get_device_capability(query.device)[0] >= 8)


def varlen_attention(module, query, key, value, attention_mask, dropout: float = 0.0, scaling=None,
                     sliding_window=None, **kwargs):
    """An attention function for transformers' AttentionInterface: causal attention inside each
    packed sample. query/key/value are (1, heads, T, dim); returns (1, T, heads, dim). Anything
    that is not a packed row (a padding mask, a cache, a batch of rows) goes to plain sdpa."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    cu = kwargs.pop("cu_seq_lens_q", None)
    kwargs.pop("cu_seq_lens_k", None)
    longest = kwargs.pop("max_length_q", None)  # a Python int from the collator: no device sync per layer
    kwargs.pop("max_length_k", None)
    packed_row = attention_mask is None and query.shape[0] == 1 and query.shape[2] == key.shape[2]
    if packed_row and cu is None and kwargs.get("position_ids") is not None:
        cu = boundaries_from_positions(kwargs["position_ids"])
    if not packed_row or cu is None:
        CALLS["sdpa"] += 1
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **kwargs)
    if sliding_window is not None:
        raise NotImplementedError("padding-free packing does not implement sliding-window attention")
    cu = cu.to(query.device, torch.int32)
    groups = query.shape[1] // key.shape[1]
    if _cuda_kernel_usable(query) and (dropout == 0.0 or not module.training):
        if longest is None:
            longest = int((cu[1:] - cu[:-1]).max())
        # (1, heads, T, dim) -> (T, heads, dim): after RoPE these are views of contiguous memory already
        q, k, v = (t[0].transpose(0, 1).contiguous() for t in (query, key, value))
        out = _torch_varlen()(q, k, v, cu, cu, longest, longest, scale=scaling, window_size=(-1, 0),
                              enable_gqa=groups > 1)
        CALLS["varlen"] += 1
        return out.unsqueeze(0), None
    CALLS["sdpa_per_sample"] += 1
    bounds = cu.tolist()
    parts = []
    for start, end in zip(bounds, bounds[1:], strict=False):
        parts.append(torch.nn.functional.scaled_dot_product_attention(
            query[:, :, start:end], key[:, :, start:end], value[:, :, start:end], is_causal=True,
            dropout_p=dropout if module.training else 0.0, scale=scaling, enable_gqa=groups > 1))
    return torch.cat(parts, dim=2).transpose(1, 2).contiguous(), None


def packed_mask(*, q_length: int, kv_length: int, attention_mask=None, **kwargs):
    """The mask function registered next to ``varlen_attention``: none for an unpadded row (the
    attention function finds the boundaries itself), sdpa's mask for everything else (padded
    eval batches, generation), so the same model evaluates and generates correctly."""
    from transformers.masking_utils import sdpa_mask

    if attention_mask is None and q_length == kv_length and not kwargs.get("q_offset") \
            and not kwargs.get("kv_offset"):
        return None
    return sdpa_mask(q_length=q_length, kv_length=kv_length, attention_mask=attention_mask, **kwargs)


@functools.cache
def register() -> str:
    """Registers ``golora_varlen`` with transformers (attention and mask function); once."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    AttentionInterface.register(ATTENTION, varlen_attention)
    AttentionMaskInterface.register(ATTENTION, packed_mask)
    return ATTENTION


def kernel_for(model) -> str:
    """Which kernel ``varlen_attention`` runs for this model's packed rows (bf16/fp16 activations)."""
    param = next(model.parameters())
    if param.is_cuda and _torch_varlen() is not None and torch.cuda.get_device_capability(param.device)[0] >= 8:
        return "torch varlen flash kernel"
    return "sdpa per sample"


def use_varlen_attention(model) -> str:
    """Switches ``model`` (before PEFT wraps it) to ``golora_varlen``; returns the kernel it runs."""
    model.set_attn_implementation(register())
    kernel = kernel_for(model)
    log.info("padding-free packed micro-batches: attention %s (%s)", ATTENTION, kernel)
    return kernel


def sample_bounds(row: dict) -> list[int]:
    """Where a packed row's samples start and end, from where its ``position_ids`` restart."""
    cu = boundaries_from_positions(row["position_ids"]) if "position_ids" in row else None
    return cu.tolist() if cu is not None else [0, row["input_ids"].shape[1]]


def unpack(row: dict, pad_id: int) -> dict:
    """A packed row back into the right-padded micro-batch of the same samples (for checks)."""
    cu = sample_bounds(row)
    ids = [row["input_ids"][0, a:b] for a, b in zip(cu, cu[1:], strict=False)]
    labels = [row["labels"][0, a:b] for a, b in zip(cu, cu[1:], strict=False)]
    pad = torch.nn.utils.rnn.pad_sequence
    mask = [torch.ones_like(x) for x in ids]
    return {"input_ids": pad(ids, batch_first=True, padding_value=pad_id),
            "labels": pad(labels, batch_first=True, padding_value=IGNORE_INDEX),
            "attention_mask": pad(mask, batch_first=True, padding_value=0)}


__all__ = ["ATTENTION", "CALLS", "PADDING_FREE", "PackedCollator", "boundaries_from_positions",
           "kernel_for", "packed_mask", "packing_requested", "register", "sample_bounds", "unpack",
           "use_varlen_attention", "varlen_attention"]
