"""Shared fixtures. One real control plane per test session (started lazily, only when a
test asks for it); unit tests never start one."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
CRDS = REPO / "crds"


def wait_for(predicate: Callable[[], Any], timeout: float = 30, interval: float = 0.2, what: str = "") -> Any:
    """Poll until ``predicate()`` is truthy; return its value or fail with ``what``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate} (last: {last!r})")


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """etcd + kube-apiserver with golora's CRDs installed and served."""
    from golora.devcluster import ControlPlane
    from golora.devcluster.crds import install_crds

    workdir = tmp_path_factory.mktemp("controlplane")
    plane = ControlPlane(workdir=workdir)
    plane.start()
    try:
        os.environ["KUBECONFIG"] = str(plane.kubeconfig)
        install_crds(plane, CRDS)
        yield plane
    finally:
        plane.stop()


@pytest.fixture(scope="session")
def api(cluster: Any) -> Any:
    """A kubernetes ApiClient as the admin user."""
    import kubernetes

    return kubernetes.config.new_client_from_config(config_file=str(cluster.kubeconfig))


@pytest.fixture()
def namespace(api: Any) -> str:
    """A fresh namespace per test (namespaces never finish deleting without a controller-manager)."""
    import kubernetes

    name = f"t-{uuid.uuid4().hex[:10]}"
    kubernetes.client.CoreV1Api(api).create_namespace({"metadata": {"name": name}})
    return name


@pytest.fixture(scope="session")
def operator(cluster: Any) -> Iterator[Any]:
    """The golora operator running in-process against the control plane (kopf's KopfRunner)."""
    from tests.operator_runner import OperatorProcess

    with OperatorProcess(cluster) as op:
        yield op


FIXTURE_TREE = REPO / "tests" / "fixtures" / "gotree"
EXTRACTOR = REPO / ".bin" / "golora-extract"


def go_root() -> Path:
    import subprocess

    return Path(subprocess.run(["go", "env", "GOROOT"], capture_output=True, text=True, check=True).stdout.strip())


@pytest.fixture(scope="session")
def extractor_binary() -> Path:
    """The Go extractor, built if missing (``make test`` builds it first)."""
    import subprocess

    if not EXTRACTOR.exists():
        EXTRACTOR.parent.mkdir(exist_ok=True)
        subprocess.run(["go", "build", "-trimpath", "-o", str(EXTRACTOR), "./cmd/golora-extract"],
                       cwd=REPO / "extractor", check=True)
    return EXTRACTOR


@pytest.fixture(scope="session")
def job_runner(cluster: Any, tmp_path_factory: pytest.TempPathFactory, extractor_binary: Path) -> Iterator[Any]:
    """The local Job runner (the named stand-in for the kubelet) for the whole session.

    Claims: ``go-src`` is the Go toolchain's GOROOT (path ``src`` = the standard library),
    ``fixture-src`` the small tree in tests/fixtures/gotree; any other claim is a fresh
    directory per namespace (the store)."""
    import sys

    from golora.devcluster.jobrunner import LocalJobRunner

    runner = LocalJobRunner(
        cluster,
        tmp_path_factory.mktemp("jobrunner"),
        claim_dirs={"go-src": go_root(), "fixture-src": FIXTURE_TREE},
        executables={"golora-extract": str(extractor_binary), "python": sys.executable},
        # The trainer's quality gate runs golora-extract check: as in the trainer image, on PATH.
        extra_env={"PATH": f"{extractor_binary.parent}{os.pathsep}{os.environ.get('PATH', '')}"},
    )
    with runner:
        yield runner
