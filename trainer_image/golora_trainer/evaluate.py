"""Eval loss on exactly the same completion tokens for base and adapter, greedy generations, and
the quality gate that compares both models' generations on the same held-out prompts.

The base model's loss is the anchor the blog lacked: its 7.76 would have been compared with
a base eval loss near 1 and flagged. Loss is the token-weighted mean NLL over completion
tokens (prompt and padding excluded), computed through TRL's fused LM head when the model has
one (no full logits), else from the logits in float32.
"""

from __future__ import annotations

import contextlib
import logging
import math
from dataclasses import dataclass

from golora.api.loratraining import QualityGate
from golora.api.loratraining_status import QualityGateResult

from . import gate as g
from . import gocheck
from .data import IGNORE_INDEX, Example, Formatter, Pair
from .gate import Generation
from .gosrc import goroot

log = logging.getLogger(__name__)


@dataclass
class EvalResult:
    loss: float
    token_accuracy: float
    tokens: int
    samples: int


def autocast_ctx(device_type: str, precision: str):
    import torch

    if device_type == "cuda" and precision in ("bf16", "fp16"):
        return torch.autocast("cuda", dtype=torch.bfloat16 if precision == "bf16" else torch.float16)
    return contextlib.nullcontext()


def _batches(examples: list[Example], batch_size: int):
    order = sorted(range(len(examples)), key=lambda i: len(examples[i].input_ids))
    for start in range(0, len(order), batch_size):
        yield [examples[i] for i in order[start : start + batch_size]]


def _pad(batch: list[Example], pad_id: int, device):
    import torch

    width = max(len(e.input_ids) for e in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), width), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for k, e in enumerate(batch):
        n = len(e.input_ids)
        ids[k, :n] = torch.tensor(e.input_ids)
        labels[k, :n] = torch.tensor(e.labels)
        mask[k, :n] = 1
    return ids.to(device), mask.to(device), labels.to(device)


def eval_loss(model, examples: list[Example], *, batch_size: int, pad_id: int, precision: str) -> EvalResult:
    """Mean NLL and top-1 accuracy over the completion tokens of ``examples``."""
    import torch

    device = next(p for p in model.parameters()).device
    was_training = model.training
    model.eval()
    nll = 0.0
    correct = 0
    count = 0
    fused = True
    with torch.no_grad(), autocast_ctx(device.type, precision):
        for batch in _batches(examples, max(1, batch_size)):
            ids, mask, labels = _pad(batch, pad_id, device)
            out = None
            if fused:
                try:
                    out = model(input_ids=ids, attention_mask=mask, labels=labels, fused_lm_head=True)
                except TypeError:
                    fused = False
            if out is not None and getattr(out, "log_probs", None) is not None:
                valid = out.label_mask
                nll += float(-(out.log_probs.float() * valid).sum())
                correct += int((out.is_top1.bool() & valid).sum()) if out.is_top1 is not None else 0
                count += int(valid.sum())
                continue
            logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
            target = labels[:, 1:]
            valid = target != IGNORE_INDEX
            lp = torch.log_softmax(logits, dim=-1)
            tok_lp = lp.gather(-1, target.clamp(min=0).unsqueeze(-1)).squeeze(-1)
            nll += float(-(tok_lp * valid).sum())
            correct += int(((logits.argmax(-1) == target) & valid).sum())
            count += int(valid.sum())
    if was_training:
        model.train()
    loss = nll / count if count else math.nan
    return EvalResult(loss=loss, token_accuracy=correct / count if count else 0.0, tokens=count, samples=len(examples))


def generate(
    model,
    tokenizer,
    prompts: list[list[int]],
    *,
    max_new_tokens: int,
    batch_size: int,
    eos_ids: list[int],
    pad_id: int,
    precision: str,
) -> list[Generation]:
    """Greedy generations for tokenized prompts (left-padded batches)."""
    import torch

    device = next(p for p in model.parameters()).device
    was_training = model.training
    model.eval()
    out: list[Generation | None] = [None] * len(prompts)
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    with torch.no_grad(), autocast_ctx(device.type, precision):
        for start in range(0, len(order), max(1, batch_size)):
            idx = order[start : start + batch_size]
            width = max(len(prompts[i]) for i in idx)
            ids = torch.full((len(idx), width), pad_id, dtype=torch.long)
            mask = torch.zeros((len(idx), width), dtype=torch.long)
            for k, i in enumerate(idx):
                p = prompts[i]
                ids[k, width - len(p) :] = torch.tensor(p)
                mask[k, width - len(p) :] = 1
            gen = model.generate(
                input_ids=ids.to(device),
                attention_mask=mask.to(device),
                max_new_tokens=max_new_tokens,
                do_sample=False,
                eos_token_id=eos_ids,
                pad_token_id=pad_id,
                use_cache=True,
            )
            for k, i in enumerate(idx):
                new = gen[k, width:].tolist()
                stop = next((j for j, t in enumerate(new) if t in eos_ids), None)
                ended = stop is not None
                new = new[:stop] if ended else new
                new = [t for t in new if t != pad_id]
                out[i] = Generation(tokenizer.decode(new, skip_special_tokens=True), new, ended)
    if was_training:
        model.train()
    return [g for g in out if g is not None]


def base_model_off(model):
    """Context in which ``model`` is its base (PEFT's ``disable_adapter``), or None if it has none."""
    disable = getattr(model, "disable_adapter", None)
    return disable() if callable(disable) else None


def run_gate(
    model,
    tokenizer,
    prompts: list[list[int]],
    prompt_texts: list[str],
    metas: list[dict | None],
    *,
    gate: QualityGate,
    eos_ids: list[int],
    pad_id: int,
    precision: str,
    batch_size: int,
    eval_loss: float | None,
    base_eval_loss: float | None,
    extractor_binary: str,
    goroot: str | None = None,
) -> tuple[QualityGateResult, list[Generation]]:
    """The quality gate on a trained PEFT model: greedy generations for ``prompts`` with the
    adapter and (``gate.compareWithBase``) with it disabled — the base, same weights, no second
    load — the same token budget and template; both through the Go parse / type check in one
    ``golora-extract`` run; the verdict. Returns the result and the adapter's generations."""
    opts = dict(max_new_tokens=gate.max_new_tokens, batch_size=batch_size, eos_ids=eos_ids, pad_id=pad_id,
                precision=precision)
    result = QualityGateResult(prompts=len(prompts), eval_loss=eval_loss, base_eval_loss=base_eval_loss)
    adapter = generate(model, tokenizer, prompts, **opts)
    base: list[Generation] | None = None
    if gate.compare_with_base:
        ctx = base_model_off(model)
        if ctx is None:
            result.notes.append("base generations skipped: the model has no adapter to disable")
        else:
            with ctx:
                base = generate(model, tokenizer, prompts, **opts)
    groups = [[x.text for x in adapter]] + ([[x.text for x in base]] if base is not None else [])
    checks, notes = gocheck.go_checks(groups, extractor_binary, [metas] * len(groups), goroot=goroot)
    result.notes.extend(notes)
    a_check, b_check = checks[0], (checks[1] if base is not None else None)
    result.adapter = g.generation_metrics(adapter)
    gocheck.apply_checks(result.adapter, a_check)
    if base is not None:
        result.base = g.generation_metrics(base)
        gocheck.apply_checks(result.base, b_check)
    if a_check.parse_rate is not None and result.adapter.type_checkable == 0:
        reasons = sorted({d for d in a_check.type_details if d})
        result.notes.append("no generation could be type-checked (only parsed): " + "; ".join(reasons[:3]))
    result.samples = g.side_by_side(prompt_texts, adapter, base, a_check, b_check)
    g.decide(result, gate)
    return result, adapter


def quality_gate(model, tokenizer, fmt: Formatter, eval_pairs: list[Pair], *, gate: QualityGate, budget: int,
                 metas_file, adapter_loss: float, base_loss: float, precision: str, cuda: bool,
                 extractor_binary: str) -> tuple[QualityGateResult, float | None]:
    """``run_gate`` on the first ``gate.prompts`` held-out prompts that fit ``budget`` tokens, with
    each pair's extractor ``meta`` from ``metas_file`` (what the type check needs). Returns the
    result and the adapter's repetition (longest repeated-token run / generated tokens)."""
    chosen = []
    for pair in eval_pairs:
        ids = fmt.prompt_ids(pair.instruction)
        if len(ids) <= budget:
            chosen.append((pair, ids))
        if len(chosen) >= gate.prompts:
            break
    metas = gocheck.pair_metas(metas_file)
    eos_ids = sorted({fmt.eos_token_id, *_eos_ids(getattr(model, "generation_config", None))})
    root = goroot()
    result, gens = run_gate(
        model, tokenizer, [ids for _, ids in chosen], [p.instruction for p, _ in chosen],
        [metas.get((p.instruction, p.output)) for p, _ in chosen], gate=gate, eos_ids=eos_ids,
        pad_id=tokenizer.pad_token_id, precision=precision, batch_size=16 if cuda else 8,
        eval_loss=adapter_loss, base_eval_loss=base_loss, extractor_binary=extractor_binary,
        goroot=str(root) if root else None)
    total_tokens = sum(len(x.token_ids) for x in gens)
    run = result.adapter.longest_repeat_run if result.adapter else None
    log.info("quality gate %s (%s): %s", result.reason, result.comparison, result.message)
    return result, (round(run / total_tokens, 4) if total_tokens and run is not None else None)


def _eos_ids(generation_config) -> list[int]:
    if generation_config is None or generation_config.eos_token_id is None:
        return []
    eos = generation_config.eos_token_id
    return list(eos) if isinstance(eos, list | tuple) else [eos]
