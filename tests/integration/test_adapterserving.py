"""AdapterServing against the real apiserver: Deployments patched by server-side apply
(a plain vLLM one and an llm-d prefill/decode pair), merged adapters, exact removal,
refusals that write nothing, no write when nothing changes, TargetNotFound, a changed
training, rollout status and the /v1/models probe (through the named stand-in server)."""

from __future__ import annotations

import copy
import json
import time

import kubernetes
import pytest

from golora.builders import serving as sv
from golora.devcluster.fake_vllm import FakeVLLM
from tests.conftest import wait_for

pytestmark = pytest.mark.cluster

GROUP, VERSION = "golora.dev", "v1alpha1"
QWEN = "Qwen/Qwen2.5-7B-Instruct"
QWEN_AWQ = "Qwen/Qwen2.5-7B-Instruct-AWQ"
KV = '{"kv_connector":"NixlConnector","kv_role":"kv_both"}'


# --- helpers ----------------------------------------------------------------------------------

def apps(api):
    return kubernetes.client.AppsV1Api(api)


def custom(api):
    return kubernetes.client.CustomObjectsApi(api)


def dep_dict(api, ns, name) -> dict:
    return api.sanitize_for_serialization(apps(api).read_namespaced_deployment(name, ns))


def container(dep: dict, name: str = "vllm") -> dict:
    return next(c for c in dep["spec"]["template"]["spec"]["containers"] if c["name"] == name)


def vllm_deployment(name, *, command=None, args=None, labels=None, port=8000, init_containers=None,
                    extra_containers=None, strategy=None, gpu=True) -> dict:
    labels = labels or {"app": name}
    engine = {"name": "vllm", "image": "vllm/vllm-openai:v0.21.0", "ports": [{"containerPort": port}]}
    if command is not None:
        engine["command"] = command
    if args is not None:
        engine["args"] = args
    if gpu:
        engine["resources"] = {"limits": {"nvidia.com/gpu": "1"}}
    pod = {"containers": [engine, *(extra_containers or [])]}
    if init_containers:
        pod["initContainers"] = init_containers
    spec = {"replicas": 1, "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": pod}}
    if strategy:
        spec["strategy"] = strategy
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "labels": labels}, "spec": spec}


def llmd_pair() -> list[dict]:
    """The llm-d modelservice chart's shape: decode with a routing-proxy sidecar (init container
    with restartPolicy Always) and vLLM on 8200; prefill with vLLM on 8000."""
    def role_labels(role):
        return {"llm-d.ai/inference-serving": "true", "llm-d.ai/model": "qwen2-5-7b-instruct-awq",
                "llm-d.ai/role": role}

    proxy = {"name": "routing-proxy", "image": "ghcr.io/llm-d/llm-d-routing-sidecar:v0.3.0", "restartPolicy": "Always",
             "args": ["--port=8000", "--vllm-port=8200", "--connector=nixlv2"], "ports": [{"containerPort": 8000}]}
    decode = vllm_deployment("ms-decode", command=["vllm", "serve"], port=8200, labels=role_labels("decode"),
                             args=[QWEN_AWQ, "--port", "8200", "--served-model-name", QWEN_AWQ,
                                   "--kv-transfer-config", KV],
                             init_containers=[proxy], strategy={"type": "Recreate"})
    prefill = vllm_deployment("ms-prefill", command=["vllm", "serve"], port=8000, labels=role_labels("prefill"),
                              args=[QWEN_AWQ, "--port", "8000", "--served-model-name", QWEN_AWQ,
                                    "--kv-transfer-config", KV],
                              strategy={"type": "Recreate"})
    return [decode, prefill]


def create_deployment(api, ns, body) -> dict:
    return api.sanitize_for_serialization(apps(api).create_namespaced_deployment(ns, body))


def succeeded_training(api, ns, name, *, rank=16, base=QWEN, path=None, gate=True) -> None:
    """A LoraTraining that 'succeeded': created, then its status set through the status
    subresource (what the operator and the trainer would have written). Its dataset does
    not exist, so the training handler only writes 'waiting' once and never runs a Job."""
    custom(api).create_namespaced_custom_object(GROUP, VERSION, ns, "loratrainings", {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "LoraTraining", "metadata": {"name": name},
        "spec": {"baseModel": {"name": base}, "datasetRef": {"name": f"{name}-absent"}, "lora": {"r": rank}}})

    def handled():
        status = custom(api).get_namespaced_custom_object(GROUP, VERSION, ns, "loratrainings", name).get("status") or {}
        return status.get("phase") and any(x["type"] == "DatasetReady" for x in status.get("conditions") or [])

    wait_for(handled, what=f"LoraTraining {name} handled")
    set_training_status(api, ns, name, rank=rank, base=base, path=path or f"adapters/{ns}/{name}", gate=gate)


def set_training_status(api, ns, name, *, rank, base, path, gate=True) -> None:
    gate_cond = {"type": "QualityGatePassed", "status": "True" if gate else "False",
                 "reason": "Passed" if gate else "DegenerateOutput",
                 "message": "all checks passed" if gate else "92% of the generated text is whitespace",
                 "lastTransitionTime": "2026-01-01T00:00:00Z"}
    status = {
        "phase": "Succeeded" if gate else "Failed",
        "message": "adapter ready" if gate else "QualityGateFailed",
        "conditions": [
            {"type": "Accepted", "status": "True", "reason": "Valid", "lastTransitionTime": "2026-01-01T00:00:00Z"},
            {"type": "Succeeded", "status": "True" if gate else "False", "reason": "AdapterReady" if gate else
             "QualityGateFailed", "lastTransitionTime": "2026-01-01T00:00:00Z"},
            gate_cond],
        "result": {"adapterPath": path, "rank": rank, "baseModel": base,
                   "qualityGate": {"passed": gate, "reason": gate_cond["reason"], "message": gate_cond["message"]}},
    }
    custom(api).patch_namespaced_custom_object_status(GROUP, VERSION, ns, "loratrainings", name, {"status": status})


def create_serving(api, ns, name, served_name, *, training=None, deployments=None, selector=None, **spec) -> None:
    targets = {"deployments": deployments} if deployments else {"selector": {"matchLabels": selector}}
    body = {"servedName": served_name, "targets": targets, **spec}
    if training:
        body["trainingRef"] = {"name": training}
    custom(api).create_namespaced_custom_object(GROUP, VERSION, ns, "adapterservings", {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "AdapterServing", "metadata": {"name": name}, "spec": body})


def serving(api, ns, name) -> dict:
    return custom(api).get_namespaced_custom_object(GROUP, VERSION, ns, "adapterservings", name)


def cond(obj, type_) -> dict:
    return next((x for x in (obj.get("status") or {}).get("conditions") or [] if x["type"] == type_), {})


def wait_phase(api, ns, name, *phases, timeout=20) -> dict:
    return wait_for(lambda: (o := serving(api, ns, name)) and (o.get("status") or {}).get("phase") in phases and o,
                    timeout=timeout, what=f"AdapterServing {name} in phase {phases}")


def wait_cond(api, ns, name, type_, status, reason=None, timeout=20) -> dict:
    def ok():
        o = serving(api, ns, name)
        x = cond(o, type_)
        return x.get("status") == status and (reason is None or x.get("reason") == reason) and o
    return wait_for(ok, timeout=timeout, what=f"{name}: {type_}={status} {reason or ''}")


def set_rolled_out(api, ns, name) -> None:
    """There is no Deployment controller: write the status it would write after a rollout."""
    dep = apps(api).read_namespaced_deployment(name, ns)
    n = dep.spec.replicas
    apps(api).patch_namespaced_deployment_status(name, ns, {"status": {
        "observedGeneration": dep.metadata.generation, "replicas": n, "updatedReplicas": n,
        "readyReplicas": n, "availableReplicas": n}})


def golora_tail(dep: dict) -> list[str]:
    """The vllm container's args from --enable-lora on (what golora appended)."""
    args = container(dep).get("args") or []
    return args[args.index("--enable-lora"):] if "--enable-lora" in args else []


def lora_modules(dep: dict) -> list[dict | str]:
    inv = sv.parse_invocation(container(dep).get("command"), container(dep).get("args"))
    return [json.loads(m.raw) if m.form == "json" else m.raw for m in inv.lora_modules]


def nudge(api, ns, name) -> None:
    """Make the operator reconcile the AdapterServing again (a metadata change runs on.update)."""
    custom(api).patch_namespaced_custom_object(GROUP, VERSION, ns, "adapterservings", name,
                                               {"metadata": {"labels": {"nudge": str(time.monotonic_ns())}}})


# --- tests --------------------------------------------------------------------------------------

def test_llmd_pair_and_plain_deployment_patched_then_served(api, namespace, operator, monkeypatch, cluster):
    ns = namespace
    decode, prefill = llmd_pair()
    sidecar = {"name": "metrics-exporter", "image": "busybox", "args": ["--listen", ":9400"]}
    plain = vllm_deployment(
        "vllm", command=["python3", "-m", "vllm.entrypoints.openai.api_server"], gpu=True,
        args=[f"--model={QWEN_AWQ}", "--max_lora_rank", "8", "--lora-modules", "sql=/adapters/sql", "--enforce-eager"],
        extra_containers=[sidecar])
    before = {d["metadata"]["name"]: create_deployment(api, ns, d) for d in (decode, prefill, plain)}
    succeeded_training(api, ns, "go-adapter", rank=16)

    with FakeVLLM(api) as fake:
        monkeypatch.setenv("GOLORA_MODELS_URL", fake.template)
        create_serving(api, ns, "go-adapter", "go-adapter", training="go-adapter",
                       selector={"llm-d.ai/model": "qwen2-5-7b-instruct-awq"})
        create_serving(api, ns, "go-plain", "go-plain", training="go-adapter", deployments=["vllm"])
        obj = wait_phase(api, ns, "go-adapter", "RollingOut")
        wait_phase(api, ns, "go-plain", "RollingOut")

        d, p, v = (dep_dict(api, ns, n) for n in ("ms-decode", "ms-prefill", "vllm"))
        # llm-d: both roles patched identically; the user's args come first, untouched.
        assert golora_tail(d) == golora_tail(p) != []
        path = f"{sv.STORE_MOUNT}/adapters/{ns}/go-adapter"
        assert golora_tail(d) == ["--enable-lora", "--max-lora-rank", "16", "--max-loras", "1", "--lora-modules",
                                  json.dumps({"name": "go-adapter", "path": path, "base_model_name": QWEN_AWQ},
                                             separators=(",", ":"))]
        for name, dep in (("ms-decode", d), ("ms-prefill", p)):
            old = container(before[name])
            assert container(dep)["args"][:len(old["args"])] == old["args"]
            assert container(dep)["command"] == old["command"]
            assert {"name": sv.STORE_VOLUME, "mountPath": sv.STORE_MOUNT, "readOnly": True} in container(dep)["volumeMounts"]
            assert {"name": sv.STORE_VOLUME, "persistentVolumeClaim": {"claimName": "golora-store", "readOnly": True}} \
                in dep["spec"]["template"]["spec"]["volumes"]
            assert dep["metadata"]["generation"] == 2
        # the routing-proxy (init container) is untouched
        assert d["spec"]["template"]["spec"]["initContainers"] == before["ms-decode"]["spec"]["template"]["spec"]["initContainers"]

        # plain: python -m ... --model=, flags edited in place in the user's own spelling, the
        # user's --lora-modules value kept (golora's goes into the same occurrence), sidecar untouched.
        args = container(v)["args"]
        assert args[:3] == [f"--model={QWEN_AWQ}", "--max_lora_rank", "16"]
        assert args[3:5] == ["--lora-modules", "sql=/adapters/sql"]
        assert json.loads(args[5])["name"] == "go-plain" and "--enforce-eager" in args
        assert lora_modules(v)[0] == "sql=/adapters/sql"
        assert "--max-loras" in args and args[args.index("--max-loras") + 1] == "2"  # sql + go-plain
        assert container(v, "metrics-exporter") == container(before["vllm"], "metrics-exporter")

        # status, printer columns, conditions
        st = obj["status"]
        assert st["targetNames"] == "ms-decode,ms-prefill"
        assert [t["name"] for t in st["targets"]] == ["ms-decode", "ms-prefill"]
        assert all(t["patchedGeneration"] == 2 and t["maxLoraRank"] == 16 for t in st["targets"])
        assert cond(obj, "AdapterValidated")["status"] == "True"
        assert cond(obj, "Patched")["status"] == "True"
        assert cond(obj, "RolledOut")["reason"] == "RollingOut"
        assert cond(obj, "GPUSurgeRisk")["status"] == "False"  # Recreate
        plain_obj = serving(api, ns, "go-plain")
        assert cond(plain_obj, "GPUSurgeRisk")["status"] == "True"  # GPU + default maxSurge 25%
        assert "maxSurge 0" in cond(plain_obj, "GPUSurgeRisk")["message"]
        table = cluster.kubectl("get", "as", "-n", ns).stdout
        assert "go-adapter" in table and "ms-decode,ms-prefill" in table and "RollingOut" in table
        assert not any(k.startswith("kopf.zalando.org") or k.startswith("golora.dev/last-handled")
                       for k in (d["metadata"].get("annotations") or {}))

        # Idempotent: another reconcile writes nothing (no new generation, no new resourceVersion).
        rvs = {n: dep_dict(api, ns, n)["metadata"]["resourceVersion"] for n in ("ms-decode", "ms-prefill", "vllm")}
        seen = operator.handler_successes("validate", ns, "go-adapter")
        nudge(api, ns, "go-adapter")
        nudge(api, ns, "go-plain")
        wait_for(lambda: operator.handler_successes("validate", ns, "go-adapter") > seen, what="reconcile ran")
        time.sleep(0.5)
        for n in rvs:
            now = dep_dict(api, ns, n)
            assert now["metadata"]["resourceVersion"] == rvs[n], n
            assert now["metadata"]["generation"] == 2

        # Rolled out (the test writes what the Deployment controller would) -> the probe asks the
        # stand-in, which answers from the patched args -> Serving.
        for n in ("ms-decode", "ms-prefill"):
            set_rolled_out(api, ns, n)
        obj = wait_phase(api, ns, "go-adapter", "Serving")
        assert cond(obj, "RolledOut")["status"] == "True" and cond(obj, "Serving")["status"] == "True"
        assert all(t["served"] is True and t["rolledOut"] for t in obj["status"]["targets"])
        assert any(r.endswith(f"/{ns}/ms-decode/v1/models") for r in fake.requests)

        # A server that does not list the adapter -> Serving=False (NotListed).
        fake.hide = {"go-plain"}
        set_rolled_out(api, ns, "vllm")
        wait_cond(api, ns, "go-plain", "Serving", "False", "NotListed")

    # Without the stand-in and without pods, Serving stays Unknown with that reason.
    monkeypatch.delenv("GOLORA_MODELS_URL")
    nudge(api, ns, "go-plain")
    obj = wait_cond(api, ns, "go-plain", "Serving", "Unknown", "NoReadyPods")
    assert "no ready pods" in cond(obj, "Serving")["message"]
    assert obj["status"]["phase"] == "RolledOut"


def test_two_servings_merge_rank_and_delete_removes_exactly_one(api, namespace, operator):
    ns = namespace
    original = [QWEN_AWQ, "--port", "8000", "--lora-modules", '{"name":"mine","path":"/adapters/mine"}',
                "--max-loras", "4"]
    create_deployment(api, ns, vllm_deployment("vllm", command=["vllm", "serve"], args=original,
                                               strategy={"type": "RollingUpdate",
                                                         "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}}))
    before = dep_dict(api, ns, "vllm")
    succeeded_training(api, ns, "small", rank=16)
    succeeded_training(api, ns, "big", rank=24)
    create_serving(api, ns, "small", "go-small", training="small", deployments=["vllm"])
    wait_phase(api, ns, "small", "RollingOut")
    create_serving(api, ns, "big", "go-big", training="big", deployments=["vllm"])
    obj = wait_phase(api, ns, "big", "RollingOut")
    assert cond(obj, "GPUSurgeRisk")["status"] == "False"  # maxSurge 0

    dep = dep_dict(api, ns, "vllm")
    args = container(dep)["args"]
    # rank 24 -> 32; the user's --max-loras 4 is already >= 3 adapters: kept; one --lora-modules
    # occurrence, the user's value first, golora's sorted by name.
    assert args[:3] == original[:3]
    assert [m if isinstance(m, str) else m["name"] for m in lora_modules(dep)] == ["mine", "go-big", "go-small"]
    assert args.count("--lora-modules") == 1
    assert args[args.index("--max-lora-rank") + 1] == "32"
    assert args[args.index("--max-loras") + 1] == "4"
    record = sv.read_record(dep)
    assert sorted((a.owner, a.name, a.rank) for a in record.adapters) == [("big", "go-big", 24),
                                                                          ("small", "go-small", 16)]
    assert obj["status"]["targets"][0]["adapters"] == ["go-big", "go-small"]

    # Delete the rank-24 one: only its entry goes; the rank drops back to 16.
    custom(api).delete_namespaced_custom_object(GROUP, VERSION, ns, "adapterservings", "big")
    wait_for(lambda: "go-big" not in json.dumps(container(dep_dict(api, ns, "vllm"))["args"]), what="go-big removed")
    wait_for(lambda: not [o for o in custom(api).list_namespaced_custom_object(GROUP, VERSION, ns, "adapterservings")
                          ["items"] if o["metadata"]["name"] == "big"], what="finalizer released")
    dep = dep_dict(api, ns, "vllm")
    args = container(dep)["args"]
    assert [m if isinstance(m, str) else m["name"] for m in lora_modules(dep)] == ["mine", "go-small"]
    assert args[args.index("--max-lora-rank") + 1] == "16"
    assert [a.name for a in sv.read_record(dep).adapters] == ["go-small"]

    # Delete the last one: the Deployment's pod template is exactly what the user wrote.
    custom(api).delete_namespaced_custom_object(GROUP, VERSION, ns, "adapterservings", "small")
    wait_for(lambda: sv.ANNOTATION not in (dep_dict(api, ns, "vllm")["metadata"].get("annotations") or {}),
             what="golora's annotation removed")
    dep = dep_dict(api, ns, "vllm")
    assert dep["spec"]["template"] == before["spec"]["template"]


def test_refusals_write_nothing(api, namespace, operator):
    ns = namespace
    create_deployment(api, ns, vllm_deployment("vllm", command=["vllm", "serve"], args=[QWEN_AWQ]))
    other = vllm_deployment("other", args=["--model", QWEN_AWQ])
    other["spec"]["template"]["spec"]["containers"][0]["name"] = "engine"
    create_deployment(api, ns, other)
    succeeded_training(api, ns, "collapsed", gate=False)
    succeeded_training(api, ns, "llama", base="meta-llama/Llama-3.1-8B-Instruct")
    succeeded_training(api, ns, "good")
    rv = dep_dict(api, ns, "vllm")["metadata"]["resourceVersion"]

    create_serving(api, ns, "collapsed", "go-collapsed", training="collapsed", deployments=["vllm"])
    obj = wait_phase(api, ns, "collapsed", "Failed")
    c = cond(obj, "AdapterValidated")
    assert c["status"] == "False" and c["reason"] == "QualityGateNotPassed"
    assert "DegenerateOutput" in c["message"] and "requireQualityGate" in c["message"]

    create_serving(api, ns, "llama", "go-llama", training="llama", deployments=["vllm"])
    obj = wait_phase(api, ns, "llama", "Failed")
    c = cond(obj, "Patched")
    assert c["status"] == "False" and c["reason"] == "BaseModelMismatch"
    assert "meta-llama/Llama-3.1-8B-Instruct" in c["message"] and QWEN_AWQ in c["message"]

    create_serving(api, ns, "nocontainer", "go-x", training="good", deployments=["other"])
    obj = wait_phase(api, ns, "nocontainer", "Failed")
    assert cond(obj, "Patched")["reason"] == "ContainerNotFound" and "'vllm' does not exist" in \
        cond(obj, "Patched")["message"]

    assert dep_dict(api, ns, "vllm")["metadata"]["resourceVersion"] == rv
    ev = wait_for(lambda: [e for e in kubernetes.client.CoreV1Api(api).list_namespaced_event(ns).items
                           if e.involved_object.name == "llama" and e.reason == "Failed"], what="Failed event")
    assert ev[0].type == "Warning"

    # A duplicate name on the same Deployment is refused, naming the first.
    create_serving(api, ns, "first", "go-adapter", training="good", deployments=["vllm"])
    wait_phase(api, ns, "first", "RollingOut")
    rv = dep_dict(api, ns, "vllm")["metadata"]["resourceVersion"]
    create_serving(api, ns, "second", "go-adapter", training="good", deployments=["vllm"])
    obj = wait_phase(api, ns, "second", "Failed")
    c = cond(obj, "Patched")
    assert c["reason"] == "DuplicateServedName" and "AdapterServing 'first'" in c["message"]
    assert dep_dict(api, ns, "vllm")["metadata"]["resourceVersion"] == rv

    # The quality gate may be waived explicitly.
    create_serving(api, ns, "waived", "go-waived", training="collapsed", deployments=["vllm"],
                   requireQualityGate=False)
    obj = wait_phase(api, ns, "waived", "RollingOut")
    assert "did NOT pass" in obj["status"]["adapter"]["verified"]


def test_target_not_found_then_appears_and_training_change_repatches(api, namespace, operator):
    ns = namespace
    succeeded_training(api, ns, "go-adapter")
    create_serving(api, ns, "go-adapter", "go-adapter", training="go-adapter", deployments=["vllm"])
    obj = wait_phase(api, ns, "go-adapter", "Pending")
    obj = wait_cond(api, ns, "go-adapter", "Patched", "False", "TargetNotFound")
    assert "Deployment vllm not found" in cond(obj, "Patched")["message"]

    create_deployment(api, ns, vllm_deployment("vllm", command=["vllm", "serve"], args=[QWEN_AWQ]))
    wait_phase(api, ns, "go-adapter", "RollingOut")
    assert lora_modules(dep_dict(api, ns, "vllm"))[0]["path"] == f"{sv.STORE_MOUNT}/adapters/{ns}/go-adapter"

    # A new adapter version from the training: re-patched to the new path.
    set_training_status(api, ns, "go-adapter", rank=16, base=QWEN, path=f"adapters/{ns}/go-adapter-v2")
    wait_for(lambda: lora_modules(dep_dict(api, ns, "vllm"))[0]["path"].endswith("go-adapter-v2"),
             what="re-patched to the new adapter")
    assert dep_dict(api, ns, "vllm")["metadata"]["generation"] == 3

    # Someone (a GitOps sync) writes the args back as they were in Git: golora puts its part back.
    apps(api).patch_namespaced_deployment("vllm", ns, {"spec": {"template": {"spec": {"containers": [
        {"name": "vllm", "args": [QWEN_AWQ]}]}}}})
    wait_for(lambda: "--enable-lora" in container(dep_dict(api, ns, "vllm"))["args"], what="re-patched after revert")


def test_explicit_adapter_path_is_checked_by_a_validation_job(api, namespace, operator, node_agent):
    """The operator cannot read a namespace's PVC: a validation Job (run here by the local Job
    runner) checks the files with the trainer's validator and reports status.adapterCheck."""
    ns = namespace
    create_deployment(api, ns, vllm_deployment("vllm", command=["vllm", "serve"], args=[QWEN_AWQ]))
    store = node_agent.claim_dir(ns, "golora-store")
    for name, extra in (("manual", {}), ("dora", {"use_dora": True})):
        adapter = store / "adapters" / name
        adapter.mkdir(parents=True)
        (adapter / "adapter_config.json").write_text(json.dumps({
            "r": 64, "lora_alpha": 128, "target_modules": ["q_proj", "v_proj"], "bias": "none", "peft_type": "LORA",
            "base_model_name_or_path": QWEN, **extra}))
        (adapter / "adapter_model.safetensors").write_bytes(b"\0")

    create_serving(api, ns, "manual", "go-manual", adapterPath="adapters/manual", deployments=["vllm"])
    obj = wait_phase(api, ns, "manual", "RollingOut")
    assert cond(obj, "AdapterValidated")["reason"] == "FilesValidated"
    assert obj["status"]["adapterCheck"]["ok"] is True and obj["status"]["adapter"]["rank"] == 64
    args = container(dep_dict(api, ns, "vllm"))["args"]
    assert args[args.index("--max-lora-rank") + 1] == "64"
    generation = dep_dict(api, ns, "vllm")["metadata"]["generation"]

    create_serving(api, ns, "dora", "go-dora", adapterPath="adapters/dora", deployments=["vllm"])
    obj = wait_phase(api, ns, "dora", "Failed")
    c = cond(obj, "AdapterValidated")
    assert c["reason"] == "InvalidAdapter" and "DoRA" in c["message"]
    assert "go-dora" not in json.dumps(container(dep_dict(api, ns, "vllm"))["args"])
    assert dep_dict(api, ns, "vllm")["metadata"]["generation"] == generation  # refused: no write


def test_payload_is_narrow_server_side_apply(api, namespace, operator):
    """golora's fields are owned by the field manager 'golora' (so Argo CD can ignore exactly them)."""
    ns = namespace
    create_deployment(api, ns, vllm_deployment("vllm", command=["vllm", "serve"], args=[QWEN_AWQ]))
    succeeded_training(api, ns, "go-adapter")
    create_serving(api, ns, "go-adapter", "go-adapter", training="go-adapter", deployments=["vllm"])
    wait_phase(api, ns, "go-adapter", "RollingOut")
    dep = dep_dict(api, ns, "vllm")
    owned = sv.owned_fields(dep)
    assert owned.args == {"vllm"} and owned.volumes == {sv.STORE_VOLUME} and owned.annotation
    assert owned.mounts == {("vllm", sv.STORE_MOUNT)}
    golora = [m for m in dep["metadata"]["managedFields"] if m["manager"] == "golora"]
    assert len(golora) == 1 and golora[0]["operation"] == "Apply"
    text = json.dumps(golora[0]["fieldsV1"])
    assert "f:image" not in text and "f:replicas" not in text and "f:selector" not in text
    # the untouched parts are the same as before
    fresh = copy.deepcopy(vllm_deployment("vllm", command=["vllm", "serve"], args=[QWEN_AWQ]))
    assert container(dep)["image"] == container(fresh)["image"]

    # A restarted operator resumes (and reconciles) without writing anything.
    status_before = serving(api, ns, "go-adapter")["status"]
    runs = operator.handler_successes("validate", ns, "go-adapter")
    operator.restart()
    wait_for(lambda: operator.handler_successes("validate", ns, "go-adapter") > runs, what="resume handler ran")
    assert dep_dict(api, ns, "vllm")["metadata"]["resourceVersion"] == dep["metadata"]["resourceVersion"]
    assert serving(api, ns, "go-adapter")["status"] == status_before
