"""``make demo``: the whole golora loop on this machine.

Starts the real local control plane, installs the CRDs, runs the operator as its own
process (``python -m golora``), applies ``manifests/demo``, shows ``kubectl get golora``
as the objects progress, and tears everything down.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

from .binaries import repo_root
from .cluster import ControlPlane
from .crds import install_crds

NAMESPACE = "golora-demo"


def _objects(plane: ControlPlane) -> list[dict]:
    out = plane.kubectl("get", "golora", "-n", NAMESPACE, "-o", "yaml").stdout
    return yaml.safe_load(out)["items"]


def main() -> int:
    root = repo_root() or Path.cwd()
    t0 = time.monotonic()
    with ControlPlane() as plane:
        print(f"control plane up at {plane.apiserver_url} in {time.monotonic() - t0:.1f}s")
        install_crds(plane, root / "crds")
        env = {**os.environ, "KUBECONFIG": str(plane.kubeconfig)}
        log = open(plane.workdir / "operator.log", "wb")  # noqa: SIM115
        operator = subprocess.Popen([sys.executable, "-m", "golora"], env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            print(plane.kubectl("apply", "-k", str(root / "manifests" / "demo")).stdout)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                items = _objects(plane)
                if items and all((i.get("status") or {}).get("phase") for i in items):
                    break
                time.sleep(0.5)
            print(plane.kubectl("get", "golora", "-n", NAMESPACE, "-o", "wide").stdout)
            for item in _objects(plane):
                conds = {c["type"]: f"{c['status']} ({c['reason']})" for c in item["status"].get("conditions", [])}
                print(f"{item['kind']}/{item['metadata']['name']}: phase={item['status'].get('phase')} {conds}")
        finally:
            operator.terminate()
            try:
                operator.wait(15)
            except subprocess.TimeoutExpired:
                operator.kill()
            log.close()
    print(f"demo finished in {time.monotonic() - t0:.1f}s; control plane stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
