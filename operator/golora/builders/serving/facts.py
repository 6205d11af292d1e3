"""What is known about the adapter an AdapterServing names, and whether it may be served.

Pure: the handler reads the LoraTraining, the files or the validation Job's report and passes
them in. The policy lives here: a Failed training that failed only its quality gate is served
when ``requireQualityGate`` is false; the rank is the trained one (``result.rank``), else the
rank the spec asked for, else the API's default.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from ... import conditions as cond
from ... import vllm
from ...api.adapterserving import AdapterServingSpec
from ...api.common import DEFAULT_STORE_CLAIM
from ...api.loratraining import DEFAULT_LORA_RANK
from ...api.worker import REASON_QUALITY_GATE_FAILED
from ..status import JobState
from .record import STORE_MOUNT


@dataclass(frozen=True)
class Facts:
    """The adapter may be served: where it is, its rank and base, and how golora knows."""

    path: str
    rank: int
    base_model: str | None
    claim: str
    source: str
    verified: str
    reason: str

    @property
    def mount_path(self) -> str:
        return f"{STORE_MOUNT}/{self.path.strip('/')}"

    def status(self) -> dict[str, Any]:
        """``status.adapter``."""
        return {"path": self.path, "rank": self.rank, "baseModel": self.base_model, "source": self.source,
                "verified": self.verified, "loraModule": self.mount_path}


@dataclass(frozen=True)
class Hold:
    """The adapter cannot be served (yet): AdapterValidated ``status`` with reason/message."""

    status: str
    reason: str
    message: str
    phase: str


def relative_path_problem(path: str) -> str | None:
    p = PurePosixPath(path)
    if p.is_absolute() or ".." in p.parts or not path.strip("/"):
        return f"adapter path {path!r} is not a directory relative to the store"
    return None


def invalid_path(path: str) -> Hold | None:
    """An explicit ``adapterPath`` that is not a directory relative to the store."""
    problem = relative_path_problem(path)
    return Hold(cond.FALSE, "InvalidAdapter", problem, cond.FAILED) if problem else None


def serving_gone() -> Hold:
    """The AdapterServing went away while its validation Job was to be read."""
    return Hold(cond.UNKNOWN, "ValidatingAdapter", "AdapterServing not found", cond.PENDING)


def from_training(ns: str, spec: AdapterServingSpec, name: str, training: dict[str, Any] | None) -> Facts | Hold:
    """The adapter of LoraTraining ``name`` (``training``: the object as read, None if absent)."""
    if training is None:
        return Hold(cond.UNKNOWN, "TrainingNotFound", f"LoraTraining {name} not found in namespace {ns}; waiting for it",
                    cond.PENDING)
    status = training.get("status") or {}
    phase = status.get("phase")
    result = status.get("result") or {}
    gate = cond.get_condition(status.get("conditions"), cond.QUALITY_GATE_PASSED)
    gate_ok = bool(gate and gate.get("status") == cond.TRUE)
    gate_failed = bool(gate and gate.get("status") == cond.FALSE) or \
        (result.get("failure") or {}).get("reason") == REASON_QUALITY_GATE_FAILED
    if phase == cond.FAILED and not gate_failed:
        return Hold(cond.FALSE, "TrainingFailed", f"LoraTraining {name} failed: {status.get('message') or 'no message'}",
                    cond.FAILED)
    if phase not in (cond.SUCCEEDED, cond.FAILED):
        return Hold(cond.UNKNOWN, "TrainingNotReady",
                    f"waiting for LoraTraining {name} to succeed (phase {phase or 'not set'})", cond.PENDING)
    if spec.require_quality_gate and not gate_ok:
        gate_result = result.get("qualityGate") or {}
        detail = (gate or {}).get("message") or gate_result.get("message") or "no QualityGatePassed=True condition"
        reason = (gate or {}).get("reason") or gate_result.get("reason")
        detail = f"{reason}: {detail}" if reason and not detail.startswith(reason) else detail
        return Hold(cond.FALSE, "QualityGateNotPassed",
                    f"LoraTraining {name} did not pass its quality gate ({detail}); golora serves only adapters "
                    f"that passed (requireQualityGate: false serves it anyway)", cond.FAILED)
    path = result.get("adapterPath")
    if not path:
        return Hold(cond.FALSE, "NoAdapter", f"LoraTraining {name} succeeded but reports no result.adapterPath",
                    cond.FAILED)
    problem = relative_path_problem(path)
    if problem:
        return Hold(cond.FALSE, "InvalidAdapter", f"LoraTraining {name}: {problem}", cond.FAILED)
    lt_spec = training.get("spec") or {}
    rank = result.get("rank") or (lt_spec.get("lora") or {}).get("r") or DEFAULT_LORA_RANK
    base_ref = lt_spec.get("baseModel") or {}
    base = result.get("baseModel") or base_ref.get("name") or base_ref.get("path")
    claim = (lt_spec.get("storage") or {}).get("claimName") or DEFAULT_STORE_CLAIM
    if claim != spec.storage.claim_name:
        return Hold(cond.FALSE, "StorageMismatch",
                    f"LoraTraining {name} wrote its adapter to claim {claim!r}, but spec.storage.claimName is "
                    f"{spec.storage.claim_name!r}", cond.FAILED)
    verified = ("the trainer validated the adapter files for vLLM (rank, modules_to_save, DoRA, bias, "
                "safetensors present) when it saved them; the operator did not re-read them")
    if not gate_ok:
        verified += "; the quality gate did NOT pass (served because requireQualityGate is false)"
    rank_source = "result.rank" if result.get("rank") else "spec.lora.r"
    return Facts(path, int(rank), base, claim, f"LoraTraining {name} status.result ({rank_source})", verified,
                 "TrainingSucceeded")


def from_files(path: str, claim: str, check: vllm.AdapterCheck) -> Facts | Hold:
    """An explicit ``adapterPath`` the operator read itself (``check``: the validator's verdict)."""
    if not check.ok or check.rank is None:
        return Hold(cond.FALSE, "InvalidAdapter", f"adapterPath {path}: {check.message}", cond.FAILED)
    return Facts(path, check.rank, check.base_model, claim, f"files at {path} on claim {claim}",
                 "the operator read adapter_config.json (rank, modules_to_save, DoRA, bias, base model) and checked "
                 "adapter_model.safetensors exists; tensor names were not inspected", "FilesValidated")


def unverifiable(path: str, claim: str) -> Hold:
    return Hold(cond.FALSE, "AdapterUnverifiable", f"adapterPath {path} on claim {claim} can only be "
                "verified by a validation Job of a named AdapterServing", cond.FAILED)


def from_check_report(report: dict[str, Any], path: str, claim: str, generation: int | None,
                      job_name: str) -> Facts | Hold | None:
    """``status.adapterCheck`` as the validation Job reported it; None when it is not about this
    path, claim and generation (the Job has to run)."""
    if (report.get("path"), report.get("claim"), report.get("generation")) != (path, claim, generation):
        return None
    if not report.get("ok") or not report.get("rank"):
        problems = "; ".join(report.get("problems") or []) or "no rank in adapter_config.json"
        return Hold(cond.FALSE, "InvalidAdapter", f"adapterPath {path} on claim {claim}: {problems}", cond.FAILED)
    return Facts(path, int(report["rank"]), report.get("baseModel"), claim,
                 f"validation Job {job_name} (files at {path} on claim {claim})",
                 "a validation Job ran the trainer's vLLM validator on the files (rank, modules_to_save, DoRA, "
                 "bias, base model, safetensors present)", "FilesValidated")


def checking(job_name: str, path: str, claim: str, job: JobState) -> Hold:
    """The validation Job has not reported yet: wait, or fail if it died without a report."""
    if job.phase == cond.FAILED:
        return Hold(cond.FALSE, "ValidationFailed",
                    f"validation Job {job_name} failed without a result: {job.message}", cond.FAILED)
    return Hold(cond.UNKNOWN, "ValidatingAdapter",
                f"validation Job {job_name} is checking adapterPath {path} on claim {claim}", cond.PENDING)
