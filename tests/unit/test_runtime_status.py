"""builders.runtime_status: a Runtime AdapterServing's status from what one reconcile saw (the
resolver Job, each target before and after golora's write, what the pods answered). Pure: the
objects are passed in, nothing faked."""

from __future__ import annotations

import copy

from golora import conditions as cond
from golora.api.adapterserving import AdapterServingSpec
from golora.builders import runtime as rt
from golora.builders import runtime_load as rl
from golora.builders import runtime_status as rs
from golora.builders import serving as sv
from golora.builders.serving import outcome
from golora.builders.status import JobState

from .serving_helpers import QWEN, deployment, entry
from .serving_helpers import apply_env as apply

FACTS = sv.Facts("adapters/ns/go", 16, QWEN, "golora-store", "test", "checked", "TrainingSucceeded")
VALIDATED = outcome.validated(FACTS)


def spec(**kw) -> AdapterServingSpec:
    body = {"servedName": "go-adapter", "trainingRef": {"name": "lt"}, "targets": {"deployments": ["vllm"]},
            "loading": "Runtime"}
    body.update(kw)
    return AdapterServingSpec.model_validate(body)


def rentry(owner="as") -> sv.AdapterEntry:
    return entry("go-adapter", owner=owner, loading=rt.RUNTIME)


def by_type(result: outcome.Outcome) -> dict[str, tuple[str, str, str]]:
    return {t: (s, r, m) for t, s, r, m in result.conditions}


def rolled_out(dep: dict) -> dict:
    dep = copy.deepcopy(dep)
    dep["status"] = {"observedGeneration": dep["metadata"]["generation"], "replicas": 1, "updatedReplicas": 1,
                     "availableReplicas": 1}
    return dep


def test_conditions_from_what_the_pods_answered():
    ok = rl.PodResult("p1", "u1", "10.0.0.1", ["go-adapter"], loaded=True)
    refused = rl.PodResult("p2", "u2", "10.0.0.2", error={"code": 500, "message": "LoRA rank 32 is greater than "
                                                         "max_lora_rank 16."})
    phase, _, conds = rs.conditions_for("go-adapter", [rs.TargetResult("vllm", True, True, "rolled out", [ok])])
    assert phase == "Serving" and conds[1][:3] == ("Serving", "True", rs.LOADED)
    phase, message, conds = rs.conditions_for("go-adapter", [rs.TargetResult("vllm", True, True, "", [ok, refused])])
    assert phase == "Failed" and conds[1][2] == rs.LOAD_REFUSED
    assert "LoRA rank 32 is greater than max_lora_rank 16." in message and "vllm/p2: HTTP 500" in message
    phase, _, conds = rs.conditions_for("x", [rs.TargetResult("vllm", False, False, "vllm: 0 of 1 updated")])
    assert phase == "RollingOut" and conds[0][1] == "False"
    phase, _, conds = rs.conditions_for("x", [rs.TargetResult("vllm", True, True, "", [])])
    assert conds[1][2] == "NoReadyPods"
    down = rl.PodResult("p3", "u3", "ip", unreachable="GET failed")
    assert rs.conditions_for("x", [rs.TargetResult("vllm", True, True, "", [ok, down])])[2][1][2] == "ProbeFailed"
    phase, _, conds = rs.conditions_for("x", [rs.TargetResult("vllm", True, True, "", [ok, rl.PodResult("p4", "u4",
                                                                                                       "ip")])])
    assert phase == "RolledOut" and conds[1][:3] == ("Serving", "False", "NotLoaded")


def test_the_version_follows_the_training_or_the_generation():
    lt = {"metadata": {"generation": 2}, "status": {"result": {"attempt": 1, "finishedAt": "t1"}}}
    first = rs.adapter_version(spec(), "p", 5, lt)
    assert first == rt.version_of("p", 2, 1, "t1")
    assert rs.adapter_version(spec(), "p", 6, lt) == first  # the AdapterServing's generation does not count
    lt["status"]["result"]["finishedAt"] = "t2"  # retrained into the same path
    assert rs.adapter_version(spec(), "p", 5, lt) != first
    assert rs.adapter_version(spec(), "p", 5, None) == rt.version_of("p", None, None, None)  # gone meanwhile
    explicit = spec(trainingRef=None, adapterPath="adapters/manual")
    assert rs.adapter_version(explicit, "p", 5, lt) == rt.version_of("p", 5)


def test_before_any_write():
    got = rs.no_model(spec(), "as", [deployment()], VALIDATED, FACTS.status())
    assert got.phase == cond.FAILED and by_type(got)[cond.PATCHED][:2] == (cond.FALSE, sv.SERVED_MODEL_UNKNOWN)
    failed = rs.resolver_wait(JobState(cond.FAILED, "BackoffLimitExceeded", "no space"), spec(), [deployment()],
                              VALIDATED, FACTS.status())
    assert failed.phase == cond.FAILED and by_type(failed)[cond.PATCHED][1] == rs.RESOLVER_FAILED
    assert failed.targets == [{"name": "vllm", "loading": rt.RUNTIME}] and "no space" in failed.message
    pending = rs.resolver_wait(JobState(cond.RUNNING, "JobRunning", "running"), spec(), [deployment()], VALIDATED,
                               FACTS.status())
    assert pending.phase == cond.PENDING and by_type(pending)[cond.PATCHED][:2] == (cond.UNKNOWN, rs.PREPARING_RESOLVER)
    assert rs.resolver_wait(JobState(cond.SUCCEEDED, "JobComplete", ""), spec(), [], VALIDATED, {}) is None
    problems = [sv.Problem(sv.DUPLICATE_SERVED_NAME, "taken"), sv.Problem(sv.STORAGE_CONFLICT, "other claim")]
    lost = rs.refused_on_write(spec(), "as", [deployment()], VALIDATED, FACTS.status(), problems)
    assert by_type(lost)[cond.PATCHED][:2] == (cond.FALSE, sv.DUPLICATE_SERVED_NAME)
    assert lost.message == "taken; other claim"


def test_a_restart_is_announced_only_when_the_template_changes():
    dep = deployment()
    notice = rs.restart_notice("ns", dep, "as", rentry(), {"as"}, "vllm")
    assert notice.startswith("Deployment vllm is being prepared for runtime loading (--enable-lora, ")
    prepared = apply(dep, sv.plan_deployment(dep, [rentry()]).body)
    assert rs.restart_notice("ns", prepared, "as", rentry(), {"as"}, "vllm") is None
    # a second adapter on a prepared Deployment: only the annotation changes, no restart
    assert rs.restart_notice("ns", prepared, "other", rentry("other"), {"as", "other"}, "vllm") is None
    patch = rs.announce_patch({}, 4, notice)
    assert patch["phase"] == sv.ROLLING_OUT and patch["observedGeneration"] == 4
    (patched,) = patch["conditions"]
    assert (patched["type"], patched["status"], patched["reason"]) == (cond.PATCHED, cond.UNKNOWN, rs.PREPARING)


def test_after_the_write_targets_rows_and_the_outcome():
    dep = deployment()
    before = rs.target_result("ns", dep, "vllm")
    assert (before.prepared, before.rolled_out, before.ready_to_load) == (False, False, False)
    prepared = rolled_out(apply(dep, sv.plan_deployment(dep, [rentry()]).body))
    result = rs.target_result("ns", prepared, "vllm")
    assert result.prepared and result.rolled_out and result.ready_to_load
    result.pods = [rl.PodResult("p", "u", "ip", ["go-adapter"], loaded=True, path="/x", loaded_at="t")]
    row = rs.target_row(prepared, "vllm", result)
    assert (row["served"], row["loading"], row["prepared"]) == (True, rt.RUNTIME, True)
    assert row["pods"] == [result.pods[0].row()] and row["adapters"] == ["go-adapter"]
    assert rs.target_row(dep, "vllm", before)["served"] is None  # no pods asked
    got = rs.prepared(spec(), [dep], [prepared], VALIDATED, FACTS.status(), [result])
    conds = by_type(got)
    assert got.phase == sv.SERVING and conds[cond.SERVING][1] == rs.LOADED
    assert conds[cond.PATCHED][:2] == (cond.TRUE, rs.PREPARED) and conds[cond.GPU_SURGE_RISK][0] == cond.TRUE
    assert got.targets == [row] and got.target_names == "vllm" and got.adapter == FACTS.status()
