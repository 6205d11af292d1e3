"""builders.serving.plan and .record: the server-side-apply body and the annotation record."""

from __future__ import annotations

import copy

from golora import vllm
from golora.builders import serving as sv

from .serving_helpers import AWQ, apply, deployment, entry


def test_plan_body_is_narrow():
    dep = deployment(init=[{"name": "routing-proxy", "image": "sidecar", "restartPolicy": "Always"}],
                     extra=[{"name": "exporter", "image": "busybox"}])
    plan = sv.plan_deployment(dep, [entry()])
    body = plan.body
    assert body["metadata"] == {"name": "vllm", "namespace": "ns", "resourceVersion": "7",
                                "annotations": {sv.ANNOTATION: plan.record.dumps()}}
    pod = body["spec"]["template"]["spec"]
    assert set(body["spec"]) == {"template"} and set(body["spec"]["template"]) == {"spec"}
    assert set(pod) == {"containers", "volumes"}
    assert [c["name"] for c in pod["containers"]] == ["vllm"]  # never the sidecar or the proxy
    assert set(pod["containers"][0]) == {"name", "args", "volumeMounts"}
    assert pod["containers"][0]["volumeMounts"] == [{"name": sv.STORE_VOLUME, "mountPath": sv.STORE_MOUNT,
                                                     "readOnly": True}]
    assert pod["volumes"] == [{"name": sv.STORE_VOLUME,
                               "persistentVolumeClaim": {"claimName": "golora-store", "readOnly": True}}]


def test_no_change_no_body_then_exact_removal():
    dep = deployment(args=[AWQ, "--port", "8000"])
    original = copy.deepcopy(dep)
    dep = apply(dep, sv.plan_deployment(dep, [entry("a", 16), entry("b", 24)]).body)
    assert dep["metadata"]["generation"] == 2
    assert sv.plan_deployment(dep, [entry("a", 16), entry("b", 24)]).body is None  # no write
    assert sv.plan_deployment(dep, [entry("b", 24), entry("a", 16)]).body is None  # order does not matter

    # remove b: only its value goes, rank recomputed
    dep = apply(dep, sv.plan_deployment(dep, [entry("a", 16)]).body)
    inv = vllm.parse_invocation(dep["spec"]["template"]["spec"]["containers"][0]["command"],
                              dep["spec"]["template"]["spec"]["containers"][0]["args"])
    assert [m.name for m in inv.lora_modules] == ["a"] and inv.value(vllm.FLAG_MAX_LORA_RANK) == "16"

    # remove the last: the template is what the user wrote
    plan = sv.plan_deployment(dep, [])
    assert plan.record.adapters == []
    assert sv.ANNOTATION not in plan.body["metadata"].get("annotations", {})
    dep = apply(dep, plan.body)
    assert dep["spec"]["template"] == original["spec"]["template"]
    assert sv.ANNOTATION not in (dep["metadata"].get("annotations") or {})
    assert sv.plan_deployment(dep, []).body is None


def test_removal_keeps_what_the_user_had():
    mine = {"name": sv.STORE_VOLUME, "persistentVolumeClaim": {"claimName": "golora-store", "readOnly": True}}
    dep = deployment(args=[AWQ, "--enable-lora"], volumes=[mine])
    original = copy.deepcopy(dep)
    dep = apply(dep, sv.plan_deployment(dep, [entry()]).body)
    dep["metadata"]["managedFields"][0]["fieldsV1"]["f:spec"]["f:template"]["f:spec"].pop("f:volumes")  # co-owned
    dep = apply(dep, sv.plan_deployment(dep, []).body)
    pod = dep["spec"]["template"]["spec"]
    assert pod["volumes"] == [mine]
    assert pod["containers"][0]["args"] == original["spec"]["template"]["spec"]["containers"][0]["args"]


def test_container_without_args_gets_them_and_loses_them():
    dep = deployment(command=("vllm", "serve", AWQ), args=[])
    dep["spec"]["template"]["spec"]["containers"][0].pop("args")
    dep = apply(dep, sv.plan_deployment(dep, [entry()]).body)
    assert dep["spec"]["template"]["spec"]["containers"][0]["args"][0] == "--enable-lora"
    plan = sv.plan_deployment(dep, [])
    assert "args" not in plan.body["spec"]["template"]["spec"]["containers"][0]
    dep = apply(dep, plan.body)
    assert "args" not in dep["spec"]["template"]["spec"]["containers"][0]


def test_someone_reverting_the_args_is_repaired():
    dep = deployment()
    dep = apply(dep, sv.plan_deployment(dep, [entry()]).body)
    dep["spec"]["template"]["spec"]["containers"][0]["args"] = [AWQ]  # a GitOps sync
    plan = sv.plan_deployment(dep, [entry()])
    assert plan.changed and plan.body["spec"]["template"]["spec"]["containers"][0]["args"][1] == "--enable-lora"


def test_entry_for_a_missing_container_is_dropped_with_a_problem():
    plan = sv.plan_deployment(deployment(), [entry(container="engine")])
    assert plan.problems and plan.problems[0].reason == sv.CONTAINER_NOT_FOUND
    assert plan.body is None


def test_record_roundtrip_and_garbage():
    rec = sv.Record([entry(max_loras=3)], {"vllm": sv.ContainerRecord(True, {"--max-loras": ["3", None]},
                                                                     "appended", ["x=/x"])})
    dep = {"metadata": {"annotations": {sv.ANNOTATION: rec.dumps()}}}
    back = sv.read_record(dep)
    assert back.dumps() == rec.dumps() and back.adapters[0].max_loras == 3
    assert sv.read_record({"metadata": {"annotations": {sv.ANNOTATION: "{not json"}}}).adapters == []
    assert sv.read_record({"metadata": {}}).adapters == []


def test_entries_for_replaces_owner_and_drops_stale():
    rec = sv.Record([entry("a", owner="x"), entry("b", owner="y"), entry("c", owner="gone")])
    out = sv.entries_for(rec, "x", entry("a2", owner="x"), live_owners={"x", "y"})
    assert [(e.owner, e.name) for e in out] == [("x", "a2"), ("y", "b")]
    assert [e.name for e in sv.entries_for(rec, "x", None)] == ["b", "c"]


def test_owned_fields_from_managed_fields():
    dep = {"metadata": {"managedFields": [
        {"manager": "kubectl", "operation": "Update", "fieldsV1": {"f:spec": {"f:template": {"f:spec": {
            "f:containers": {'k:{"name":"vllm"}': {"f:args": {}}}}}}}},
        {"manager": "golora", "operation": "Apply", "fieldsV1": {
            "f:metadata": {"f:annotations": {f"f:{sv.ANNOTATION}": {}}},
            "f:spec": {"f:template": {"f:spec": {
                "f:containers": {'k:{"name":"vllm"}': {".": {}, "f:args": {}, "f:name": {},
                                                       "f:volumeMounts": {'k:{"mountPath":"/golora-store"}': {}}}},
                "f:volumes": {'k:{"name":"golora-store"}': {}}}}}}}]}}
    owned = sv.owned_fields(dep)
    assert owned == sv.Owned(frozenset({"vllm"}), frozenset({("vllm", sv.STORE_MOUNT)}),
                             frozenset({sv.STORE_VOLUME}), True)
    assert sv.owned_fields({"metadata": {}}) == sv.Owned()

