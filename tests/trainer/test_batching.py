"""Length-bucketed micro-batches: same samples, same batch sizes, far less padding."""

from __future__ import annotations

import math
import random

import pytest
import torch
from torch.utils.data import DataLoader

from golora_trainer.batching import LengthBucketSampler, bucketed_batches, chunk, padding_efficiency


def _go_like_lengths(n: int, seed: int = 7) -> list[int]:
    """Chat-formatted Go pairs are long-tailed: median ~300 tokens, a few near 1,700."""
    rng = random.Random(seed)
    return [int(min(1748, max(64, rng.lognormvariate(math.log(307), 0.6)))) for _ in range(n)]


@pytest.mark.parametrize("n, micro", [(288, 16), (291, 16), (10, 4), (3, 8), (40, 1)])
def test_every_sample_once_and_only_the_last_batch_short(n, micro):
    lengths = _go_like_lengths(n)
    batches = bucketed_batches(lengths, micro, seed=42)
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(n))
    assert all(len(b) == micro for b in batches[:-1])
    assert len(batches[-1]) == (n % micro or micro)
    # the DataLoader re-chunks the flat order: it must give back the same batches
    assert chunk(flat, micro) == batches


def test_batches_hold_neighbours_in_length_and_the_longest_comes_first():
    lengths = _go_like_lengths(288)
    batches = bucketed_batches(lengths, 16, seed=42)
    spans = sorted((min(lengths[i] for i in b), max(lengths[i] for i in b)) for b in batches)
    for (_, hi), (lo, _) in zip(spans, spans[1:], strict=False):
        assert hi <= lo  # no two batches overlap in length: each is a run of the sorted split
    assert max(lengths) in [lengths[i] for i in batches[0]]


def test_order_is_a_function_of_seed_and_epoch():
    lengths = _go_like_lengths(291)
    assert bucketed_batches(lengths, 16, seed=1, epoch=0) == bucketed_batches(lengths, 16, seed=1, epoch=0)
    assert bucketed_batches(lengths, 16, seed=1, epoch=0) != bucketed_batches(lengths, 16, seed=1, epoch=1)
    assert bucketed_batches(lengths, 16, seed=1, epoch=0) != bucketed_batches(lengths, 16, seed=2, epoch=0)
    # the short remainder batch is not always the same samples
    remainders = {tuple(sorted(bucketed_batches(lengths, 16, seed=1, epoch=e)[-1])) for e in range(6)}
    assert len(remainders) > 1


def test_far_less_padding_than_transformers_group_by_length():
    from transformers.trainer_pt_utils import get_length_grouped_indices

    lengths = _go_like_lengths(288)
    ours = padding_efficiency(lengths, bucketed_batches(lengths, 16, seed=42), multiple=8)
    theirs = padding_efficiency(
        lengths, chunk(get_length_grouped_indices(lengths, 16, generator=torch.Generator().manual_seed(42)), 16),
        multiple=8)
    assert ours > 0.85 and theirs < 0.75, (ours, theirs)
    # on a real-sized split the buckets are nearly padding-free
    big = _go_like_lengths(11_541)
    assert padding_efficiency(big, bucketed_batches(big, 16, seed=42), multiple=8) > 0.97


def test_padding_efficiency_counts_the_rounding():
    assert padding_efficiency([8, 8, 4, 4], [[0, 1], [2, 3]]) == 1.0
    assert padding_efficiency([8, 4], [[0, 1]]) == 12 / 16
    assert padding_efficiency([5], [[0]], multiple=8) == 5 / 8
    assert padding_efficiency([], []) is None


def test_sampler_through_a_dataloader_follows_set_epoch():
    lengths = _go_like_lengths(50)
    sampler = LengthBucketSampler(lengths, 8, seed=3)
    loader = DataLoader(list(range(50)), batch_size=8, sampler=sampler)
    assert len(sampler) == 50
    first = [b.tolist() for b in loader]
    assert first == bucketed_batches(lengths, 8, seed=3, epoch=0)
    sampler.set_epoch(1)
    assert [b.tolist() for b in loader] == bucketed_batches(lengths, 8, seed=3, epoch=1) != first


def test_micro_batch_must_be_positive_and_divide_the_step():
    with pytest.raises(ValueError):
        bucketed_batches([1, 2], 0, seed=0)
    with pytest.raises(ValueError):
        LengthBucketSampler([1, 2, 3], 3, seed=0, per_step=4)


@pytest.mark.parametrize("n", [288, 291])
def test_sample_order_does_not_depend_on_the_micro_batch_split(n):
    """An OOM retry halves the micro-batch and doubles the accumulation: a resumed run must skip
    exactly the samples the earlier attempt trained on, so the order is a function of the
    sequences per step, not of how a step is split."""
    lengths = _go_like_lengths(n)
    orders = {tuple(i for b in bucketed_batches(lengths, micro, seed=9, per_step=16) for i in b)
              for micro in (1, 2, 4, 8, 16)}
    assert len(orders) == 1


def test_an_optimizer_step_is_one_run_of_the_sorted_split():
    lengths = _go_like_lengths(288)
    batches = bucketed_batches(lengths, 4, seed=42, per_step=16)
    steps = [sum(batches[k:k + 4], []) for k in range(0, len(batches), 4)]
    spans = sorted((min(lengths[i] for i in s), max(lengths[i] for i in s)) for s in steps)
    for (_, hi), (lo, _) in zip(spans, spans[1:], strict=False):
        assert hi <= lo
    first = [lengths[i] for i in batches[0]]
    assert max(lengths) == first[0] and first == sorted(first, reverse=True)


def test_the_trainer_trains_in_bucket_order(tmp_path, tiny_random):
    """What the Trainer's DataLoader yields is the buckets, not transformers' own sampler."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from golora.api.worker import TrainerConfig
    from golora_trainer.data import Formatter, Pair, to_dataset, tokenize_pairs
    from golora_trainer.precision import resolve_precision
    from golora_trainer.report import StatusReporter
    from golora_trainer.train import TrainingRun

    from .helpers import trainer_config

    tok = AutoTokenizer.from_pretrained(tiny_random)
    model = AutoModelForCausalLM.from_pretrained(tiny_random)
    rng = random.Random(5)
    body = "\n".join(f"\tx += {i}" for i in range(40))
    pairs = [Pair(f"F{i} adds.", "func F() int {\n\tx := 0\n" + "\n".join(body.splitlines()[:rng.randrange(1, 40)])
                  + "\n\treturn x\n}") for i in range(37)]
    examples, _ = tokenize_pairs(Formatter(tok, 512), pairs)
    doc = trainer_config(tmp_path, train="d.jsonl", model_path=str(tiny_random),
                         spec={"training": {"maxSteps": 1, "checkpointSteps": 100, "seed": 11}})
    run = TrainingRun(TrainerConfig.model_validate(doc), StatusReporter(None))
    trainer = run.build_trainer(model, tok, to_dataset(examples), plan=resolve_precision("auto", cuda=False, capability=None),
                                micro=4, accumulation=2, ckpt=False, cuda=False, loss_impl="fused", callbacks=[])
    lengths = [len(e.input_ids) for e in examples]
    want = [sorted(lengths[i] for i in b) for b in bucketed_batches(lengths, 4, seed=11, per_step=8)]
    got = [sorted(int(n) for n in batch["attention_mask"].sum(dim=1)) for batch in trainer.get_train_dataloader()]
    assert got == want
    assert run.fields["padding_efficiency"] == pytest.approx(
        padding_efficiency(lengths, bucketed_batches(lengths, 4, seed=11, per_step=8)), abs=1e-4)
