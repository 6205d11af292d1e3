"""Building blocks shared by the three CRD models.

Every CRD is generated from these pydantic models (see ``golora.api.crdgen``), so a
field's description, default and constraints live here and nowhere else.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

GROUP = "golora.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
CATEGORY = "golora"

# A Kubernetes object name (RFC 1123 subdomain, as used by PVCs, Secrets, CRs).
K8S_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"
# A DNS label (RFC 1123), as used for names that end up in Job names and paths.
DNS_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"


def cel(rule: str, message: str, **extra: Any) -> dict[str, Any]:
    """One ``x-kubernetes-validations`` entry: a CEL rule and the message a user reads."""
    return {"rule": rule, "message": message, **extra}


def validations(*rules: dict[str, Any]) -> dict[str, Any]:
    """``json_schema_extra`` carrying CEL rules, for a model or a field."""
    return {"x-kubernetes-validations": list(rules)}


SAFE_RELATIVE_PATH_CEL = "!self.startsWith('/') && !self.split('/').exists(p, p == '..')"


def relative_path(name: str, description: str, *, default: str | None = None, within: str = "the store") -> Any:
    """A path inside a volume (``name`` as the user writes it): never absolute, never through
    '..', so a spec cannot reach outside the volume it names."""
    return Field(default, max_length=1024, description=description, json_schema_extra=validations(
        cel(SAFE_RELATIVE_PATH_CEL, f"{name} must be relative to {within} and must not contain '..'")))


def _object_rules(schema: dict[str, Any], cls: type[CamelModel]) -> None:
    """json_schema_extra hook: a model's ``one_of`` groups and ``cel_rules`` become CEL."""
    rules = [
        cel(f"[{', '.join(f'has(self.{to_camel(f)})' for f in fields)}].filter(x, x).size() == 1", message)
        for fields, message in cls.one_of
    ] + list(cls.cel_rules)
    if rules:
        schema["x-kubernetes-validations"] = rules


class CamelModel(BaseModel):
    """Spec models: camelCase on the wire, unknown fields rejected (typos never pass silently).

    ``one_of`` declares groups of fields of which exactly one must be set: enforced here and
    by the apiserver (the same groups become CEL rules in the CRD), so a worker config and a
    CR are held to the same rule. ``cel_rules`` are extra object-level CEL rules; a model
    that declares one mirrors it in a pydantic validator.
    """

    one_of: ClassVar[tuple[tuple[tuple[str, ...], str], ...]] = ()
    cel_rules: ClassVar[tuple[dict[str, Any], ...]] = ()

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        validate_default=True,
        json_schema_extra=_object_rules,
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> CamelModel:
        for fields, message in self.one_of:
            if sum(getattr(self, f) is not None for f in fields) != 1:
                raise ValueError(message)
        return self


class StatusModel(BaseModel):
    """Status models: camelCase, tolerant of fields a newer worker may add."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow")


DEFAULT_STORE_CLAIM = "golora-store"


class StoreRef(CamelModel):
    """The shared store volume: datasets and adapters live on it (DESIGN.md store layout)."""

    claim_name: str = Field(
        DEFAULT_STORE_CLAIM,
        max_length=253,
        pattern=K8S_NAME_PATTERN,
        description="PersistentVolumeClaim holding the golora store (datasets/ and adapters/). "
        "ReadWriteMany when training and serving run on different nodes.",
    )


class SecretKeyRef(CamelModel):
    """A key of a Secret in the same namespace, mounted as a file (never put on a command line)."""

    name: str = Field(..., max_length=253, pattern=K8S_NAME_PATTERN, description="Secret name.")
    key: str = Field("token", max_length=253, description="Key within the Secret.")


class Toleration(CamelModel):
    """A pod toleration (the subset of core/v1 Toleration golora passes through)."""

    key: str | None = Field(None, description="Taint key; empty with operator Exists matches all.")
    operator: Literal["Exists", "Equal"] = Field("Equal", description="Exists or Equal.")
    value: str | None = Field(None, description="Taint value for operator Equal.")
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(
        None, description="Taint effect to tolerate; empty tolerates all effects."
    )
    toleration_seconds: int | None = Field(None, description="For NoExecute: how long to stay bound.")


class Resources(CamelModel):
    """Container resource requests and limits, as Kubernetes quantities ("2", "8Gi")."""

    requests: dict[str, str] = Field(default_factory=dict, description="Resource requests.")
    limits: dict[str, str] = Field(default_factory=dict, description="Resource limits.")


ConditionStatus = Literal["True", "False", "Unknown"]

# metav1.Condition's validation (k8s.io/apimachinery/pkg/apis/meta/v1/types.go): a condition
# type is a qualified name (optional DNS-subdomain prefix and "/"), a reason CamelCase.
CONDITION_TYPE_PATTERN = (r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
                          r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$")
CONDITION_TYPE_MAX = 316
CONDITION_REASON_PATTERN = r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"
CONDITION_REASON_MAX = 1024
CONDITION_MESSAGE_MAX = 32768


class Condition(StatusModel):
    """One aspect of the object's state, declared exactly like metav1.Condition."""

    type: str = Field(..., max_length=CONDITION_TYPE_MAX, pattern=CONDITION_TYPE_PATTERN,
                      description="Condition type in CamelCase, e.g. Accepted, Ready, Succeeded.")
    status: ConditionStatus = Field(..., description="True, False or Unknown.")
    observed_generation: int | None = Field(
        None, ge=0, json_schema_extra={"format": "int64"},
        description="metadata.generation the condition was computed from: older than the object's "
        "generation means it is about an earlier spec.")
    last_transition_time: str = Field(
        ..., json_schema_extra={"format": "date-time"},
        description="When status last changed (RFC 3339).")
    reason: str = Field(..., min_length=1, max_length=CONDITION_REASON_MAX, pattern=CONDITION_REASON_PATTERN,
                        description="CamelCase reason for the condition's last transition, for programs.")
    message: str = Field(..., max_length=CONDITION_MESSAGE_MAX,
                         description="Human-readable details about the transition; may be empty.")


class Failure(StatusModel):
    """Why a worker gave up: a reason the operator maps to a condition, and a message for people."""

    reason: str = Field(..., description="CamelCase reason, e.g. SourceFetchFailed, OutOfMemory.")
    message: str = Field("", description="What went wrong and what to do about it.")


class CommonStatus(StatusModel):
    """Fields every golora kind reports; the operator owns them (workers never write these)."""

    phase: str | None = Field(None, description="Lifecycle phase shown by kubectl get.")
    message: str | None = Field(None, description="One-line summary of the current state.")
    observed_generation: int | None = Field(
        None, ge=0, json_schema_extra={"format": "int64"},
        description="metadata.generation the operator last acted on, written with every status write "
        "of the operator: older than metadata.generation means this status is about an earlier spec.")
    conditions: list[Condition] = Field(
        default_factory=list,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
        description="Current conditions, one per type. Ready=True means this object's job is done and "
        "usable (kubectl wait --for=condition=Ready); the other types say which step stands where.")


class PrinterColumn(BaseModel):
    """One additionalPrinterColumn of a CRD."""

    name: str
    type: Literal["string", "integer", "number", "boolean", "date"]
    json_path: str
    description: str = ""
    priority: int = 0


class KindInfo(BaseModel):
    """Everything the CRD generator needs to know about one kind besides its models."""

    kind: str
    plural: str
    singular: str
    short_names: list[str]
    spec: type[BaseModel]
    status: type[BaseModel]
    printer_columns: list[PrinterColumn]
    description: str

    @property
    def crd_name(self) -> str:
        return f"{self.plural}.{GROUP}"


def section(model: type[BaseModel], description: str) -> Any:
    """A spec sub-object that may be omitted: defaults to ``{}`` in the CRD so the
    apiserver fills in each child's default (visible in ``kubectl get -o yaml``)."""
    return Field(default_factory=model, description=description, json_schema_extra={"default": {}})
