"""The decisions the AdapterServing handlers used to make inline, as pure functions: which
AdapterServings an event concerns, which Deployments lose an adapter, refuse-or-plan before a
write, the patched targets' state and the status patch. Objects are passed in; no API client."""

from __future__ import annotations

import pytest

from golora import conditions as cond
from golora import naming
from golora.api.adapterserving import KIND, AdapterServingSpec
from golora.builders import serving as sv
from golora.builders.serving import events, facts, outcome, probe, targets

from .serving_helpers import QWEN, apply, deployment, entry

FACTS = sv.Facts("adapters/ns/go", 16, QWEN, "golora-store", "test", "checked", "TrainingSucceeded")


def with_entry(dep: dict, *entries: sv.AdapterEntry) -> dict:
    return apply(dep, sv.plan_deployment(dep, list(entries)).body)


def refs(*items: dict) -> dict:
    return {"ns": items}


def test_ref_is_what_the_index_keeps():
    spec = {"targets": {"selector": {"matchLabels": {"llm-d.ai/model": "m"}}}, "trainingRef": {"name": "lt"}}
    assert events.ref("as", spec) == {"name": "as", "deployments": (), "selector": {"llm-d.ai/model": "m"},
                                      "training": "lt"}
    assert events.ref("as", {"targets": {"deployments": ["a", "b"]}, "adapterPath": "x"}) == {
        "name": "as", "deployments": ("a", "b"), "selector": {}, "training": None}


def test_deployment_events_reach_those_targeting_it_and_those_with_an_entry():
    dep = deployment(name="vllm")
    dep["metadata"]["labels"] = {"llm-d.ai/model": "m"}
    by_name = events.ref("by-name", {"targets": {"deployments": ["vllm"]}})
    by_label = events.ref("by-label", {"targets": {"selector": {"matchLabels": {"llm-d.ai/model": "m"}}}})
    other = events.ref("other", {"targets": {"deployments": ["elsewhere"]}})
    index = refs(by_name, by_label, other)
    assert events.targeting(dep, index) == {"by-name", "by-label"}
    assert events.deployment_relevant(dep, index)
    assert not events.deployment_relevant(deployment(name="unrelated"), index)
    assert not events.deployment_relevant(dep, None)  # the index is not built yet
    # no longer targeted, but golora's entry is on it: its owner is reconciled (and removes it)
    carried = with_entry(deployment(name="unrelated"), entry("go", owner="gone-target"))
    assert events.deployment_relevant(carried, index)
    assert events.for_deployment(carried, index) == ["gone-target"]
    assert events.for_deployment(dep, index) == ["by-label", "by-name"]
    assert events.targeting(dep, {"other-ns": (by_name,)}) == set()


def test_training_events_and_what_of_a_training_matters():
    index = refs(events.ref("a", {"trainingRef": {"name": "lt"}}), events.ref("b", {"trainingRef": {"name": "x"}}),
                 events.ref("c", {"trainingRef": {"name": "lt"}}))
    lt = {"metadata": {"namespace": "ns", "name": "lt", "generation": 2},
          "status": {"phase": "Running", "progress": {"step": 1},
                     "conditions": [{"type": cond.QUALITY_GATE_PASSED, "status": "Unknown"}]}}
    assert events.for_training(lt, index) == ["a", "c"]
    assert events.for_training(lt, None) == []
    before = events.training_fingerprint(lt, "MODIFIED")
    lt["status"]["progress"] = {"step": 2}
    assert events.training_fingerprint(lt, "MODIFIED") == before  # progress only
    lt["status"]["result"] = {"adapterPath": "p", "attempt": 1, "finishedAt": "t1"}
    after = events.training_fingerprint(lt, "MODIFIED")
    assert after != before
    lt["status"]["result"]["finishedAt"] = "t2"  # a retrain to the same path
    assert events.training_fingerprint(lt, "MODIFIED") != after
    assert events.training_fingerprint(lt, "DELETED") != events.training_fingerprint(lt, "MODIFIED")


def test_a_validation_job_reaches_its_owner_once_finished():
    job = {"metadata": {"labels": naming.owner_labels(KIND.kind, "as", 1, 1)}, "status": {"active": 1}}
    assert events.finished_check_job_owner(job) is None
    job["status"] = {"conditions": [{"type": "Complete", "status": "True"}]}
    assert events.finished_check_job_owner(job) == "as"
    job["status"] = {"conditions": [{"type": "Failed", "status": "True", "reason": "DeadlineExceeded"}]}
    assert events.finished_check_job_owner(job) == "as"
    assert events.finished_check_job_owner({"metadata": {}, "status": job["status"]}) is None


@pytest.mark.parametrize("phase,again", [(outcome.ROLLING_OUT, True), (outcome.ROLLED_OUT, True),
                                         (outcome.SERVING, False), (cond.FAILED, False), (None, False)])
def test_the_timer_asks_again_while_not_serving(phase, again):
    assert events.needs_recheck(phase) is again


# --- targets ---------------------------------------------------------------------------------------

def test_who_else_is_on_the_targets_and_where_the_adapter_goes():
    mine = with_entry(deployment(name="a"), entry("go", owner="me"), entry("other", owner="them"))
    old = with_entry(deployment(name="b"), entry("go", owner="me"))
    bare = deployment(name="c")
    assert targets.other_owners([mine, bare], "me") == {"them"}
    assert targets.other_owners([], "me") == set()
    assert [d["metadata"]["name"] for d in targets.carrying([mine, old, bare], "me")] == ["a", "b"]
    assert [d["metadata"]["name"] for d in targets.untargeted([mine, old, bare], [mine], "me")] == ["b"]


def test_pod_selector():
    assert targets.pod_selector(deployment(name="vllm")) == "app=vllm"
    assert targets.label_selector({"b": "2", "a": "1"}) == "a=1,b=2"
    assert targets.pod_selector({"spec": {}}) == ""


# --- refuse or plan ----------------------------------------------------------------------------------

def test_plan_for_owner_refuses_what_fails_a_check_and_plans_the_rest():
    dep = deployment()
    problems, plan = sv.plan_for_owner(dep, "as", entry("go", owner="as", container="engine"), {"as"})
    assert plan is None and problems[0].reason == sv.CONTAINER_NOT_FOUND
    problems, plan = sv.plan_for_owner(dep, "as", entry("go", owner="as"), {"as"})
    assert problems == [] and plan.changed and [a.name for a in plan.record.adapters] == ["go"]
    served = apply(dep, plan.body)
    # removal is never refused; a stale owner's entry is dropped with it
    stale = with_entry(served, entry("go", owner="as"), entry("old", owner="deleted"))
    problems, plan = sv.plan_for_owner(stale, "as", None, {"as"})
    assert problems == [] and plan.changed and plan.record.adapters == []


def test_owned_fields_read_env_mounts_volumes_and_args():
    dep = deployment()
    dep["metadata"]["managedFields"] = [{"manager": naming.FIELD_MANAGER, "operation": "Apply", "fieldsV1": {
        "f:spec": {"f:template": {"f:spec": {
            "f:containers": {'k:{"name":"vllm"}': {"f:args": {}, "f:env": {'k:{"name":"A"}': {}, "k:{bad": {}},
                                                  "f:volumeMounts": {'k:{"mountPath":"/golora-store"}': {}}},
                             "k:{not json": {"f:args": {}}},
            "f:volumes": {'k:{"name":"golora-store"}': {}}}}}}}]
    owned = sv.owned_fields(dep)
    assert owned.args == {"vllm"} and owned.mounts == {("vllm", "/golora-store")}
    assert owned.volumes == {"golora-store"} and owned.env_of("vllm") == {"A"} and owned.env_of("other") == set()


# --- after the write -------------------------------------------------------------------------------

def test_patched_state_says_whether_to_probe():
    dep = deployment()
    state = outcome.patched([dep], "vllm")
    assert not state.rolled_out and state.risks and state.rows[0]["name"] == "vllm"  # no status yet; GPU + surge
    dep["status"] = {"observedGeneration": 1, "replicas": 1, "updatedReplicas": 1, "availableReplicas": 1}
    dep["spec"]["strategy"] = {"type": "Recreate"}
    state = outcome.patched([dep], "vllm")
    assert state.rolled_out and state.risks == []
    assert outcome.patched([], "vllm").rolled_out


def test_status_update_carries_the_outcome_accepted_and_ready():
    spec = AdapterServingSpec.model_validate({"servedName": "go", "trainingRef": {"name": "lt"},
                                              "targets": {"deployments": ["vllm"]}})
    result = outcome.refused(spec, "as", [deployment()], FACTS, "TargetNotFound", "not there", cond.PENDING)
    patch = outcome.status_update({}, result, 3)
    types = {c["type"]: c for c in patch["conditions"]}
    assert patch["phase"] == cond.PENDING and patch["observedGeneration"] == 3
    assert types[cond.ACCEPTED]["status"] == cond.TRUE and types[cond.READY]["status"] == cond.FALSE
    assert patch["targets"] == [{"name": "vllm"}] and patch["adapter"] == FACTS.status()
    assert outcome.status_update(patch, result, 3) is None  # nothing changed: no write


# --- facts and probes --------------------------------------------------------------------------------

def test_explicit_path_holds():
    assert facts.invalid_path("adapters/ok") is None
    for bad in ("/abs", "a/../../b", "/"):
        hold = facts.invalid_path(bad)
        assert (hold.reason, hold.status, hold.phase) == ("InvalidAdapter", cond.FALSE, cond.FAILED)
    gone = facts.serving_gone()
    assert (gone.reason, gone.status, gone.phase) == ("ValidatingAdapter", cond.UNKNOWN, cond.PENDING)


def test_pod_urls_and_ports():
    dep = deployment(args=[QWEN, "--port", "9000"])
    assert probe.port_of(dep, "vllm") == 9000
    assert probe.port_of(deployment(), "vllm") == 8000  # the container's port
    assert probe.port_of(deployment(), "missing") == 8000  # vLLM's default
    pod = {"metadata": {"name": "p"}, "status": {"podIP": "10.0.0.9", "conditions": [{"type": "Ready",
                                                                                        "status": "True"}]}}
    assert probe.is_ready(pod) and not probe.is_ready({"status": {"podIP": "ip"}})
    template = "http://{pod_ip}:{port}"
    assert probe.pod_url(template, "ns", "d", 9000, pod) == "http://10.0.0.9:9000"
    assert probe.urls(template, "ns", "d", 9000, [pod]) == ["http://10.0.0.9:9000"]
    # a Service template: runtime loading still talks to the pod's URL as formatted
    assert probe.pod_url("http://{deployment}.{namespace}:{port}", "ns", "d", 1, pod) == "http://d.ns:1"
