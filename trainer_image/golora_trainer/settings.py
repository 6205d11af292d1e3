"""Every ``GOLORA_*`` variable the trainer reads of its own, typed and documented once
(docs/trainer.md lists them; a unit test keeps that table in step and finds any other
``GOLORA_`` name in the package).

Not here: the worker protocol the operator sets on the Job (``GOLORA_CONFIG``,
``GOLORA_TERMINATION_LOG``, ``GOLORA_POD_IP``: ``golora.api.worker``). Most of these are
switches for tests and benchmarks; a LoraTraining Job sets none of them. :func:`current` reads
the environment when called; an unset or empty variable takes its default.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from golora.settings import setting


def _capability(raw: str) -> tuple[int, int]:
    major, _, minor = raw.partition(".")
    return int(major), int(minor or 0)


def _flag(raw: str) -> bool:
    return raw == "1"


@dataclass(frozen=True)
class Settings:
    serviceaccount_dir: str = setting(
        "GOLORA_SERVICEACCOUNT_DIR", "/var/run/secrets/kubernetes.io/serviceaccount",
        "directory with the `token` and `ca.crt` the status patches use (the local node agent points it "
        "at its own)")
    progress_interval: float = setting(
        "GOLORA_PROGRESS_INTERVAL", 5.0, "least seconds between two `status.progress` patches", float)
    force_cpu: bool = setting("GOLORA_FORCE_CPU", False, "`1`: train on the CPU even where a GPU is visible", _flag)
    gpu_compute_capability: tuple[int, int] | None = setting(
        "GOLORA_GPU_COMPUTE_CAPABILITY", None,
        "pretend the GPU has this compute capability, e.g. `7.5` (a T4 on a newer GPU: the precision it picks)",
        _capability)
    gpu_memory_gib: float | None = setting(
        "GOLORA_GPU_MEMORY_GIB", None,
        "pretend the GPU has this much memory and cap the allocator to it, e.g. `15` (a T4's micro-batch plan)",
        float)
    train_sampler: str = setting(
        "GOLORA_TRAIN_SAMPLER", "buckets",
        "benchmarks: `group_by_length` trains in transformers' order instead of golora's length buckets")
    layer_kernels: str = setting(
        "GOLORA_LAYER_KERNELS", "",
        "benchmarks: `liger` adds Liger's RMSNorm, SwiGLU and RoPE kernels (CUDA, liger-kernel installed)")
    packing: str = setting(
        "GOLORA_PACKING", "",
        "benchmarks: `padding_free` packs each micro-batch into one row without padding")
    fault_oom_above_micro_batch: int | None = setting(
        "GOLORA_FAULT_OOM_ABOVE_MICRO_BATCH", None,
        "tests: an attempt with a micro-batch above this fails with CUDA out of memory at its first step", int)
    cache: str = setting(
        "GOLORA_CACHE", "~/.cache/golora", "where `python -m golora_trainer tiny` keeps the tiny models it builds")


def current() -> Settings:
    return Settings()


def variables() -> list[tuple[str, Any, str]]:
    """(variable, default, description) of every setting, in declaration order."""
    return [(f.metadata["env"], f.metadata["default"], f.metadata["doc"]) for f in fields(Settings)]
