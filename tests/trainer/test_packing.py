"""Padding-free packing (golora_trainer/packing.py) on the tiny Qwen2, in fp32 on CPU: a packed row
gives the loss and gradients of the padded micro-batch holding the same samples, trains only on
each sample's completion, and no token sees a token of another sample. Every test also checks a
broken variant (no boundaries, first label unmasked) moves the numbers, so it can fail."""

from __future__ import annotations

import random

import pytest
import torch

from golora_trainer.data import IGNORE_INDEX
from golora_trainer.packing import (
    ATTENTION,
    CALLS,
    PADDING_FREE,
    PackedCollator,
    boundaries_from_positions,
    packing_requested,
    unpack,
    use_varlen_attention,
)

pytestmark = pytest.mark.train

# (length, prompt length): prompts as long as the chat-formatted doc comments, uneven lengths
SHAPES = [(37, 12), (80, 20), (15, 5), (61, 30), (24, 24 - 8)]
LOSS_TOL = 1e-5
GRAD_TOL = 1e-5


def _features(seed: int = 0, shapes=SHAPES) -> list[dict]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for n, prompt in shapes:
        ids = torch.randint(5, 2900, (n,), generator=g).tolist()
        out.append({"input_ids": ids, "labels": [IGNORE_INDEX] * prompt + ids[prompt:]})
    return out


def _padded(features, pad_id: int) -> dict:
    """The padded micro-batch exactly as the padded path builds it (TRL's collator)."""
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    return DataCollatorForLanguageModeling(pad_token_id=pad_id)(features)


def _model(path, attention: str = "sdpa"):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, attn_implementation="sdpa")
    if attention == ATTENTION:
        use_varlen_attention(model)
    return model.train()


def _loss_and_grads(model, batch) -> tuple[float, dict[str, torch.Tensor]]:
    model.zero_grad(set_to_none=True)
    loss = model(**batch).loss
    loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
    return loss.item(), grads


def _max_grad_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max((a[k] - b[k]).abs().max().item() for k in a)


@pytest.fixture(scope="module")
def pad_id(tiny_random) -> int:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_random).pad_token_id


def test_collator_restarts_positions_and_marks_boundaries():
    feats = _features()
    batch = PackedCollator()(feats)
    total = sum(n for n, _ in SHAPES)
    assert batch["input_ids"].shape == batch["labels"].shape == batch["position_ids"].shape == (1, total)
    assert batch["input_ids"][0].tolist() == [t for f in feats for t in f["input_ids"]]  # no pad token at all
    assert batch["position_ids"][0].tolist() == [i for n, _ in SHAPES for i in range(n)]
    cu = [0]
    for n, _ in SHAPES:
        cu.append(cu[-1] + n)
    assert batch["cu_seq_lens_q"].tolist() == cu and batch["max_length_q"] == max(n for n, _ in SHAPES)
    assert boundaries_from_positions(batch["position_ids"]).tolist() == cu
    assert boundaries_from_positions(torch.arange(9)[None]) is None
    assert boundaries_from_positions(torch.tensor([[5, 6, 0, 1]])) is None  # continues a cached prefix
    back = unpack(batch, pad_id=0)
    assert back["attention_mask"].sum(dim=1).tolist() == [n for n, _ in SHAPES]
    assert back["input_ids"][back["attention_mask"].bool()].tolist() == batch["input_ids"][0].tolist()


def test_switch_values(caplog):
    assert packing_requested(PADDING_FREE)
    assert not packing_requested(None) and not packing_requested("") and not packing_requested("none")
    assert not packing_requested("bfd") and "ignored" in caplog.text


def test_packed_and_padded_give_the_same_loss_and_gradients(tiny_random, pad_id):
    feats = _features()
    loss_pad, grads_pad = _loss_and_grads(_model(tiny_random), _padded(feats, pad_id))
    varlen = _model(tiny_random, ATTENTION)
    loss_packed, grads_packed = _loss_and_grads(varlen, PackedCollator()(feats))
    dl, dg = abs(loss_packed - loss_pad), _max_grad_diff(grads_packed, grads_pad)
    scale = max(g.abs().max().item() for g in grads_pad.values())
    print(f"padded loss {loss_pad:.6f}, packed {loss_packed:.6f}: |dloss| {dl:.2e}, max |dgrad| {dg:.2e} "
          f"(largest grad {scale:.2e}, {len(grads_pad)} tensors)")
    assert dl < LOSS_TOL and dg < GRAD_TOL and scale > 1e-3

    # TRL's padding-free row (positions, no cu_seq_lens) through the same attention: same numbers
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    trl_row = DataCollatorForLanguageModeling(pad_token_id=pad_id, padding_free=True)(feats)
    trl_row = {k: trl_row[k] for k in ("input_ids", "labels", "position_ids")}
    loss_trl, grads_trl = _loss_and_grads(varlen, trl_row)
    assert abs(loss_trl - loss_pad) < LOSS_TOL and _max_grad_diff(grads_trl, grads_pad) < GRAD_TOL

    # controls: one row without boundaries (positions 0..T-1, plain causal attention) is another loss
    row = PackedCollator()(feats)
    naive = {"input_ids": row["input_ids"], "labels": row["labels"]}
    loss_naive, grads_naive = _loss_and_grads(varlen, naive)
    assert abs(loss_naive - loss_pad) > 100 * LOSS_TOL and _max_grad_diff(grads_naive, grads_pad) > 100 * GRAD_TOL


def test_only_each_samples_completion_is_trained_on(tiny_random):
    shapes = [(37, 12), (20, 0), (80, 20), (15, 5)]  # the 2nd has no prompt: its first token is a label
    feats = _features(1, shapes)
    batch = PackedCollator()(feats)
    # the (position -> next-token target) pairs the loss sees, after the model's shift by one
    targets = batch["labels"][0, 1:].tolist()
    seen = [(i, t) for i, t in enumerate(targets) if t != IGNORE_INDEX]
    want, start = [], 0
    for f, (n, prompt) in zip(feats, shapes, strict=True):
        # a position predicts a completion token of its own sample: never a prompt token, never the
        # next sample's first token
        want += [(start + j - 1, f["input_ids"][j]) for j in range(max(prompt, 1), n)]
        start += n
    assert seen == want

    # the packed loss is the token-weighted mean of each sample's loss computed alone
    model = _model(tiny_random, ATTENTION).eval()
    with torch.no_grad():
        packed = model(**batch).loss.item()
        total = count = 0.0
        for f, (n, prompt) in zip(feats, shapes, strict=True):
            alone = model(input_ids=torch.tensor([f["input_ids"]]), labels=torch.tensor([f["labels"]])).loss.item()
            total += alone * (n - max(prompt, 1))
            count += n - max(prompt, 1)
        # controls: the boundary label left in (the 1st sample's last token trained to predict the
        # 2nd sample's first), and no completion-only mask (prompts trained on)
        leaky = model(**dict(batch, labels=torch.tensor([[t for f in feats for t in f["labels"]]]))).loss.item()
        prompts = model(**dict(batch, labels=torch.where(batch["position_ids"] == 0, IGNORE_INDEX,
                                                         batch["input_ids"]))).loss.item()
    print(f"packed {packed:.7f}, mean of samples alone {total / count:.7f}; boundary label kept {leaky:.6f}, "
          f"prompts trained on {prompts:.6f}")
    assert packed == pytest.approx(total / count, abs=LOSS_TOL)
    assert abs(leaky - packed) > 10 * LOSS_TOL and abs(prompts - packed) > 10 * LOSS_TOL


def test_no_token_attends_across_a_boundary(tiny_random):
    feats = _features(2)
    model = _model(tiny_random, ATTENTION).eval()
    batch = PackedCollator()(feats)
    changed = [dict(f) for f in feats]
    rng = random.Random(3)
    changed[1] = {**feats[1], "input_ids": [rng.randrange(5, 2900) for _ in feats[1]["input_ids"]]}
    other = PackedCollator()(changed)
    cu = batch["cu_seq_lens_q"].tolist()
    with torch.no_grad():
        a, b = model(**batch).logits[0], model(**other).logits[0]
        na = model(input_ids=batch["input_ids"]).logits[0]  # the same rows, no boundaries
        nb = model(input_ids=other["input_ids"]).logits[0]
    inside = (a[cu[1]:cu[2]] - b[cu[1]:cu[2]]).abs().max().item()
    before = (a[:cu[1]] - b[:cu[1]]).abs().max().item()
    after = (a[cu[2]:] - b[cu[2]:]).abs().max().item()
    leak = (na[cu[2]:] - nb[cu[2]:]).abs().max().item()
    print(f"sample 2 changed: its logits moved {inside:.3e}; samples 1, 3-5 moved {before:.1e}, {after:.1e}; "
          f"without boundaries samples 3-5 moved {leak:.3e}")
    assert inside > 1e-2 and leak > 1e-2  # the change is visible where attention reaches
    assert before == 0.0 and after < 1e-6


def test_padded_batches_and_generation_are_unchanged_by_the_switch(tiny_random, pad_id):
    """Eval loss and the gate's generations run padded batches through the same model."""
    feats = _features(4, shapes=[(30, 10), (12, 4), (21, 7)])
    batch = _padded(feats, pad_id)
    sdpa, varlen = _model(tiny_random).eval(), _model(tiny_random, ATTENTION).eval()
    prompts = torch.tensor([[pad_id] * 6 + feats[1]["input_ids"][:6], feats[0]["input_ids"][:12]])
    mask = (torch.arange(12)[None] >= torch.tensor([[6], [0]])).long()
    with torch.no_grad():
        assert varlen(**batch).loss.item() == pytest.approx(sdpa(**batch).loss.item(), abs=LOSS_TOL)
        kw = dict(attention_mask=mask, max_new_tokens=8, do_sample=False, pad_token_id=pad_id)
        assert varlen.generate(prompts, **kw).tolist() == sdpa.generate(prompts, **kw).tolist()


def test_the_trainer_packs_its_bucketed_micro_batches(tmp_path, tiny_random, monkeypatch):
    """Through TrainingRun.build_trainer (PEFT LoRA, TRL's loss): each micro-batch becomes one row of
    the same samples, its loss and LoRA gradients are the padded batch's, and training runs."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from golora.api.worker import TrainerConfig
    from golora_trainer.data import Formatter, Pair, to_dataset, tokenize_pairs
    from golora_trainer.precision import resolve_precision
    from golora_trainer.report import StatusReporter
    from golora_trainer.train import TrainingRun

    from .helpers import trainer_config

    tok = AutoTokenizer.from_pretrained(tiny_random)
    rng = random.Random(5)
    body = [f"\tx += {i}" for i in range(40)]
    pairs = [Pair(f"F{i} adds.", "func F() int {\n\tx := 0\n" + "\n".join(body[:rng.randrange(1, 40)])
                  + "\n\treturn x\n}") for i in range(16)]
    examples, _ = tokenize_pairs(Formatter(tok, 512), pairs)
    doc = trainer_config(tmp_path, train="d.jsonl", model_path=str(tiny_random),
                         spec={"training": {"maxSteps": 2, "checkpointSteps": 100, "seed": 11},
                               "lora": {"dropout": 0.0}})  # no random dropout mask between the two runs

    def build(packed: bool):
        if packed:
            monkeypatch.setenv("GOLORA_PACKING", PADDING_FREE)
        else:
            monkeypatch.delenv("GOLORA_PACKING", raising=False)
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_pretrained(tiny_random, dtype=torch.float32)
        run = TrainingRun(TrainerConfig.model_validate({**doc, "storeRoot": str(tmp_path / str(packed))}),
                          StatusReporter(None))
        trainer = run.build_trainer(model, tok, to_dataset(examples), plan=resolve_precision("fp32", cuda=False,
                                    capability=None), micro=4, accumulation=1, ckpt=False, cuda=False,
                                    loss_impl="fused", callbacks=[])
        torch.manual_seed(1)  # LoRA B starts at zero: give it values so that A's gradients are not all 0
        for name, p in trainer.model.named_parameters():
            if "lora_B" in name:
                p.data.normal_(0, 0.02)
        return run, trainer

    run_pad, padded = build(False)
    run_packed, packed = build(True)
    assert packed.model.config._attn_implementation == ATTENTION
    assert run_packed.fields["padding_efficiency"] == 1.0 and run_pad.fields["padding_efficiency"] < 1.0
    rows, batches = list(packed.get_train_dataloader()), list(padded.get_train_dataloader())
    assert len(rows) == len(batches) == 4
    for row, batch in zip(rows, batches, strict=True):
        assert row["input_ids"].shape[0] == 1 and "attention_mask" not in row
        real = batch["input_ids"][batch["attention_mask"].bool()]
        assert row["input_ids"][0].tolist() == real.tolist()  # the same samples, in order, no pad
    diffs = []
    CALLS.clear()
    for trainer, batch in ((padded, batches[0]), (packed, rows[0])):
        trainer.model.train()
        trainer.model.zero_grad(set_to_none=True)
        loss = trainer.compute_loss(trainer.model, dict(batch))
        loss.backward()
        diffs.append((loss.item(), {n: p.grad.clone() for n, p in trainer.model.named_parameters()
                                    if p.grad is not None}))
    (l_pad, g_pad), (l_packed, g_packed) = diffs
    assert CALLS == {"sdpa_per_sample": 4}  # the packed step ran golora_varlen in each of the 4 layers
    dg = _max_grad_diff(g_packed, g_pad)
    print(f"SFTTrainer loss padded {l_pad:.6f}, packed {l_packed:.6f}; max |dgrad| {dg:.2e} over "
          f"{len(g_pad)} LoRA tensors")
    # A and B of q/k/v/o in each of the 4 layers, none all zero
    assert len(g_pad) == 4 * 4 * 2 and all(g.abs().max() > 0 for g in g_pad.values())
    assert abs(l_packed - l_pad) < LOSS_TOL and dg < GRAD_TOL
    state = packed.train()
    assert packed.state.global_step == 2 and torch.isfinite(torch.tensor(state.training_loss))


def test_the_device_benchmark_checks_packed_against_padded(tiny_random, pad_id, monkeypatch):
    """bench/train_gpu.py's packed_check (what the device run prints next to the packed run's tok/s)
    reports equal losses for a correct packed row, and a clear difference for a broken one."""
    import importlib.util
    from types import SimpleNamespace

    from .conftest import REPO

    spec = importlib.util.spec_from_file_location("train_gpu_bench", REPO / "bench" / "train_gpu.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    model, args = _model(tiny_random, ATTENTION), SimpleNamespace(bf16=False, fp16=False)
    row = PackedCollator()(_features(5))
    check = bench.packed_check(model, args, row, pad_id)
    assert check["samples"] == bench.PACKED_CHECK_SAMPLES and check["attention"] == ATTENTION
    assert check["kernel"] == "sdpa per sample" and check["abs_diff"] < LOSS_TOL and model.training

    class NoBoundaries(PackedCollator):  # a broken packing: attention runs over the whole row
        def __call__(self, features):
            row = super().__call__(features)
            whole = torch.tensor([0, row["input_ids"].shape[1]], dtype=torch.int32)
            return {**row, "cu_seq_lens_q": whole, "cu_seq_lens_k": whole}

    monkeypatch.setattr("golora_trainer.packing.PackedCollator", NoBoundaries)
    assert bench.packed_check(model, args, row, pad_id)["abs_diff"] > 10 * LOSS_TOL
