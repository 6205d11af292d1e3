"""Find (or build) etcd, kube-apiserver, kube-scheduler, kube-controller-manager and kubectl.

Order: ``TEST_ASSET_<NAME>`` (e.g. ``TEST_ASSET_KUBE_SCHEDULER``), then a
``KUBEBUILDER_ASSETS`` directory (envtest's layout, so users with envtest binaries skip
the build), then the cache that ``hack/controlplane/build.sh`` fills from Go modules
(building on first use).
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

NAMES = {name: "TEST_ASSET_" + name.upper().replace("-", "_") for name in
         ("etcd", "kube-apiserver", "kube-scheduler", "kube-controller-manager", "kubectl")}


@dataclass(frozen=True)
class Binaries:
    etcd: Path
    kube_apiserver: Path
    kube_scheduler: Path
    kube_controller_manager: Path
    kubectl: Path


def repo_root() -> Path | None:
    """The source checkout this package runs from (editable install), if any."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "hack" / "controlplane" / "build.sh").is_file():
            return parent
    return None


def _from_env() -> dict[str, Path]:
    found: dict[str, Path] = {}
    assets = os.environ.get("KUBEBUILDER_ASSETS")
    for name, var in NAMES.items():
        if os.environ.get(var):
            found[name] = Path(os.environ[var])
        elif assets and (Path(assets) / name).is_file():
            found[name] = Path(assets) / name
    return found


def build() -> Path:
    """Run the Go build (a no-op when the versioned cache is warm); returns the bin dir."""
    root = repo_root()
    if root is None:
        raise RuntimeError(
            "no control-plane binaries: set KUBEBUILDER_ASSETS to a directory with "
            f"{', '.join(NAMES)}, or run from a golora checkout (hack/controlplane/build.sh)"
        )
    out = subprocess.run(
        ["bash", str(root / "hack" / "controlplane" / "build.sh")],
        check=True, stdout=subprocess.PIPE, text=True,
    )
    return Path(out.stdout.strip().splitlines()[-1])


def find() -> Binaries:
    found = _from_env()
    if len(found) < len(NAMES):
        bindir = build()
        for name in NAMES:
            found.setdefault(name, bindir / name)
    for name, path in found.items():
        if not os.access(path, os.X_OK):
            raise RuntimeError(f"{name} at {path} is not an executable file")
    return Binaries(**{name.replace("-", "_"): found[name] for name in NAMES})


def go_root() -> Path:
    """The Go toolchain's GOROOT (its ``src`` is the standard library the demo and tests extract)."""
    out = subprocess.run(["go", "env", "GOROOT"], capture_output=True, text=True, check=True)
    return Path(out.stdout.strip())
