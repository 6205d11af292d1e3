"""builders.serving.facts: what is known about the adapter and whether it may be served (the
quality-gate policy, the rank fallback). Pure: the LoraTraining is passed in, nothing faked."""

from __future__ import annotations

import json

import pytest

from golora import vllm
from golora.api.adapterserving import AdapterServingSpec
from golora.builders import serving as sv
from golora.builders.serving import facts
from golora.builders.status import JobState

from .serving_helpers import QWEN


def spec(**kw) -> AdapterServingSpec:
    body = {"servedName": "go-adapter", "trainingRef": {"name": "lt"}, "targets": {"deployments": ["vllm"]}}
    body.update(kw)
    return AdapterServingSpec.model_validate(body)


def training(phase="Succeeded", gate="True", result=None, lt_spec=None) -> dict:
    conds = [{"type": "QualityGatePassed", "status": gate, "reason": "Passed" if gate == "True" else "DegenerateOutput",
              "message": "ok" if gate == "True" else "only whitespace"}] if gate else []
    return {"metadata": {"name": "lt"}, "spec": lt_spec or {"baseModel": {"name": QWEN}, "lora": {"r": 32}},
            "status": {"phase": phase, "message": "m", "conditions": conds,
                       "result": {"adapterPath": "adapters/ns/lt", **(result or {})}}}


@pytest.mark.parametrize("obj,require,reason,status", [
    (None, True, "TrainingNotFound", "Unknown"),
    (training(phase="Running", gate=None), True, "TrainingNotReady", "Unknown"),
    (training(phase="Failed", gate=None), True, "TrainingFailed", "False"),
    (training(phase="Failed", gate="False"), True, "QualityGateNotPassed", "False"),
    (training(gate="Unknown"), True, "QualityGateNotPassed", "False"),
    (training(result={"adapterPath": "/abs/path"}), True, "InvalidAdapter", "False"),
    (training(result={"adapterPath": "a/../../etc"}), True, "InvalidAdapter", "False"),
    (training(result={"adapterPath": ""}), True, "NoAdapter", "False"),
    (training(lt_spec={"baseModel": {"name": QWEN}, "storage": {"claimName": "other"}}), True, "StorageMismatch",
     "False"),
])
def test_from_training_holds(obj, require, reason, status):
    got = facts.from_training("ns", spec(requireQualityGate=require), "lt", obj)
    assert isinstance(got, facts.Hold) and (got.reason, got.status) == (reason, status), got


def test_gate_failure_detail_names_the_gates_reason():
    got = facts.from_training("ns", spec(), "lt", training(phase="Failed", gate="False"))
    assert "DegenerateOutput: only whitespace" in got.message and got.phase == "Failed"


def test_from_training_rank_comes_from_the_result_then_the_spec_then_the_api_default():
    got = facts.from_training("ns", spec(), "lt", training())
    assert (got.path, got.rank, got.base_model, got.claim) == ("adapters/ns/lt", 32, QWEN, "golora-store")
    assert "spec.lora.r" in got.source  # no result.rank: the rank it was trained with
    got = facts.from_training("ns", spec(), "lt", training(result={"rank": 8, "baseModel": QWEN}))
    assert got.rank == 8 and "result.rank" in got.source
    got = facts.from_training("ns", spec(), "lt", training(lt_spec={"baseModel": {"name": QWEN}}))
    from golora.api.loratraining import LoraSpec

    assert got.rank == LoraSpec().r  # the spec left r out: the CRD's default is what it trained with


def test_a_failed_gate_is_served_only_when_not_required():
    got = facts.from_training("ns", spec(requireQualityGate=False), "lt", training(phase="Failed", gate="False"))
    assert isinstance(got, facts.Facts) and "did NOT pass" in got.verified
    failed_otherwise = training(phase="Failed", gate=None)
    assert isinstance(facts.from_training("ns", spec(requireQualityGate=False), "lt", failed_otherwise), facts.Hold)


def test_from_files_reports_the_validator(tmp_path):
    d = tmp_path / "a"
    d.mkdir()
    (d / "adapter_config.json").write_text(json.dumps({"r": 24, "target_modules": ["q_proj"], "bias": "none",
                                                       "use_dora": True, "base_model_name_or_path": QWEN}))
    (d / "adapter_model.safetensors").write_bytes(b"\0")
    got = facts.from_files("a", "store", vllm.validate_adapter_dir(d))
    assert got.reason == "InvalidAdapter" and "DoRA" in got.message
    (d / "adapter_config.json").write_text(json.dumps({"r": 24, "target_modules": ["q_proj"], "bias": "none",
                                                       "base_model_name_or_path": QWEN}))
    got = facts.from_files("a", "store", vllm.validate_adapter_dir(d))
    assert (got.rank, got.base_model, got.reason, got.claim) == (24, QWEN, "FilesValidated", "store")
    assert got.status()["loraModule"] == f"{sv.STORE_MOUNT}/a"


def test_check_report_counts_only_for_this_path_claim_and_generation():
    report = {"path": "a", "claim": "store", "generation": 3, "ok": True, "rank": 8, "baseModel": QWEN}
    got = facts.from_check_report(report, "a", "store", 3, "job")
    assert isinstance(got, facts.Facts) and got.rank == 8 and "job" in got.source
    assert facts.from_check_report(report, "a", "store", 4, "job") is None  # an older spec's report
    assert facts.from_check_report(report, "b", "store", 3, "job") is None
    bad = facts.from_check_report({**report, "ok": False, "problems": ["no weights"]}, "a", "store", 3, "job")
    assert bad.reason == "InvalidAdapter" and "no weights" in bad.message


def test_checking_waits_until_the_job_fails():
    assert facts.checking("job", "a", "s", JobState("Running", "JobRunning", "")).reason == "ValidatingAdapter"
    failed = facts.checking("job", "a", "s", JobState("Failed", "BackoffLimitExceeded", "pod died"))
    assert (failed.reason, failed.status, failed.phase) == ("ValidationFailed", "False", "Failed")


def test_explicit_adapter_path_through_the_handler(monkeypatch, tmp_path):
    """The handler reads the files where GOLORA_CLAIMS_ROOT says (no API call on this path)."""
    from golora.handlers import adapterserving as h

    explicit = spec(trainingRef=None, adapterPath="adapters/manual")
    monkeypatch.delenv("GOLORA_CLAIMS_ROOT", raising=False)
    got = h.resolve_adapter("ns", explicit)
    assert got.reason == "AdapterUnverifiable" and "validation Job" in got.message
    monkeypatch.setenv("GOLORA_CLAIMS_ROOT", str(tmp_path))
    assert h.resolve_adapter("ns", explicit).reason == "InvalidAdapter"  # not there
    d = tmp_path / "ns" / "golora-store" / "adapters" / "manual"
    d.mkdir(parents=True)
    (d / "adapter_config.json").write_text(json.dumps({"r": 24, "target_modules": ["q_proj"], "bias": "none",
                                                       "base_model_name_or_path": QWEN}))
    (d / "adapter_model.safetensors").write_bytes(b"\0")
    got = h.resolve_adapter("ns", explicit)
    assert (got.rank, got.base_model, got.reason) == (24, QWEN, "FilesValidated")
