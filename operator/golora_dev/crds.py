"""Install CRDs and wait until they are really usable (the way envtest does): Established,
served by discovery, and published in OpenAPI (so ``kubectl explain`` works)."""

from __future__ import annotations

import time
from pathlib import Path

import yaml

from .cluster import ControlPlane, KubectlError


def install_crds(plane: ControlPlane, directory: Path, timeout: float = 30) -> list[str]:
    files = sorted(directory.glob("*.yaml"))
    names = [yaml.safe_load(f.read_text())["metadata"]["name"] for f in files]
    plane.kubectl("apply", "--server-side", "--field-manager=golora-install", *[f"-f={f}" for f in files])
    plane.kubectl("wait", "--for=condition=Established", f"--timeout={int(timeout)}s",
                  *[f"crd/{n}" for n in names])
    deadline = time.monotonic() + timeout
    for name in names:
        plural = name.split(".", 1)[0]
        while True:
            try:
                plane.kubectl("explain", plural)
                break
            except KubectlError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
    return names
