"""AdapterServing against the real apiserver, scheduler and controllers, with Pods run by the
node agent (vLLM images run ``golora_dev.vllm_stub``, which refuses a missing adapter
as vLLM does): Deployments patched by server-side apply (a plain vLLM one and an llm-d
prefill/decode pair), rolled out by the real Deployment controller, merged adapters, exact
removal, refusals that write nothing, no write when nothing changes, TargetNotFound, a
changed training, and the operator's own ``GET http://{pod_ip}:{port}/v1/models`` probe."""

from __future__ import annotations

import copy
import json
import threading
import time
from pathlib import Path

import kubernetes
import pytest

from golora import vllm
from golora.builders import serving as sv
from tests.conftest import wait_for
from tests.integration.status_conventions import Recorder, kstatus, kubectl_wait_ready, kubectl_wait_times_out
from tests.kube_helpers import (
    API_VERSION,
    adapter_serving,
    condition,
    create_cr,
    delete_cr,
    get_cr,
    list_crs,
    make_condition,
    patch_cr,
    patch_cr_status,
    wait_for_phase,
    wait_handled,
)

pytestmark = pytest.mark.cluster

QWEN = "Qwen/Qwen2.5-7B-Instruct"
QWEN_AWQ = "Qwen/Qwen2.5-7B-Instruct-AWQ"
KV = '{"kv_connector":"NixlConnector","kv_role":"kv_both"}'
ROLLOUT = 120  # seconds: pods start as local processes on 2 shared cores


# --- helpers ----------------------------------------------------------------------------------

def apps(api):
    return kubernetes.client.AppsV1Api(api)


def core(api):
    return kubernetes.client.CoreV1Api(api)


def dep_dict(api, ns, name) -> dict:
    return api.sanitize_for_serialization(apps(api).read_namespaced_deployment(name, ns))


def container(dep: dict, name: str = "vllm") -> dict:
    return next(c for c in dep["spec"]["template"]["spec"]["containers"] if c["name"] == name)


def sleeper(name: str, **extra) -> dict:
    """A STAND-IN container that only stays up (busybox runs the machine's shell tools): for
    sidecars whose real image the node agent cannot run. The container's own args are kept
    (``sh -c`` takes them as positional parameters and ignores them)."""
    return {"name": name, "image": "busybox", "command": ["sh", "-c", "exec sleep infinity", name], **extra}


def vllm_deployment(name, *, command=None, args=None, labels=None, port=8000, init_containers=None,
                    extra_containers=None, strategy=None, gpu=True, volumes=None, mounts=None) -> dict:
    labels = labels or {"app": name}
    engine = {"name": "vllm", "image": "vllm/vllm-openai:v0.21.0", "ports": [{"containerPort": port}],
              # as vLLM Deployments do: ready once /health answers (the probe then finds the server up)
              "readinessProbe": {"httpGet": {"path": "/health", "port": port}, "periodSeconds": 1}}
    if command is not None:
        engine["command"] = command
    if args is not None:
        engine["args"] = args
    if gpu:
        engine["resources"] = {"limits": {"nvidia.com/gpu": "1"}}
    if mounts:
        engine["volumeMounts"] = mounts
    pod = {"containers": [engine, *(extra_containers or [])], "terminationGracePeriodSeconds": 5}
    if init_containers:
        pod["initContainers"] = init_containers
    if volumes:
        pod["volumes"] = volumes
    spec = {"replicas": 1, "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": pod}}
    if strategy:
        spec["strategy"] = strategy
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "labels": labels}, "spec": spec}


def llmd_pair() -> list[dict]:
    """The llm-d modelservice chart's shape: decode with a routing-proxy sidecar (init container
    with restartPolicy Always) and vLLM on 8200; prefill with vLLM on 8000.

    The routing sidecar's image (ghcr.io/llm-d/llm-d-routing-sidecar) is not runnable on the
    local node (its Pod would wait with ImageNotRunnableLocally): here it is a busybox
    STAND-IN that only stays up, with the chart's args; golora must leave it untouched."""
    def role_labels(role):
        return {"llm-d.ai/inference-serving": "true", "llm-d.ai/model": "qwen2-5-7b-instruct-awq",
                "llm-d.ai/role": role}

    proxy = sleeper("routing-proxy", restartPolicy="Always", args=["--port=8000", "--vllm-port=8200",
                                                                   "--connector=nixlv2"],
                    ports=[{"containerPort": 8000}])
    decode = vllm_deployment("ms-decode", command=["vllm", "serve"], port=8200, labels=role_labels("decode"),
                             args=[QWEN_AWQ, "--port", "8200", "--served-model-name", QWEN_AWQ,
                                   "--kv-transfer-config", KV],
                             init_containers=[proxy], strategy={"type": "Recreate"})
    prefill = vllm_deployment("ms-prefill", command=["vllm", "serve"], port=8000, labels=role_labels("prefill"),
                              args=[QWEN_AWQ, "--port", "8000", "--served-model-name", QWEN_AWQ,
                                    "--kv-transfer-config", KV],
                              strategy={"type": "Recreate"})
    return [decode, prefill]


# Not vLLM: a module named like vLLM's API server entry point (so golora patches the
# Deployment as it would a vLLM one), which answers GET /v1/models from a static file and
# ignores --lora-modules: a server that does not list the adapter.
STATIC_SERVER = '''\
import functools, http.server, pathlib, sys
args = sys.argv[1:]
port = int(args[args.index("--port") + 1]) if "--port" in args else 8000
root = pathlib.Path(__file__).resolve().parents[3] / "static"
handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
http.server.ThreadingHTTPServer(("0.0.0.0", port), handler).serve_forever()
'''


def static_models_server(api, ns, name) -> dict:
    """A Deployment whose 'vllm' container is busybox running ``python3 -m
    vllm.entrypoints.openai.api_server`` from a ConfigMap volume: http.server answering a
    static /v1/models that lists only the base model, whatever golora adds to its args."""
    listing = {"object": "list", "data": [{"id": QWEN_AWQ, "object": "model", "root": QWEN_AWQ, "parent": None}]}
    core(api).create_namespaced_config_map(ns, {"metadata": {"name": f"{name}-files"}, "data": {
        "api_server.py": STATIC_SERVER, "empty": "", "models": json.dumps(listing)}})
    items = [{"key": "empty", "path": f"vllm/{p}__init__.py"} for p in ("", "entrypoints/", "entrypoints/openai/")]
    items += [{"key": "api_server.py", "path": "vllm/entrypoints/openai/api_server.py"},
              {"key": "models", "path": "static/v1/models"}]
    body = vllm_deployment(name, command=["python3", "-m", "vllm.entrypoints.openai.api_server"],
                           args=["--model", QWEN_AWQ, "--port", "8000"], gpu=False,
                           volumes=[{"name": "files", "configMap": {"name": f"{name}-files", "items": items}}],
                           mounts=[{"name": "files", "mountPath": "/static-server"}])
    engine = container(body)
    engine.update(image="busybox", env=[{"name": "PYTHONPATH", "value": "/static-server"}])
    engine["readinessProbe"]["httpGet"]["path"] = "/v1/models"
    return body


def create_deployment(api, ns, body) -> dict:
    return api.sanitize_for_serialization(apps(api).create_namespaced_deployment(ns, body))


def write_adapter(store: Path, path: str, *, rank: int = 16, base: str = QWEN) -> Path:
    """Minimal adapter files where a trainer would have saved them (vLLM, and the stub, refuse
    to start when a --lora-modules directory has no adapter_config.json)."""
    adapter = store / path
    adapter.mkdir(parents=True, exist_ok=True)
    (adapter / "adapter_config.json").write_text(json.dumps({
        "r": rank, "lora_alpha": 2 * rank, "target_modules": ["q_proj", "v_proj"], "bias": "none",
        "peft_type": "LORA", "base_model_name_or_path": base}))
    (adapter / "adapter_model.safetensors").write_bytes(b"\0")
    return adapter


def succeeded_training(api, ns, name, *, store: Path, rank=16, base=QWEN, path=None, gate=True) -> None:
    """A LoraTraining that 'succeeded': created, its adapter files written on the store
    claim, then its status set through the status subresource (what the operator and the
    trainer would have written). Its dataset does not exist, so the training handler only
    writes 'waiting' once and never runs a Job."""
    path = path or f"adapters/{ns}/{name}"
    write_adapter(store, path, rank=rank, base=base)
    create_cr(api, ns, {
        "apiVersion": API_VERSION, "kind": "LoraTraining", "metadata": {"name": name},
        "spec": {"baseModel": {"name": base}, "datasetRef": {"name": f"{name}-absent"}, "lora": {"r": rank}}})
    wait_handled(api, ns, "loratrainings", name)
    set_training_status(api, ns, name, rank=rank, base=base, path=path, gate=gate)


def set_training_status(api, ns, name, *, rank, base, path, gate=True) -> None:
    outcome = "True" if gate else "False"
    gate_cond = make_condition("QualityGatePassed", outcome, "Passed" if gate else "DegenerateOutput",
                               "all checks passed" if gate else "92% of the generated text is whitespace")
    status = {
        "phase": "Succeeded" if gate else "Failed",
        "message": "adapter ready" if gate else "QualityGateFailed",
        "conditions": [
            make_condition("Accepted", "True", "Valid", "spec is valid"),
            make_condition("Succeeded", outcome, "AdapterReady" if gate else "QualityGateFailed",
                           "adapter ready" if gate else "QualityGateFailed"),
            gate_cond,
            make_condition("Ready", outcome, "AdapterReady" if gate else "QualityGateFailed")],
        "result": {"adapterPath": path, "rank": rank, "baseModel": base,
                   "qualityGate": {"passed": gate, "reason": gate_cond["reason"], "message": gate_cond["message"]}},
    }
    patch_cr_status(api, ns, "loratrainings", name, status)


def create_serving(api, ns, name, served_name, *, training=None, deployments=None, selector=None, **spec) -> None:
    targets = {"deployments": deployments} if deployments else {"selector": {"matchLabels": selector}}
    create_cr(api, ns, adapter_serving(name, served_name, targets, training, **spec))


def serving(api, ns, name) -> dict:
    return get_cr(api, ns, "adapterservings", name)


def wait_phase(api, ns, name, *phases, timeout=20) -> dict:
    return wait_for_phase(api, ns, "adapterservings", name, phases, timeout=timeout)


def wait_cond(api, ns, name, type_, status, reason=None, timeout=20) -> dict:
    def ok():
        o = serving(api, ns, name)
        x = condition(o, type_) or {}
        return x.get("status") == status and (reason is None or x.get("reason") == reason) and o
    return wait_for(ok, timeout=timeout, what=f"{name}: {type_}={status} {reason or ''}")


def golora_tail(dep: dict) -> list[str]:
    """The vllm container's args from --enable-lora on (what golora appended)."""
    args = container(dep).get("args") or []
    return args[args.index("--enable-lora"):] if "--enable-lora" in args else []


def lora_modules(dep: dict) -> list[dict | str]:
    inv = vllm.parse_invocation(container(dep).get("command"), container(dep).get("args"))
    return [json.loads(m.raw) if m.form == "json" else m.raw for m in inv.lora_modules]


def nudge(api, ns, name) -> None:
    """Make the operator reconcile the AdapterServing again (a metadata change runs on.update)."""
    patch_cr(api, ns, "adapterservings", name, {"metadata": {"labels": {"nudge": str(time.monotonic_ns())}}})


# --- the real Deployment controller's work, observed ----------------------------------------------

def settled(api, ns, name) -> dict | None:
    """The Deployment once the real controller has finished rolling it out (what `kubectl
    rollout status` waits for, and the controller's final Progressing reason)."""
    dep = dep_dict(api, ns, name)
    st = dep.get("status") or {}
    want = dep["spec"]["replicas"]
    progressing = next((x for x in st.get("conditions") or [] if x["type"] == "Progressing"), {})
    done = (st.get("observedGeneration") == dep["metadata"]["generation"]
            and (st.get("replicas") or 0) == (st.get("updatedReplicas") or 0) == (st.get("availableReplicas") or 0)
            == want and progressing.get("reason") == "NewReplicaSetAvailable" and not st.get("terminatingReplicas"))
    if done:  # and the old Pods are gone (the controller's last status write counts them)
        selector = ",".join(f"{k}={v}" for k, v in dep["spec"]["selector"]["matchLabels"].items())
        pods = core(api).list_namespaced_pod(ns, label_selector=selector).items
        done = len(pods) == want and not any(p.metadata.deletion_timestamp for p in pods)
    return dep if done else None


def wait_settled(api, ns, *names, timeout=ROLLOUT) -> list[dict]:
    return [wait_for(lambda n=n: settled(api, ns, n), timeout=timeout, interval=0.5, what=f"Deployment {n} rolled out")
            for n in names]


def wait_observed(api, ns, *names) -> None:
    """The Deployment controller saw the current generation (e.g. of a paused Deployment)."""
    for n in names:
        wait_for(lambda n=n: (d := dep_dict(api, ns, n)).get("status", {}).get("observedGeneration")
                 == d["metadata"]["generation"], timeout=ROLLOUT, what=f"Deployment {n} observed")


def set_paused(api, ns, names, paused: bool) -> None:
    """`kubectl rollout pause/resume` (a user's own write of spec.paused)."""
    for n in names:
        apps(api).patch_namespaced_deployment(n, ns, {"spec": {"paused": paused}})


def replica_sets(api, ns, name) -> list:
    uid = apps(api).read_namespaced_deployment(name, ns).metadata.uid
    return [rs for rs in apps(api).list_namespaced_replica_set(ns).items
            if any(o.uid == uid for o in rs.metadata.owner_references or [])]


def pods_of(api, ns, replica_set_names) -> list:
    return [p for p in core(api).list_namespaced_pod(ns).items
            if any(o.kind == "ReplicaSet" and o.name in replica_set_names for o in p.metadata.owner_references or [])]


def status_managers(dep: dict) -> set[str]:
    return {m["manager"] for m in dep["metadata"].get("managedFields") or [] if m.get("subresource") == "status"}


class PodEvents:
    """Every Pod event of a namespace in the apiserver's order (a watch in a thread):
    ``events`` holds (type, pod name, owning ReplicaSet, phase, whether a container runs)."""

    def __init__(self, cluster, ns):
        self.client = kubernetes.config.new_client_from_config(config_file=str(cluster.kubeconfig))
        self.ns = ns
        self.events: list[tuple[str, str, str, str, bool]] = []
        self.error: BaseException | None = None
        self._closing = False
        self._watch = kubernetes.watch.Watch()
        self._listed = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"pod-events-{ns}", daemon=True)

    @staticmethod
    def _row(type_, pod) -> tuple[str, str, str, str, bool]:
        owner = next((o.name for o in pod.metadata.owner_references or [] if o.kind == "ReplicaSet"), "")
        statuses = (pod.status.container_statuses or []) + (pod.status.init_container_statuses or [])
        running = any(cs.state is not None and cs.state.running is not None for cs in statuses)
        return type_, pod.metadata.name, owner, pod.status.phase or "", running

    def _run(self) -> None:
        api = kubernetes.client.CoreV1Api(self.client)
        try:
            listed = api.list_namespaced_pod(self.ns)
            self.events.extend(self._row("LISTED", p) for p in listed.items)
            self._listed.set()
            for ev in self._watch.stream(api.list_namespaced_pod, self.ns, timeout_seconds=3 * ROLLOUT,
                                         resource_version=listed.metadata.resource_version):
                self.events.append(self._row(ev["type"], ev["object"]))
        except Exception as exc:  # the stream ends when the namespace goes; before that it is an error
            if not self._closing:
                self.error = exc

    def __enter__(self) -> PodEvents:
        self._thread.start()
        assert self._listed.wait(30), "pod watch did not start"
        return self

    def __exit__(self, *exc) -> None:
        self._closing = True
        self._watch.stop()
        assert self.error is None, f"pod watch failed: {self.error!r}"

    def index(self, type_, *, pod=None, owner=None) -> list[int]:
        return [i for i, (t, p, o, *_) in enumerate(self.events)
                if t == type_ and (pod is None or p == pod) and (owner is None or o == owner)]

    def stopped(self, pod) -> list[int]:
        """Where ``pod`` was seen no longer running: a terminal phase with no container
        running (the kubelet reports that before the Pod is removed), or deleted."""
        return [i for i, (t, p, _, phase, running) in enumerate(self.events) if p == pod and (
            t == "DELETED" or (phase in ("Succeeded", "Failed") and not running))]


def assert_rolled_out_by_controller(api, ns, name, old_rs: set[str], old_pods: set[str],
                                    events: PodEvents | None = None) -> None:
    """A new ReplicaSet made by the Deployment controller, the old one scaled to 0, the old
    Pods gone, the Deployment's status written by kube-controller-manager. With ``events``
    (Recreate): the first new Pod was created only after every old Pod had stopped (the
    Deployment controller waits for a terminal phase, not for the Pod object's removal)."""
    sets = replica_sets(api, ns, name)
    new = [rs for rs in sets if rs.metadata.name not in old_rs]
    assert len(new) == 1, f"{name}: ReplicaSets {[rs.metadata.name for rs in sets]}, old {old_rs}"
    assert all(rs.spec.replicas == 0 for rs in sets if rs.metadata.name in old_rs)
    assert new[0].spec.replicas == 1 and new[0].status.ready_replicas == 1
    assert not {p.metadata.name for p in pods_of(api, ns, old_rs)}, f"{name}: old pods still there"
    assert {p.metadata.name for p in core(api).list_namespaced_pod(ns).items}.isdisjoint(old_pods)
    assert "kube-controller-manager" in status_managers(dep_dict(api, ns, name))
    if events is not None:
        new_pods = events.index("ADDED", owner=new[0].metadata.name)
        assert new_pods, f"{name}: no new pod seen"
        for pod in old_pods:
            stopped = events.stopped(pod)
            assert stopped and events.index("DELETED", pod=pod), f"{name}: old pod {pod} not seen stopped and deleted"
            assert stopped[0] < new_pods[0], \
                f"{name}: new pod created while old pod {pod} still ran: {events.events}"


# --- tests --------------------------------------------------------------------------------------

def test_llmd_pair_and_plain_deployment_patched_then_served(api, namespace, operator, node_agent, cluster, tmp_path):
    ns = namespace
    store = node_agent.claim_dir(ns, "golora-store")
    decode, prefill = llmd_pair()
    # The user's own adapter, mounted from the node (the stub, like vLLM, refuses a missing one).
    write_adapter(tmp_path, "sql", rank=8, base=QWEN_AWQ)
    sidecar = sleeper("metrics-exporter", args=["--listen", ":9400"])
    plain = vllm_deployment(
        "vllm", command=["python3", "-m", "vllm.entrypoints.openai.api_server"], gpu=True,
        args=[f"--model={QWEN_AWQ}", "--max_lora_rank", "8", "--lora-modules", "sql=/adapters/sql", "--enforce-eager"],
        extra_containers=[sidecar], volumes=[{"name": "user-adapters", "hostPath": {"path": str(tmp_path)}}],
        mounts=[{"name": "user-adapters", "mountPath": "/adapters", "readOnly": True}])
    names = ("ms-decode", "ms-prefill", "vllm")
    for d in (decode, prefill, plain):
        create_deployment(api, ns, d)
    # Running as written first (the Pods golora's patch must replace); then paused (`kubectl
    # rollout pause`) so the patched-but-not-rolled-out state can be looked at.
    wait_settled(api, ns, *names)
    old_rs = {n: {rs.metadata.name for rs in replica_sets(api, ns, n)} for n in names}
    old_pods = {n: {p.metadata.name for p in pods_of(api, ns, old_rs[n])} for n in names}
    assert all(len(old_rs[n]) == 1 and len(old_pods[n]) == 1 for n in names), (old_rs, old_pods)
    set_paused(api, ns, names, True)
    before = {n: dep_dict(api, ns, n) for n in names}
    gen = {n: before[n]["metadata"]["generation"] for n in names}
    succeeded_training(api, ns, "go-adapter", rank=16, store=store)

    recorder = Recorder(api, ns, "adapterservings", "go-adapter").start()
    create_serving(api, ns, "go-adapter", "go-adapter", training="go-adapter",
                   selector={"llm-d.ai/model": "qwen2-5-7b-instruct-awq"})
    create_serving(api, ns, "go-plain", "go-plain", training="go-adapter", deployments=["vllm"])
    obj = wait_phase(api, ns, "go-adapter", "RollingOut")
    wait_phase(api, ns, "go-plain", "RollingOut")

    d, p, v = (dep_dict(api, ns, n) for n in names)
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
        assert dep["metadata"]["generation"] == gen[name] + 1  # one write by golora
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
    assert v["spec"]["paused"] is True  # the user's field, not golora's

    # status, printer columns, conditions
    st = obj["status"]
    assert st["targetNames"] == "ms-decode,ms-prefill"
    assert [t["name"] for t in st["targets"]] == ["ms-decode", "ms-prefill"]
    assert all(t["patchedGeneration"] == gen[t["name"]] + 1 and t["maxLoraRank"] == 16 for t in st["targets"])
    assert condition(obj, "AdapterValidated")["status"] == "True"
    assert condition(obj, "Patched")["status"] == "True"
    assert condition(obj, "RolledOut")["reason"] == "RollingOut"
    assert condition(obj, "GPUSurgeRisk")["status"] == "False"  # Recreate
    plain_obj = serving(api, ns, "go-plain")
    assert condition(plain_obj, "GPUSurgeRisk")["status"] == "True"  # GPU + default maxSurge 25%
    assert "maxSurge 0" in condition(plain_obj, "GPUSurgeRisk")["message"]
    table = cluster.kubectl("get", "as", "-n", ns).stdout
    assert "go-adapter" in table and "ms-decode,ms-prefill" in table and "RollingOut" in table
    # Patched but not rolled out: not Ready, with the rollout as the reason; kstatus InProgress,
    # and a script's `kubectl wait --for=condition=Ready` keeps waiting.
    assert condition(obj, "Ready")["status"] == "False" and condition(obj, "Ready")["reason"] == "RollingOut"
    assert kstatus(obj) == "InProgress" and obj["status"]["observedGeneration"] == obj["metadata"]["generation"]
    kubectl_wait_times_out(cluster, "adapterserving", "go-adapter", ns)
    assert not any(k.startswith("kopf.zalando.org") or k.startswith("golora.dev/last-handled")
                   for k in (d["metadata"].get("annotations") or {}))
    # Paused: the controller saw the patch but made no new ReplicaSet.
    wait_observed(api, ns, *names)
    assert all({rs.metadata.name for rs in replica_sets(api, ns, n)} == old_rs[n] for n in names)

    # Idempotent: another reconcile writes nothing (no new generation, no new resourceVersion).
    time.sleep(1)  # the controller's status write for the patched generation is in
    rvs = {n: dep_dict(api, ns, n)["metadata"]["resourceVersion"] for n in names}
    seen = operator.handler_successes("validate", ns, "go-adapter")
    nudge(api, ns, "go-adapter")
    nudge(api, ns, "go-plain")
    wait_for(lambda: operator.handler_successes("validate", ns, "go-adapter") > seen, what="reconcile ran")
    time.sleep(0.5)
    for n in rvs:
        now = dep_dict(api, ns, n)
        assert now["metadata"]["resourceVersion"] == rvs[n], n
        assert now["metadata"]["generation"] == gen[n] + 1

    # Resumed: the real Deployment controller rolls golora's patch out. Under Recreate the old
    # Pod is gone before the new one exists; the new Pods run the patched command line (the
    # stub loads the adapter from the store claim or exits) and the operator's own probe of
    # http://{pod_ip}:{port}/v1/models finds the adapter -> Serving.
    with PodEvents(cluster, ns) as events:
        set_paused(api, ns, names, False)
        obj = wait_phase(api, ns, "go-adapter", "Serving", timeout=ROLLOUT)
        plain_obj = wait_phase(api, ns, "go-plain", "Serving", timeout=ROLLOUT)
        wait_settled(api, ns, *names)
    assert condition(obj, "RolledOut")["status"] == "True" and condition(obj, "Serving")["status"] == "True"
    assert condition(obj, "Serving")["reason"] == "Listed"
    # Served on every target: Ready, kubectl wait returns, kstatus Current (InProgress before).
    assert condition(obj, "Ready")["status"] == "True"
    kubectl_wait_ready(cluster, "adapterserving", "go-adapter", ns)
    kubectl_wait_ready(cluster, "as", "go-plain", ns)
    recorder.stop()
    assert kstatus(serving(api, ns, "go-adapter")) == "Current"
    recorder.check()
    assert all(t["served"] is True and t["rolledOut"] for t in obj["status"]["targets"])
    assert "ms-decode: go-adapter listed by GET /v1/models on 1 endpoint(s)" in condition(obj, "Serving")["message"]
    assert all(t["served"] is True for t in plain_obj["status"]["targets"])
    for n in ("ms-decode", "ms-prefill"):
        assert_rolled_out_by_controller(api, ns, n, old_rs[n], old_pods[n], events)
    assert_rolled_out_by_controller(api, ns, "vllm", old_rs["vllm"], old_pods["vllm"])  # RollingUpdate: surge
    new_pod = next(p for p in core(api).list_namespaced_pod(ns, label_selector="llm-d.ai/role=decode").items)
    assert [s.name for s in new_pod.status.init_container_statuses] == ["routing-proxy"]
    assert new_pod.status.init_container_statuses[0].state.running is not None  # the sidecar stand-in runs

    # A server that does not list the adapter -> Serving=False (NotListed).
    create_deployment(api, ns, static_models_server(api, ns, "static"))
    create_serving(api, ns, "go-static", "go-static", training="go-adapter", deployments=["static"])
    obj = wait_cond(api, ns, "go-static", "Serving", "False", "NotListed", timeout=ROLLOUT)
    assert "go-static not listed by GET /v1/models at http://10.88." in condition(obj, "Serving")["message"]
    assert "--enable-lora" in container(dep_dict(api, ns, "static"))["args"]
    assert obj["status"]["phase"] == "RolledOut"

    # No pods (scaled to 0): rolled out, but nobody to ask -> Serving Unknown with that reason.
    apps(api).patch_namespaced_deployment_scale("vllm", ns, {"spec": {"replicas": 0}})
    obj = wait_cond(api, ns, "go-plain", "Serving", "Unknown", "NoReadyPods", timeout=ROLLOUT)
    assert "no ready pods" in condition(obj, "Serving")["message"]
    assert obj["status"]["phase"] == "RolledOut"


def test_two_servings_merge_rank_and_delete_removes_exactly_one(api, namespace, operator, node_agent, tmp_path):
    ns = namespace
    store = node_agent.claim_dir(ns, "golora-store")
    write_adapter(tmp_path, "mine", rank=8, base=QWEN_AWQ)  # the user's own adapter, mounted at /adapters
    original = [QWEN_AWQ, "--port", "8000", "--lora-modules", '{"name":"mine","path":"/adapters/mine"}',
                "--max-loras", "4"]
    create_deployment(api, ns, vllm_deployment("vllm", command=["vllm", "serve"], args=original,
                                               strategy={"type": "RollingUpdate",
                                                         "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}},
                                               volumes=[{"name": "user-adapters", "hostPath": {"path": str(tmp_path)}}],
                                               mounts=[{"name": "user-adapters", "mountPath": "/adapters"}]))
    before = dep_dict(api, ns, "vllm")
    succeeded_training(api, ns, "small", rank=16, store=store)
    succeeded_training(api, ns, "big", rank=24, store=store)
    create_serving(api, ns, "small", "go-small", training="small", deployments=["vllm"])
    wait_phase(api, ns, "small", "RollingOut")
    create_serving(api, ns, "big", "go-big", training="big", deployments=["vllm"])
    obj = wait_phase(api, ns, "big", "RollingOut")
    assert condition(obj, "GPUSurgeRisk")["status"] == "False"  # maxSurge 0

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
    delete_cr(api, ns, "adapterservings", "big")
    wait_for(lambda: "go-big" not in json.dumps(container(dep_dict(api, ns, "vllm"))["args"]), what="go-big removed")
    wait_for(lambda: not [o for o in list_crs(api, ns, "adapterservings") if o["metadata"]["name"] == "big"],
             what="finalizer released")
    dep = dep_dict(api, ns, "vllm")
    args = container(dep)["args"]
    assert [m if isinstance(m, str) else m["name"] for m in lora_modules(dep)] == ["mine", "go-small"]
    assert args[args.index("--max-lora-rank") + 1] == "16"
    assert [a.name for a in sv.read_record(dep).adapters] == ["go-small"]
    # ... and the rolled-out Pod serves it (next to the user's own adapter, which it loads too).
    obj = wait_phase(api, ns, "small", "Serving", timeout=ROLLOUT)
    assert all(t["served"] is True for t in obj["status"]["targets"])

    # Delete the last one: the Deployment's pod template is exactly what the user wrote.
    delete_cr(api, ns, "adapterservings", "small")
    wait_for(lambda: sv.ANNOTATION not in (dep_dict(api, ns, "vllm")["metadata"].get("annotations") or {}),
             what="golora's annotation removed")
    dep = dep_dict(api, ns, "vllm")
    assert dep["spec"]["template"] == before["spec"]["template"]


def test_refusals_write_nothing(api, namespace, operator, node_agent):
    ns = namespace
    store = node_agent.claim_dir(ns, "golora-store")
    create_deployment(api, ns, vllm_deployment("vllm", command=["vllm", "serve"], args=[QWEN_AWQ]))
    other = vllm_deployment("other", args=["--model", QWEN_AWQ])
    other["spec"]["template"]["spec"]["containers"][0]["name"] = "engine"
    create_deployment(api, ns, other)
    succeeded_training(api, ns, "collapsed", gate=False, store=store)
    succeeded_training(api, ns, "llama", base="meta-llama/Llama-3.1-8B-Instruct", store=store)
    succeeded_training(api, ns, "good", store=store)
    wait_settled(api, ns, "vllm", "other")  # the controller's own writes are done
    rv = dep_dict(api, ns, "vllm")["metadata"]["resourceVersion"]

    create_serving(api, ns, "collapsed", "go-collapsed", training="collapsed", deployments=["vllm"])
    obj = wait_phase(api, ns, "collapsed", "Failed")
    c = condition(obj, "AdapterValidated")
    assert c["status"] == "False" and c["reason"] == "QualityGateNotPassed"
    assert "DegenerateOutput" in c["message"] and "requireQualityGate" in c["message"]

    create_serving(api, ns, "llama", "go-llama", training="llama", deployments=["vllm"])
    obj = wait_phase(api, ns, "llama", "Failed")
    c = condition(obj, "Patched")
    assert c["status"] == "False" and c["reason"] == "BaseModelMismatch"
    assert "meta-llama/Llama-3.1-8B-Instruct" in c["message"] and QWEN_AWQ in c["message"]

    create_serving(api, ns, "nocontainer", "go-x", training="good", deployments=["other"])
    obj = wait_phase(api, ns, "nocontainer", "Failed")
    assert condition(obj, "Patched")["reason"] == "ContainerNotFound" and "'vllm' does not exist" in \
        condition(obj, "Patched")["message"]

    assert dep_dict(api, ns, "vllm")["metadata"]["resourceVersion"] == rv
    ev = wait_for(lambda: [e for e in kubernetes.client.CoreV1Api(api).list_namespaced_event(ns).items
                           if e.involved_object.name == "llama" and e.reason == "Failed"], what="Failed event")
    assert ev[0].type == "Warning"

    # A duplicate name on the same Deployment is refused, naming the first.
    create_serving(api, ns, "first", "go-adapter", training="good", deployments=["vllm"])
    wait_phase(api, ns, "first", "Serving", timeout=ROLLOUT)
    wait_settled(api, ns, "vllm")
    rv = dep_dict(api, ns, "vllm")["metadata"]["resourceVersion"]
    create_serving(api, ns, "second", "go-adapter", training="good", deployments=["vllm"])
    obj = wait_phase(api, ns, "second", "Failed")
    c = condition(obj, "Patched")
    assert c["reason"] == "DuplicateServedName" and "AdapterServing 'first'" in c["message"]
    assert dep_dict(api, ns, "vllm")["metadata"]["resourceVersion"] == rv

    # The quality gate may be waived explicitly.
    create_serving(api, ns, "waived", "go-waived", training="collapsed", deployments=["vllm"],
                   requireQualityGate=False)
    obj = wait_phase(api, ns, "waived", "RollingOut", "RolledOut", "Serving")
    assert "did NOT pass" in obj["status"]["adapter"]["verified"]


def test_target_not_found_then_appears_and_training_change_repatches(api, namespace, operator, node_agent):
    ns = namespace
    store = node_agent.claim_dir(ns, "golora-store")
    succeeded_training(api, ns, "go-adapter", store=store)
    create_serving(api, ns, "go-adapter", "go-adapter", training="go-adapter", deployments=["vllm"])
    obj = wait_phase(api, ns, "go-adapter", "Pending")
    obj = wait_cond(api, ns, "go-adapter", "Patched", "False", "TargetNotFound")
    assert "Deployment vllm not found" in condition(obj, "Patched")["message"]

    create_deployment(api, ns, vllm_deployment("vllm", command=["vllm", "serve"], args=[QWEN_AWQ]))
    wait_phase(api, ns, "go-adapter", "RollingOut", "RolledOut", "Serving")
    assert lora_modules(dep_dict(api, ns, "vllm"))[0]["path"] == f"{sv.STORE_MOUNT}/adapters/{ns}/go-adapter"

    # A new adapter version from the training: re-patched to the new path.
    write_adapter(store, f"adapters/{ns}/go-adapter-v2")
    set_training_status(api, ns, "go-adapter", rank=16, base=QWEN, path=f"adapters/{ns}/go-adapter-v2")
    wait_for(lambda: lora_modules(dep_dict(api, ns, "vllm"))[0]["path"].endswith("go-adapter-v2"),
             what="re-patched to the new adapter")
    assert dep_dict(api, ns, "vllm")["metadata"]["generation"] == 3

    # Someone (a GitOps sync) writes the args back as they were in Git: golora puts its part back.
    apps(api).patch_namespaced_deployment("vllm", ns, {"spec": {"template": {"spec": {"containers": [
        {"name": "vllm", "args": [QWEN_AWQ]}]}}}})
    wait_for(lambda: "--enable-lora" in container(dep_dict(api, ns, "vllm"))["args"], what="re-patched after revert")
    # ... and what finally rolls out serves the new version.
    obj = wait_phase(api, ns, "go-adapter", "Serving", timeout=ROLLOUT)
    assert lora_modules(wait_settled(api, ns, "vllm")[0])[0]["path"].endswith("go-adapter-v2")


def test_explicit_adapter_path_is_checked_by_a_validation_job(api, namespace, operator, node_agent):
    """The operator cannot read a namespace's PVC: a validation Job (the real Job controller's
    Pod, run by the node agent) checks the files with the trainer's validator and reports
    status.adapterCheck."""
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
    assert condition(obj, "AdapterValidated")["reason"] == "FilesValidated"
    assert obj["status"]["adapterCheck"]["ok"] is True and obj["status"]["adapter"]["rank"] == 64
    args = container(dep_dict(api, ns, "vllm"))["args"]
    assert args[args.index("--max-lora-rank") + 1] == "64"
    generation = dep_dict(api, ns, "vllm")["metadata"]["generation"]

    create_serving(api, ns, "dora", "go-dora", adapterPath="adapters/dora", deployments=["vllm"])
    obj = wait_phase(api, ns, "dora", "Failed")
    c = condition(obj, "AdapterValidated")
    assert c["reason"] == "InvalidAdapter" and "DoRA" in c["message"]
    assert "go-dora" not in json.dumps(container(dep_dict(api, ns, "vllm"))["args"])
    assert dep_dict(api, ns, "vllm")["metadata"]["generation"] == generation  # refused: no write


def test_payload_is_narrow_server_side_apply(api, namespace, operator, node_agent):
    """golora's fields are owned by the field manager 'golora' (so Argo CD can ignore exactly them)."""
    ns = namespace
    create_deployment(api, ns, vllm_deployment("vllm", command=["vllm", "serve"], args=[QWEN_AWQ]))
    succeeded_training(api, ns, "go-adapter", store=node_agent.claim_dir(ns, "golora-store"))
    create_serving(api, ns, "go-adapter", "go-adapter", training="go-adapter", deployments=["vllm"])
    wait_phase(api, ns, "go-adapter", "Serving", timeout=ROLLOUT)
    dep, = wait_settled(api, ns, "vllm")  # nothing moves any more
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
    now = dep_dict(api, ns, "vllm")
    assert now["metadata"]["resourceVersion"] == dep["metadata"]["resourceVersion"], (dep, now)
    assert serving(api, ns, "go-adapter")["status"] == status_before
