"""What the node agent registers and what it can run: node specs and the local image map.

A node spec is capacity and labels (GPUs are capacity only: the processes run on the
CPU). The image map says how an image runs on this machine, since no container runtime
can run the model-server images here: which local executables stand for the image's
binaries (``PATH`` and argv[0] mapping), the image's default entrypoint, and the
environment the image would carry. An image that matches no entry is not runnable
locally: its Pod waits with reason ``ImageNotRunnableLocally``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

GPU_RESOURCE = "nvidia.com/gpu"
# Host variables an image's processes keep (toolchains and offline model caches live there).
PASS_THROUGH_ENV = ("GO", "HF_", "TRANSFORMERS_", "OMP_", "TORCH", "VLLM_", "LANG", "LC_", "TZ")


def _machine_memory() -> str:
    with open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1])}Ki"
    return "8Gi"


@dataclass(frozen=True)
class NodeSpec:
    """One Node: ``cpu``/``memory`` default to the machine's; ``gpus`` adds ``nvidia.com/gpu``."""

    name: str = "golora-node"
    cpu: str = field(default_factory=lambda: str(os.cpu_count() or 1))
    memory: str = field(default_factory=_machine_memory)
    pods: int = 110
    gpus: int = 0
    labels: dict[str, str] = field(default_factory=dict)
    taints: list[dict[str, str]] = field(default_factory=list)

    def capacity(self) -> dict[str, str]:
        cap = {"cpu": self.cpu, "memory": self.memory, "pods": str(self.pods), "ephemeral-storage": "100Gi"}
        if self.gpus:
            cap[GPU_RESOURCE] = str(self.gpus)
        return cap

    @classmethod
    def gpu_node(cls, name: str, product: str = "Tesla-T4", compute_major: int = 7, compute_minor: int = 5,
                 memory_mib: int = 15360, gpus: int = 1, **kwargs: Any) -> NodeSpec:
        """A node with the labels NVIDIA's GPU feature discovery sets."""
        labels = {"nvidia.com/gpu.product": product, "nvidia.com/gpu.count": str(gpus),
                  "nvidia.com/gpu.compute.major": str(compute_major),
                  "nvidia.com/gpu.compute.minor": str(compute_minor), "nvidia.com/gpu.memory": str(memory_mib),
                  **kwargs.pop("labels", {})}
        return cls(name=name, gpus=gpus, labels=labels, **kwargs)


def load_nodes(path: Path) -> list[NodeSpec]:
    """A YAML list of node specs, e.g. ``[{name: cpu}, {name: t4, gpuProduct: Tesla-T4}]``."""
    nodes = []
    for item in yaml.safe_load(path.read_text()) or []:
        item = dict(item)
        product = item.pop("gpuProduct", None)
        nodes.append(NodeSpec.gpu_node(**item, product=product) if product else NodeSpec(**item))
    return nodes


@dataclass(frozen=True)
class ImageSpec:
    """How one image runs here. ``match``: an image name without tag or digest (or a prefix
    ending in ``/``). ``executables``: argv[0] -> local path. ``path``: directories put first
    on PATH. ``entrypoint``: the image's ENTRYPOINT + CMD, used when a container has no
    ``command``. ``env``: the image's own environment."""

    match: str
    executables: dict[str, str] = field(default_factory=dict)
    path: list[str] = field(default_factory=list)
    entrypoint: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    # Volumes also bind-mounted at their mountPaths in a private mount namespace (mountns.py):
    # for programs that receive container paths other than on their command line or env.
    own_mounts: bool = False

    def matches(self, image: str) -> bool:
        name = image.split("@", 1)[0]
        last = name.rsplit("/", 1)[-1]
        if ":" in last:
            name = name[: len(name) - len(last)] + last.split(":", 1)[0]
        return name == self.match or (self.match.endswith("/") and name.startswith(self.match))


def find_image(images: list[ImageSpec], image: str) -> ImageSpec | None:
    return next((spec for spec in images if spec.matches(image)), None)
