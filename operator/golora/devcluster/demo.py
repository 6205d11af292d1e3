"""``make demo``: the whole golora loop on this machine.

Starts the real local control plane, installs the CRDs, runs the operator as its own
process (``python -m golora``) and the local Job runner (the kubelet stand-in), applies
``manifests/demo``, shows ``kubectl get golora`` as the objects progress, and tears it all
down. The store is kept in ``.demo/store`` (or ``$GOLORA_DEMO_STORE``) so the dataset and
adapter can be inspected. Exit status 0 only when the dataset and the training succeeded and
the adapter was patched into the sample vLLM Deployment.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

from .binaries import repo_root
from .cluster import ControlPlane
from .crds import install_crds
from .jobrunner import LocalJobRunner

NAMESPACE = "golora-demo"
TERMINAL = {"Succeeded", "Failed", "Invalid"}
# AdapterServing: patched and waiting for pods is as far as a control plane without a kubelet goes.
SERVING_DONE = {"RollingOut", "RolledOut", "Serving", "Failed", "Invalid"}


def _go_root() -> Path:
    return Path(subprocess.run(["go", "env", "GOROOT"], capture_output=True, text=True, check=True).stdout.strip())


def _objects(plane: ControlPlane) -> list[dict]:
    return yaml.safe_load(plane.kubectl("get", "golora", "-n", NAMESPACE, "-o", "yaml").stdout)["items"]


def _phases(items: list[dict]) -> dict[str, str]:
    return {f"{i['kind']}/{i['metadata']['name']}": (i.get("status") or {}).get("phase") or "" for i in items}


def watch(plane: ControlPlane, done: set[str], timeout: float) -> dict[str, str]:
    """Print `kubectl get golora` whenever a phase changes, until every object in ``done``
    (kind/name) is terminal or the timeout passes."""
    last: dict[str, str] = {}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        phases = _phases(_objects(plane))
        if phases != last:
            print(plane.kubectl("get", "golora", "-n", NAMESPACE).stdout, flush=True)
            last = phases
        if all(phases.get(k) in (SERVING_DONE if k.startswith("AdapterServing/") else TERMINAL) for k in done):
            break
        time.sleep(1)
    return last


def main() -> int:
    root = repo_root() or Path.cwd()
    store = Path(os.environ.get("GOLORA_DEMO_STORE") or root / ".demo" / "store")
    shutil.rmtree(store, ignore_errors=True)
    store.mkdir(parents=True)
    extractor = root / ".bin" / "golora-extract"
    from golora_trainer.tiny import TinySpec, ensure_tiny

    t_model = time.monotonic()
    tiny = ensure_tiny(TinySpec(pretrain_steps=300))  # cached after the first build (~1-2 min)
    shutil.copytree(tiny, store / "models" / "tiny-go")
    print(f"tiny Qwen2-architecture base model ready in {time.monotonic() - t_model:.1f}s ({tiny})", flush=True)
    t0 = time.monotonic()
    with ControlPlane() as plane:
        print(f"control plane up at {plane.apiserver_url} in {time.monotonic() - t0:.1f}s", flush=True)
        install_crds(plane, root / "crds")
        env = {**os.environ, "KUBECONFIG": str(plane.kubeconfig)}
        log = open(plane.workdir / "operator.log", "wb")  # noqa: SIM115
        operator = subprocess.Popen([sys.executable, "-m", "golora"], env=env, stdout=log, stderr=subprocess.STDOUT)
        runner = LocalJobRunner(plane, plane.workdir / "jobs",
                                claim_dirs={"go-src": _go_root(), "golora-store": store},
                                executables={"golora-extract": str(extractor), "python": sys.executable})
        try:
            runner.start()
            print(plane.kubectl("apply", "-k", str(root / "manifests" / "demo")).stdout, flush=True)
            phases = watch(plane, {"GoDataset/stdlib", "LoraTraining/go-adapter", "AdapterServing/go-adapter"},
                           timeout=900)
            for item in _objects(plane):
                conds = {c["type"]: f"{c['status']} ({c['reason']})" for c in item["status"].get("conditions", [])}
                print(f"{item['kind']}/{item['metadata']['name']}: {item['status'].get('message')} {conds}")
            deployment = yaml.safe_load(plane.kubectl("get", "deployment", "vllm", "-n", NAMESPACE, "-o", "yaml").stdout)
            engine = next(c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == "vllm")
            print("\nDeployment vllm, container vllm, args after golora's patch:")
            for arg in engine.get("args", []):
                print(f"  {arg}")
            print(f"\nstore kept at {store}:")
            for path in sorted(p for p in store.rglob("*") if p.is_file() and "checkpoint" not in str(p)):
                print(f"  {path.relative_to(store)}  {path.stat().st_size} bytes")
        finally:
            runner.stop()
            operator.terminate()
            try:
                operator.wait(15)
            except subprocess.TimeoutExpired:
                operator.kill()
            log.close()
    print(f"demo finished in {time.monotonic() - t0:.1f}s; control plane stopped")
    ok = all(phases.get(k) == "Succeeded" for k in ("GoDataset/stdlib", "LoraTraining/go-adapter")) and \
        phases.get("AdapterServing/go-adapter") in {"RollingOut", "RolledOut", "Serving"}
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
