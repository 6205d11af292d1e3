"""The GitOps tests' Argo CD: started once per session, only when one of them asks for it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture(scope="session")
def argocd(cluster: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A real Argo CD (redis, repo-server, application-controller) on the session's cluster,
    with golora's health checks from manifests/argocd."""
    from golora_dev.argocd import ArgoCD, ArgoCDUnavailable

    argo = ArgoCD(cluster, tmp_path_factory.mktemp("argocd"))
    try:
        argo.start()
    except ArgoCDUnavailable as exc:
        pytest.skip(f"Argo CD cannot run here: {exc}")
    try:
        yield argo
    finally:
        argo.stop()
