"""What bench/serving_cluster.py and bench/serving_runtime.py both start from: the tests' store
with a trained adapter (tests/vllm/helpers.py, not timed), the local cluster with the operator
as its own process (``golora_dev.session.local_golora``), the demo namespace with that store as
its ``golora-store`` claim, and the machine's figures next to the measured ones."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path[:0] = [str(REPO), str(REPO / "operator"), str(REPO / "trainer_image")]

import kubernetes  # noqa: E402
from golora_dev import vllm_local  # noqa: E402
from golora_dev.nodeagent import NodeAgent  # noqa: E402
from golora_dev.session import local_golora  # noqa: E402

from tests.vllm import helpers  # noqa: E402

NS = helpers.NAMESPACE  # the adapter lies at adapters/<NS>/go-adapter on the store

Measure = Callable[[Any, NodeAgent, Path], dict]


def arguments(name: str, description: str, out_help: str) -> argparse.ArgumentParser:
    """The options both benches take (``--out`` defaults to bench/results/<name>)."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--out", default=str(BENCH / "results" / name), help=out_help)
    ap.add_argument("--work", default=None, help="store directory (default: a temporary one)")
    ap.add_argument("--steps", type=int, default=20, help="adapter training steps (not timed)")
    return ap


def run_on_local_cluster(name: str, opts: argparse.Namespace, measure: Measure) -> tuple[dict, Path]:
    """Train the adapter, start the local cluster and the operator, run ``measure(api, agent,
    store)`` in namespace NS, stop everything; returns its figures (with the cores, the load
    average before and after, and the training steps) and the work directory."""
    if not vllm_local.installed():
        raise SystemExit(f"vLLM is not installed at {vllm_local.vllm_venv()}: run `make vllm`")
    load0 = os.getloadavg()[0]
    prefix = f"golora-{name.replace('_', '-')}-"
    work = Path(opts.work) if opts.work else Path(tempfile.mkdtemp(prefix=prefix))
    store = helpers.make_store(work)
    helpers.train_adapter(store, steps=opts.steps)

    with local_golora() as local:
        api = kubernetes.config.new_client_from_config(config_file=str(local.plane.kubeconfig))
        kubernetes.client.CoreV1Api(api).create_namespace({"metadata": {"name": NS}})
        local.agent.claim(NS, "golora-store", store)
        result = measure(api, local.agent, store)
    result.update(cores=os.cpu_count(), load_average_1m=[round(load0, 2), round(os.getloadavg()[0], 2)],
                  train_steps=opts.steps)
    return result, work


def write_report(text: str, out: Path) -> None:
    """Print the report and write it to OUT.txt."""
    print(text)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".txt").write_text(text)
