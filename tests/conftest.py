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

# With xdist workers sharing the cores, torch and vLLM (in the tests, in Pods, in the demo)
# each take one OpenMP thread: with torch's default of one thread per core, two busy processes
# on two cores slowed CPU training up to 7x (a 40-step run on the cluster: 362 s, 55 s with one).
if int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0")) > 1:
    os.environ.setdefault("OMP_NUM_THREADS", "1")


CLUSTER_GROUP, LOCAL_GROUP = "cluster", "local"


@pytest.hookimpl(tryfirst=True)  # before xdist reads the marks
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Two groups for pytest-xdist's ``--dist loadgroup`` (``make test`` runs two workers):
    every test that uses the session's cluster goes to one worker, so one control plane, one
    operator and one node agent serve them all; the rest (unit tests, CPU training, the demo
    with its own cluster) runs beside it on the other. Without xdist the marks do nothing."""
    for item in items:
        group = CLUSTER_GROUP if "cluster" in item.fixturenames else LOCAL_GROUP
        item.add_marker(pytest.mark.xdist_group(group))


def pytest_collection_finish(session: pytest.Session) -> None:
    """Fail loudly if xdist did not take the groups (it keys them on a suffix of each node id;
    pytest 9.2 made that a no-op, pytest-xdist#1386): two workers would each start a cluster."""
    if getattr(session.config.option, "loadgroup", False) and session.items \
            and "@" not in session.items[0].nodeid:
        raise pytest.UsageError("pytest-xdist ignored the test groups (--dist loadgroup): this pytest and "
                                "pytest-xdist do not work together; see pyproject.toml's pin")


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
    """etcd, kube-apiserver, kube-scheduler and kube-controller-manager (all real), with
    golora's CRDs installed and served. Pods run only where ``node_agent`` is used."""
    from golora_dev import ControlPlane
    from golora_dev.crds import install_crds

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
def namespace(api: Any, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace per test, deleted afterwards (the real namespace controller empties it).

    With ``node_agent`` in the test, it also gets the claims golora's Jobs mount, as
    hostPath PersistentVolumes: ``golora-store`` (a fresh directory), ``go-src`` (GOROOT:
    path ``src`` is the standard library) and ``fixture-src`` (tests/fixtures/gotree)."""
    import kubernetes

    name = f"t-{uuid.uuid4().hex[:10]}"
    core = kubernetes.client.CoreV1Api(api)
    core.create_namespace({"metadata": {"name": name}})
    # The real service-account controller creates "default" within a moment; Pods need it.
    wait_for(lambda: core.list_namespaced_service_account(name, field_selector="metadata.name=default").items,
             timeout=30, interval=0.1, what="default ServiceAccount")
    if "node_agent" in request.fixturenames:
        agent = request.getfixturevalue("node_agent")
        agent.claim(name, "golora-store")
        agent.claim(name, "go-src", go_root(), read_only=True)
        agent.claim(name, "fixture-src", FIXTURE_TREE, read_only=True)
    yield name
    core.delete_namespace(name, propagation_policy="Background")


@pytest.fixture(scope="session")
def operator(cluster: Any) -> Iterator[Any]:
    """The golora operator running in-process against the control plane (kopf's KopfRunner)."""
    from tests.operator_runner import OperatorProcess

    with OperatorProcess(cluster) as op:
        yield op


FIXTURE_TREE = REPO / "tests" / "fixtures" / "gotree"
EXTRACTOR = REPO / ".bin" / "golora-extract"


def go_root() -> Path:
    from golora_dev.binaries import go_root as toolchain_root

    return toolchain_root()


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
def node_agent(cluster: Any, tmp_path_factory: pytest.TempPathFactory, extractor_binary: Path) -> Iterator[Any]:
    """The node agent (the named stand-in for the kubelet) for the whole session: a CPU node
    with the machine's capacity, a ``gpu-pool`` node with 8 simulated GPUs for model-server
    Deployments, and a ``t4`` node with one (Tesla-T4 labels, compute capability 7.5)."""
    from golora_dev.images import local_images
    from golora_dev.nodeagent import NodeAgent, NodeSpec

    workdir = tmp_path_factory.mktemp("nodeagent")
    nodes = [NodeSpec(), NodeSpec.gpu_node("gpu-pool", product="NVIDIA-H100-80GB-HBM3", compute_major=9,
                                          compute_minor=0, memory_mib=81559, gpus=8),
             NodeSpec.gpu_node("t4")]
    with NodeAgent(cluster, workdir, nodes, local_images(workdir, extractor_binary)) as agent:
        wait_for(lambda: _nodes_ready(cluster, len(nodes)), timeout=30, what="nodes Ready")
        yield agent


def _nodes_ready(cluster: Any, count: int) -> bool:
    out = cluster.kubectl("get", "nodes", "-o", "jsonpath={.items[*].status.conditions[?(@.type=='Ready')].status}")
    return out.stdout.split().count("True") >= count
