"""AdapterServing: patch vLLM / llm-d Deployments so a trained adapter is served by name."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from ..vllm import ALLOWED_MAX_LORA_RANKS
from .common import (
    K8S_NAME_PATTERN,
    CamelModel,
    CommonStatus,
    KindInfo,
    PrinterColumn,
    StatusModel,
    StoreRef,
    cel,
    relative_path,
    section,
    validations,
)

DEFAULT_CONTAINER = "vllm"  # the engine container's name in vLLM's and llm-d's manifests


class TrainingRef(CamelModel):
    """A LoraTraining in the same namespace whose adapter is served."""

    name: str = Field(..., max_length=253, pattern=K8S_NAME_PATTERN, description="LoraTraining name.")


class LabelSelector(CamelModel):
    """Deployments to patch by labels, e.g. llm-d.ai/model for both prefill and decode."""

    match_labels: dict[str, str] = Field(
        ...,
        min_length=1,
        description="All of these labels must match (llm-d: llm-d.ai/model=<model>; both roles are patched).",
    )


class Targets(CamelModel):
    """The model-server Deployments: by name or by label selector (exactly one)."""

    one_of = ((("deployments", "selector"), "set exactly one of targets.deployments or targets.selector"),)

    deployments: list[Annotated[str, Field(max_length=253, pattern=K8S_NAME_PATTERN)]] | None = Field(
        None,
        min_length=1,
        max_length=32,
        description="Deployment names in this namespace (llm-d: the prefill AND decode Deployments).",
    )
    selector: LabelSelector | None = Field(None, description="Label selector over Deployments.")


_RANK_LIST = ", ".join(str(r) for r in ALLOWED_MAX_LORA_RANKS)


class VLLMOptions(CamelModel):
    """vLLM LoRA engine options; 'auto' derives them from the adapters aimed at a Deployment."""

    max_lora_rank: int | Literal["auto"] = Field(
        "auto",
        description=f"--max-lora-rank; auto rounds the largest adapter rank up to one of {_RANK_LIST}.",
        json_schema_extra=validations(
            cel(f"type(self) == string ? self == 'auto' : self in [{_RANK_LIST}]",
                f"maxLoraRank must be 'auto' or one of {_RANK_LIST} (the values vLLM accepts)")
        ),
    )
    max_loras: int | Literal["auto"] = Field(
        "auto",
        description="--max-loras (adapters per batch); auto = the number of adapters on the Deployment.",
        json_schema_extra=validations(
            cel("type(self) == string ? self == 'auto' : (self >= 1 && self <= 256)",
                "maxLoras must be 'auto' or an integer between 1 and 256")
        ),
    )
    max_cpu_loras: int | Literal["auto"] = Field(
        "auto",
        description="--max-cpu-loras (adapters cached in CPU memory); must be >= maxLoras.",
        json_schema_extra=validations(
            cel("type(self) == string ? self == 'auto' : (self >= 1 && self <= 1024)",
                "maxCpuLoras must be 'auto' or an integer between 1 and 1024")
        ),
    )


class AdapterServingSpec(CamelModel):
    """Desired serving: which adapter, under which name, on which Deployments."""

    one_of = ((("training_ref", "adapter_path"), "set exactly one of trainingRef or adapterPath"),)

    served_name: str = Field(
        ...,
        min_length=1,
        max_length=128,
        description="Name clients put in \"model\" (e.g. go-adapter). No '=', ',', '/' or whitespace.",
        json_schema_extra=validations(
            cel("!self.matches('[=,/\\\\s]')",
                "servedName must not contain '=', ',', '/' or whitespace (vLLM's --lora-modules and "
                "clients' \"model\" field cannot carry them)"),
            cel("self.matches('^[A-Za-z0-9][A-Za-z0-9._:-]*$')",
                "servedName must start with a letter or digit and use only letters, digits, '.', '_', ':' and '-'"),
        ),
    )
    training_ref: TrainingRef | None = Field(None, description="LoraTraining whose adapter is served.")
    adapter_path: str | None = relative_path("adapterPath", "Or an adapter directory relative to the store.")
    targets: Targets = Field(..., description="Model-server Deployments to patch.")
    container_name: str = Field(
        DEFAULT_CONTAINER, min_length=1, max_length=63, description="Engine container, found by name (never by index)."
    )
    storage: StoreRef = section(StoreRef, "Store volume mounted read-only into the server.")
    vllm: VLLMOptions = section(VLLMOptions, "vLLM LoRA options.")
    require_quality_gate: bool = Field(
        True, description="Serve only adapters whose LoraTraining passed its quality gate."
    )
    loading: Literal["Restart", "Runtime"] = Field(
        "Restart",
        description="Restart: the adapter goes into --lora-modules and every change rolls the pods (a refused "
        "adapter is rolled back). Runtime: the Deployment is prepared once (--enable-lora, runtime LoRA "
        "updating, vLLM's filesystem resolver on the store: one restart, announced in status first), then "
        "adapters are loaded into, updated in and unloaded from the running pods through vLLM's API, and "
        "re-loaded on every pod that becomes ready later.",
    )


class LoadError(StatusModel):
    """The last refused runtime load on a pod: vLLM's own answer."""

    adapter: str | None = Field(None, description="Served name golora tried to load.")
    code: int | None = Field(None, description="HTTP status of POST /v1/load_lora_adapter (0: no answer).")
    message: str | None = Field(None, description="vLLM's message.")
    at: str | None = Field(None, description="When (RFC 3339).")
    path: str | None = Field(None, description="The snapshot it was asked to load (not sent again to this pod).")


class PodLoadStatus(StatusModel):
    """Runtime mode: what golora loaded into one ready pod of a target."""

    name: str
    uid: str | None = None
    ip: str | None = None
    loaded: list[str] = Field(default_factory=list, description="golora adapters listed by this pod's GET /v1/models.")
    loaded_at: str | None = Field(None, description="When this AdapterServing's adapter was last loaded here.")
    path: str | None = Field(None, description="The path vLLM loaded this AdapterServing's adapter from.")
    last_error: LoadError | None = Field(None, description="The last refused load of this adapter on this pod.")


class TargetStatus(StatusModel):
    """Per-Deployment patch and rollout state."""

    name: str
    container: str | None = Field(None, description="Engine container patched (found by name).")
    served_model: str | None = Field(None, description="The Deployment's base model (--served-model-name or model).")
    patched_generation: int | None = Field(None, description="Deployment generation after golora's patch.")
    observed_generation: int | None = None
    replicas: int | None = None
    updated_replicas: int | None = None
    available_replicas: int | None = None
    rolled_out: bool | None = None
    served: bool | None = Field(None, description="Adapter listed by GET /v1/models on the ready pods.")
    max_lora_rank: int | None = Field(None, description="--max-lora-rank in effect after the patch.")
    adapters: list[str] = Field(default_factory=list, description="Every adapter name golora serves on this Deployment.")
    message: str | None = None
    loading: str | None = Field(None, description="Restart or Runtime (how this adapter reaches the pods).")
    prepared: bool | None = Field(None, description="Runtime: the Deployment has what runtime loading needs.")
    pods: list[PodLoadStatus] = Field(default_factory=list, description="Runtime: per ready pod, what is loaded.")


class AdapterInfo(StatusModel):
    """The adapter being served."""

    path: str | None = Field(None, description="Adapter directory, relative to the store.")
    rank: int | None = Field(None, description="LoRA rank r.")
    base_model: str | None = Field(None, description="Base model the adapter was trained on.")
    source: str | None = Field(None, description="Where the facts come from (LoraTraining status, or the files).")
    verified: str | None = Field(None, description="What golora verified about the files, and what it did not.")
    lora_module: str | None = Field(None, description="Path vLLM loads the adapter from (inside the store mount).")


class AdapterCheckResult(StatusModel):
    """Written by the adapter validation Job (explicit adapterPath): what it found on the store."""

    path: str | None = Field(None, description="adapterPath that was checked, relative to the store.")
    claim: str | None = Field(None, description="Store claim it was read from.")
    generation: int | None = Field(None, description="metadata.generation the check was made for.")
    ok: bool | None = Field(None, description="The files are an adapter vLLM will load.")
    rank: int | None = None
    base_model: str | None = Field(None, description="base_model_name_or_path in adapter_config.json.")
    problems: list[str] = Field(default_factory=list, description="Why vLLM would refuse it.")
    checked_at: str | None = None


class RejectedAdapter(StatusModel):
    """An adapter the model server refused at start (Restart mode): golora took its entry out
    again so the server came back with the base model; it is not patched in again until the
    adapter (path or training generation) or the spec changes."""

    path: str | None = Field(None, description="Adapter directory that was refused, relative to the store.")
    source: str | None = Field(None, description="Where its facts came from (e.g. the LoraTraining and generation).")
    generation: int | None = Field(None, description="metadata.generation of the AdapterServing when it was refused.")
    pod: str | None = Field(None, description="The pod whose engine container failed.")
    message: str | None = Field(None, description="vLLM's last log line, or the container's termination message.")


class AdapterServingStatus(CommonStatus):
    """Observed state of an AdapterServing."""

    adapter: AdapterInfo | None = None
    rejected: RejectedAdapter | None = Field(None, description="The adapter the server refused, if it did.")
    adapter_check: AdapterCheckResult | None = Field(
        None, description="Result of the validation Job for an explicit adapterPath (worker-written).")
    targets: list[TargetStatus] = Field(default_factory=list, description="Per-Deployment state.")
    target_names: str | None = Field(None, description="Comma-separated Deployment names (for kubectl get).")


KIND = KindInfo(
    kind="AdapterServing",
    plural="adapterservings",
    singular="adapterserving",
    short_names=["as", "ads"],
    spec=AdapterServingSpec,
    status=AdapterServingStatus,
    description="AdapterServing patches vLLM / llm-d Deployments (--enable-lora, --lora-modules) so a "
    "trained adapter is served under a model name.",
    printer_columns=[
        PrinterColumn(name="Served-Name", type="string", json_path=".spec.servedName"),
        PrinterColumn(name="Targets", type="string", json_path=".status.targetNames"),
        PrinterColumn(name="Loading", type="string", json_path=".spec.loading"),
        PrinterColumn(name="Phase", type="string", json_path=".status.phase"),
        PrinterColumn(name="Message", type="string", json_path=".status.message", priority=1),
        PrinterColumn(name="Age", type="date", json_path=".metadata.creationTimestamp"),
    ],
)
