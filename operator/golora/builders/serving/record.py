"""The record golora leaves on a Deployment: the ``golora.dev/lora-serving`` annotation (the
adapters per Deployment and, per container, which flags golora appended or changed and what
they were before), so golora can undo exactly its own part."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from ... import naming
from ...api.adapterserving import DEFAULT_CONTAINER
from ...api.common import DEFAULT_STORE_CLAIM
from .. import runtime

STORE_VOLUME = "golora-store"
STORE_MOUNT = "/golora-store"
ANNOTATION = f"{naming.DOMAIN}/lora-serving"
RECORD_VERSION = 1


@dataclass(frozen=True)
class AdapterEntry:
    """One golora adapter on a Deployment (what an AdapterServing contributes)."""

    name: str  # served name (the "model" clients send)
    owner: str  # AdapterServing name
    path: str  # adapter directory relative to the store
    rank: int
    base_model: str | None = None
    claim: str = DEFAULT_STORE_CLAIM
    container: str = DEFAULT_CONTAINER
    max_lora_rank: int | None = None  # explicit spec.vllm options (None = auto)
    max_loras: int | None = None
    max_cpu_loras: int | None = None
    loading: str = runtime.RESTART  # Runtime: loaded through vLLM's API, not in --lora-modules

    @property
    def runtime(self) -> bool:
        return self.loading == runtime.RUNTIME

    @property
    def mount_path(self) -> str:
        return f"{STORE_MOUNT}/{self.path.strip('/')}"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "owner": self.owner, "path": self.path, "rank": self.rank,
                               "claim": self.claim, "container": self.container}
        for key, value in (("baseModel", self.base_model), ("maxLoraRank", self.max_lora_rank),
                           ("maxLoras", self.max_loras), ("maxCpuLoras", self.max_cpu_loras)):
            if value is not None:
                out[key] = value
        if self.runtime:
            out["loading"] = self.loading
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AdapterEntry:
        return cls(name=str(data["name"]), owner=str(data["owner"]), path=str(data["path"]),
                   rank=int(data["rank"]), base_model=data.get("baseModel"),
                   claim=str(data.get("claim") or DEFAULT_STORE_CLAIM),
                   container=str(data.get("container") or DEFAULT_CONTAINER),
                   max_lora_rank=data.get("maxLoraRank"), max_loras=data.get("maxLoras"),
                   max_cpu_loras=data.get("maxCpuLoras"), loading=str(data.get("loading") or runtime.RESTART))


@dataclass
class ContainerRecord:
    """What golora changed in one container's args (so :func:`strip_args` can undo it)."""

    enable_lora: bool = False  # golora appended --enable-lora
    # flag -> [value golora set, the user's value before (None: golora appended the flag)]
    scalars: dict[str, list[str | None]] = field(default_factory=dict)
    # "appended": golora's own --lora-modules occurrence at the end (carrying ``copied``, the
    # user's values it repeats); "extended": golora's values added to the user's occurrence.
    lora_modules: str | None = None
    copied: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.enable_lora:
            out["enableLora"] = True
        if self.scalars:
            out["scalars"] = {k: {"value": v[0], "was": v[1]} for k, v in sorted(self.scalars.items())}
        if self.lora_modules:
            out["loraModules"] = self.lora_modules
        if self.copied:
            out["copied"] = list(self.copied)
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ContainerRecord:
        scalars = {k: [v.get("value"), v.get("was")] for k, v in (data.get("scalars") or {}).items()
                   if isinstance(v, dict)}
        return cls(bool(data.get("enableLora")), scalars, data.get("loraModules"), list(data.get("copied") or []))


@dataclass
class Record:
    """The ``golora.dev/lora-serving`` annotation of a Deployment."""

    adapters: list[AdapterEntry] = field(default_factory=list)
    containers: dict[str, ContainerRecord] = field(default_factory=dict)

    def dumps(self) -> str:
        return json.dumps({
            "version": RECORD_VERSION,
            "adapters": [a.to_json() for a in sorted(self.adapters, key=lambda a: (a.container, a.name))],
            "containers": {k: v.to_json() for k, v in sorted(self.containers.items())},
        }, sort_keys=True, separators=(",", ":"))

    def owners(self) -> set[str]:
        return {a.owner for a in self.adapters}

    def by_name(self, name: str) -> AdapterEntry | None:
        return next((a for a in self.adapters if a.name == name), None)


def read_record(deployment: dict[str, Any]) -> Record:
    """The record golora left on a Deployment; an empty one if none (or unreadable)."""
    raw = ((deployment.get("metadata") or {}).get("annotations") or {}).get(ANNOTATION)
    if not raw:
        return Record()
    try:
        data = json.loads(raw)
        adapters = [AdapterEntry.from_json(a) for a in data.get("adapters") or []]
        containers = {k: ContainerRecord.from_json(v) for k, v in (data.get("containers") or {}).items()}
    except (ValueError, KeyError, TypeError, AttributeError):
        return Record()
    return Record(adapters, containers)
