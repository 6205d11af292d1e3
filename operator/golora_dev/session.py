"""One local golora installation for a program's lifetime: the control plane with golora's
CRDs, the operator as its own process (``python -m golora``) and the node agent.

``make demo`` and the benches under ``bench/`` start and stop exactly this; the tests use
their own session fixtures (tests/conftest.py) so that one cluster serves the whole run."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .binaries import repo_root
from .cluster import ControlPlane
from .crds import install_crds
from .images import local_images
from .nodeagent import NodeAgent


@dataclass
class LocalGolora:
    plane: ControlPlane
    agent: NodeAgent
    operator: subprocess.Popen
    operator_log: Path


@contextmanager
def local_golora(*, vllm_bin: Path | None = None, start_agent: bool = True,
                 operator_env: dict[str, str] | None = None) -> Iterator[LocalGolora]:
    """Everything up on free ports; everything stopped and removed on exit.

    ``start_agent=False`` leaves the node out until the caller calls ``agent.start()`` (the
    operator bench measures Job creation before any node exists). ``vllm_bin``: the vLLM
    installation the ``vllm/vllm-openai`` image maps to (default: the stand-in server)."""
    root = repo_root() or Path.cwd()
    with ControlPlane() as plane:
        install_crds(plane, root / "crds")
        workdir = plane.workdir / "node-agent"
        agent = NodeAgent(plane, workdir, None, local_images(workdir, root / ".bin" / "golora-extract", vllm_bin))
        log_path = plane.workdir / "operator.log"
        env = {**os.environ, **(operator_env or {}), "KUBECONFIG": str(plane.kubeconfig)}
        with open(log_path, "wb") as log:
            operator = subprocess.Popen([sys.executable, "-m", "golora"], env=env, stdout=log,
                                        stderr=subprocess.STDOUT)
            try:
                if start_agent:
                    agent.start()
                yield LocalGolora(plane, agent, operator, log_path)
            finally:
                agent.stop()
                operator.terminate()
                try:
                    operator.wait(15)
                except subprocess.TimeoutExpired:
                    operator.kill()
                    operator.wait()
