"""Length-bucketed micro-batches: every padding token is GPU time spent on nothing.

transformers' ``group_by_length`` sorts only inside random "megabatches" of at most
50 x (micro-batch x accumulation) samples — and makes just four of them when the dataset is
small — so one micro-batch can pad a 300-token pair to 1,700. On the GPU benchmark's Go pairs
(288 pairs, micro-batch 16) only 66 % of the padded tokens it trained on were real ones.

``LengthBucketSampler`` sorts the whole split by length (ties broken at random each epoch),
cuts it into optimizer steps of neighbours, shuffles the steps and splits each into its
micro-batches: every micro-batch holds similar lengths, the order of steps is random, the
number of sequences per micro-batch and per optimizer step is unchanged. The step holding the
longest sample comes first, longest micro-batch first, so an out-of-memory error happens at
step one, not hours in. The order of samples depends only on (seed, epoch, sequences per
step) — not on how a step is split into micro-batches — so a run resumed after an
out-of-memory retry (half the micro-batch, twice the accumulation) skips exactly the samples
it had already trained on.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence

from torch.utils.data import Sampler


def bucketed_steps(lengths: Sequence[int], per_step: int, seed: int, epoch: int = 0) -> list[list[int]]:
    """Optimizer steps of dataset indices for one epoch, each a run of the length-sorted split
    ordered longest first: full steps shuffled (the one with the longest sample first), the one
    short remainder step, if any, last."""
    if per_step < 1:
        raise ValueError(f"sequences per step must be >= 1, got {per_step}")
    n = len(lengths)
    if n == 0:
        return []
    rng = random.Random(f"{seed}/{epoch}")
    ties = [rng.random() for _ in range(n)]
    order = sorted(range(n), key=lambda i: (lengths[i], ties[i]), reverse=True)
    full, rest = divmod(n, per_step)
    # where the remainder is cut from moves each epoch, so no sample is always in the short step
    cut = rng.randrange(full + 1) * per_step
    remainder = order[cut:cut + rest]
    kept = order[:cut] + order[cut + rest:]
    steps = [kept[i:i + per_step] for i in range(0, len(kept), per_step)]
    rng.shuffle(steps)
    if steps:
        longest = max(range(len(steps)), key=lambda s: lengths[steps[s][0]])
        steps.insert(0, steps.pop(longest))
    if remainder:
        steps.append(remainder)
    return steps


def bucketed_batches(lengths: Sequence[int], micro_batch: int, seed: int, epoch: int = 0,
                     per_step: int | None = None) -> list[list[int]]:
    """Micro-batches for one epoch: each step of ``bucketed_steps`` split into micro-batches of
    ``micro_batch`` (``per_step`` must be a multiple of it; default one micro-batch per step).
    Only the last batch may be short: a DataLoader re-chunks the flat order by ``micro_batch``."""
    if micro_batch < 1:
        raise ValueError(f"micro_batch must be >= 1, got {micro_batch}")
    per_step = per_step or micro_batch
    if per_step % micro_batch:
        raise ValueError(f"sequences per step ({per_step}) must be a multiple of the micro-batch ({micro_batch})")
    return [step[i:i + micro_batch] for step in bucketed_steps(lengths, per_step, seed, epoch)
            for i in range(0, len(step), micro_batch)]


def padding_efficiency(lengths: Sequence[int], batches: Sequence[Sequence[int]], multiple: int = 1) -> float | None:
    """Real tokens / tokens after right-padding each batch to its longest (rounded up to ``multiple``)."""
    real = padded = 0
    for batch in batches:
        if not batch:
            continue
        longest = max(lengths[i] for i in batch)
        longest = -(-longest // multiple) * multiple if multiple > 1 else longest
        real += sum(lengths[i] for i in batch)
        padded += longest * len(batch)
    return real / padded if padded else None


def chunk(order: Sequence[int], micro_batch: int) -> list[list[int]]:
    """A flat sampler order as the DataLoader will batch it."""
    return [list(order[i:i + micro_batch]) for i in range(0, len(order), micro_batch)]


class LengthBucketSampler(Sampler[int]):
    """Yields dataset indices so that each run of ``micro_batch`` consecutive ones is one bucket."""

    def __init__(self, lengths: Sequence[int], micro_batch: int, seed: int, per_step: int | None = None):
        self.lengths = list(lengths)
        self.micro_batch = micro_batch
        self.per_step = per_step or micro_batch
        self.seed = seed
        self.epoch = 0
        bucketed_batches([], micro_batch, seed, per_step=self.per_step)  # checks the arguments now

    def set_epoch(self, epoch: int) -> None:
        """Called by the Trainer (through accelerate's DataLoader) at the start of each epoch."""
        self.epoch = int(epoch)

    def batches(self) -> list[list[int]]:
        return bucketed_batches(self.lengths, self.micro_batch, self.seed, self.epoch, self.per_step)

    def __iter__(self) -> Iterator[int]:
        for batch in self.batches():
            yield from batch

    def __len__(self) -> int:
        return len(self.lengths)


__all__ = ["LengthBucketSampler", "bucketed_batches", "bucketed_steps", "chunk", "padding_efficiency"]
