"""Length-bucketed micro-batches: every padding token is GPU time spent on nothing.

transformers' ``group_by_length`` sorts only inside random "megabatches" of at most
50 x (micro-batch x accumulation) samples — and makes just four of them when the dataset is
small — so one micro-batch can pad a 300-token pair to 1,700. On the GPU benchmark's Go pairs
(288 pairs, micro-batch 16) only 66 % of the padded tokens it trained on were real ones.

``LengthBucketSampler`` sorts the whole split by length (ties broken at random each epoch),
cuts it into micro-batches of neighbours, and shuffles the micro-batches: each micro-batch
holds similar lengths, the order of micro-batches (and so what each optimizer step sees) is
random, the number of sequences per micro-batch and per optimizer step is unchanged. The
micro-batch holding the longest sample comes first, so an out-of-memory error happens at step
one, not hours in. The order depends only on (seed, epoch): a resumed run skips exactly the
micro-batches it had already trained on.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence

from torch.utils.data import Sampler


def bucketed_batches(lengths: Sequence[int], micro_batch: int, seed: int, epoch: int = 0) -> list[list[int]]:
    """Micro-batches of dataset indices for one epoch: full ones first (shuffled, the longest
    first), the one short remainder batch, if any, last — a DataLoader re-chunks the flat order
    by ``micro_batch``, so only the last batch may be short."""
    if micro_batch < 1:
        raise ValueError(f"micro_batch must be >= 1, got {micro_batch}")
    n = len(lengths)
    if n == 0:
        return []
    rng = random.Random(f"{seed}/{epoch}")
    ties = [rng.random() for _ in range(n)]
    order = sorted(range(n), key=lambda i: (lengths[i], ties[i]))
    full, rest = divmod(n, micro_batch)
    # where the remainder is cut from moves each epoch, so no sample is always in the short batch
    cut = rng.randrange(full + 1) * micro_batch
    remainder = order[cut:cut + rest]
    kept = order[:cut] + order[cut + rest:]
    batches = [kept[i:i + micro_batch] for i in range(0, len(kept), micro_batch)]
    rng.shuffle(batches)
    if batches:
        longest = max(range(len(batches)), key=lambda b: max(lengths[i] for i in batches[b]))
        batches.insert(0, batches.pop(longest))
    if remainder:
        batches.append(remainder)
    return batches


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

    def __init__(self, lengths: Sequence[int], micro_batch: int, seed: int):
        self.lengths = list(lengths)
        self.micro_batch = micro_batch
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Called by the Trainer (through accelerate's DataLoader) at the start of each epoch."""
        self.epoch = int(epoch)

    def batches(self) -> list[list[int]]:
        return bucketed_batches(self.lengths, self.micro_batch, self.seed, self.epoch)

    def __iter__(self) -> Iterator[int]:
        for batch in self.batches():
            yield from batch

    def __len__(self) -> int:
        return len(self.lengths)


__all__ = ["LengthBucketSampler", "bucketed_batches", "chunk", "padding_efficiency"]
