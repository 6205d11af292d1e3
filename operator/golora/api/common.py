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


class StoreRef(CamelModel):
    """The shared store volume: datasets and adapters live on it (DESIGN.md store layout)."""

    claim_name: str = Field(
        "golora-store",
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


class Condition(StatusModel):
    """A Kubernetes-style condition (metav1.Condition)."""

    type: str = Field(..., description="Condition type, e.g. Accepted, Ready, Succeeded.")
    status: ConditionStatus = Field(..., description="True, False or Unknown.")
    reason: str = Field("", description="CamelCase reason for the last transition.")
    message: str = Field("", description="Human-readable details.")
    last_transition_time: str | None = Field(
        None, description="When status last changed (RFC 3339)."
    )
    observed_generation: int | None = Field(
        None, description="metadata.generation the condition was computed from."
    )


class Failure(StatusModel):
    """Why a worker gave up: a reason the operator maps to a condition, and a message for people."""

    reason: str = Field(..., description="CamelCase reason, e.g. SourceFetchFailed, OutOfMemory.")
    message: str = Field("", description="What went wrong and what to do about it.")


class CommonStatus(StatusModel):
    """Fields every golora kind reports; the operator owns them (workers never write these)."""

    phase: str | None = Field(None, description="Lifecycle phase shown by kubectl get.")
    message: str | None = Field(None, description="One-line summary of the current state.")
    observed_generation: int | None = Field(
        None, description="metadata.generation the operator last acted on."
    )
    conditions: list[Condition] = Field(default_factory=list, description="Current conditions.")


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
