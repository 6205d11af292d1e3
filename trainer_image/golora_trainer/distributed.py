"""Data-parallel training under torchrun: who this process is, and the few collectives the
trainer itself needs (transformers' Trainer does the DDP work).

torchrun sets RANK, LOCAL_RANK, WORLD_SIZE and LOCAL_WORLD_SIZE. Rank 0 alone reports
progress and the result, prepares the checkpoint directory, computes the base model's eval
loss, runs the gate and saves the adapter; every rank trains. Decisions that stop training
(divergence, a signal) must be the same on every rank, or the others hang in their next
collective: the divergence guard sees the loss gathered over ranks, the signal is all-reduced.

A rank whose collective fails because a peer died (its pod was killed, its process ran out of
memory) did not fail by itself: it exits with EXIT_INTERRUPTED and reports nothing, so the
reason that reaches status is the peer's own (OutOfMemory, or the pod's exit signal).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from dataclasses import dataclass

from golora.api.worker import REASON_INVALID_CONFIG

from .errors import TrainerError
from .precision import BF16_MIN_MAJOR

log = logging.getLogger(__name__)

# Rank 0 computes the base eval loss (and after training the gate) while the others wait in a
# collective: the timeout must cover that, on a T4, with margin.
COLLECTIVE_TIMEOUT = dt.timedelta(minutes=90)
# What torch's gloo/NCCL backends say when the other end of a collective went away.
_PEER_LOST = ("connection closed by peer", "connection reset by peer", "broken pipe", "socket closed",
              "nccl communicator was aborted", "remote process exited", "connection refused",
              "read error", "no route to host", "recv timed out", "timed out")


@dataclass(frozen=True)
class Ranks:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @classmethod
    def from_env(cls) -> Ranks:
        def num(name: str, default: int) -> int:
            try:
                return int(os.environ.get(name, default))
            except ValueError:
                return default

        return cls(num("RANK", 0), num("LOCAL_RANK", 0), num("WORLD_SIZE", 1))


def init(ranks: Ranks, cuda: bool) -> None:
    """Join the process group (NCCL on GPUs, gloo on CPU) before anything needs it;
    accelerate reuses an initialized group."""
    if not ranks.distributed:
        return
    import torch
    import torch.distributed as dist

    if dist.is_initialized():
        return
    if cuda:
        torch.cuda.set_device(ranks.local_rank)
    dist.init_process_group("nccl" if cuda else "gloo", timeout=COLLECTIVE_TIMEOUT)
    log.info("rank %d of %d (local rank %d), backend %s", ranks.rank, ranks.world_size, ranks.local_rank,
             dist.get_backend())


def _active() -> bool:
    try:
        import torch.distributed as dist

        return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
    except ImportError:  # pragma: no cover
        return False


def gather(obj):
    """Every rank's ``obj``, in rank order ([obj] when not distributed)."""
    if not _active():
        return [obj]
    import torch.distributed as dist

    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast(obj):
    """Rank 0's ``obj`` on every rank."""
    if not _active():
        return obj
    import torch.distributed as dist

    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier() -> None:
    if _active():
        import torch.distributed as dist

        dist.barrier()


def any_rank(flag: bool) -> bool:
    """True on every rank if it is True on any."""
    if not _active():
        return flag
    import torch
    import torch.distributed as dist

    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else "cpu"
    t = torch.tensor([1 if flag else 0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def per_rank_batch(effective: int, world_size: int) -> int:
    """Sequences each rank contributes to one optimizer step (the effective batch is kept: the
    accumulation steps are divided among the ranks, rounding up)."""
    return max(1, -(-effective // max(1, world_size)))


def check_same_generation(requested: str, capabilities: list[tuple[int, int] | None]) -> None:
    """precision auto picks bf16 from compute capability >= 8.0 and the fp16 recipe below it:
    ranks on both kinds would train in two precisions. Refuse, with what to do."""
    if requested != "auto":
        return
    gpus = [c for c in capabilities if c is not None]
    new = sorted({f"{a}.{b}" for a, b in gpus if a >= BF16_MIN_MAJOR})
    old = sorted({f"{a}.{b}" for a, b in gpus if a < BF16_MIN_MAJOR})
    if new and old:
        raise TrainerError(
            REASON_INVALID_CONFIG,
            f"precision auto on a mix of GPU generations: compute capability {', '.join(new)} (bf16) and "
            f"{', '.join(old)} (fp16, no bf16) across the {len(capabilities)} ranks. Pin one GPU kind with "
            "placement.gpuProduct or placement.nodeSelector, or set training.precision to fp16 for all",
        )


def is_peer_failure(exc: BaseException) -> bool:
    """A collective failed because another rank went away (not this rank's own failure)."""
    try:
        import torch.distributed as dist

        kinds = tuple(k for k in (getattr(dist, "DistBackendError", None), getattr(dist, "DistNetworkError", None),
                                  getattr(dist, "DistError", None)) if k is not None)
    except ImportError:  # pragma: no cover
        kinds = ()
    text = str(exc).lower()
    if kinds and isinstance(exc, kinds):
        return True
    return isinstance(exc, RuntimeError) and ("gloo" in text or "nccl" in text) and any(p in text for p in _PEER_LOST)
