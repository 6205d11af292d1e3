"""The GPU benchmark's plumbing, on CPU: a session lent a GPU for 15 minutes must not find it broken."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from .conftest import REPO


@pytest.mark.timeout(1000)
def test_train_gpu_bench_smoke_runs_and_compares_samplers(tmp_path):
    out = tmp_path / "smoke"
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / "train_gpu.py"), "--smoke", "--out", str(out), "--work",
         str(tmp_path / "work"), "--runs", "golora,golora-hf,golora-liger,golora-profile", "--steps", "3",
         # the bench skips runs past its budget (400 s by default): a busy CI machine needs more
         "--budget", "900"],
        capture_output=True, text=True, timeout=960)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads(out.with_suffix(".json").read_text())
    runs = report["runs"]
    for name in ("golora", "golora-hf", "golora-liger", "golora-profile"):
        assert runs[name]["exit_code"] == 0 and runs[name]["tokens_per_second"] > 0, runs[name]
    assert len(runs["golora"]["step_seconds"]) == 3
    assert 0 < runs["golora"]["padding_efficiency"] <= 1 and runs["golora-hf"]["padding_efficiency"] is None
    assert report["summary"]["buckets_over_group_by_length"] == round(
        runs["golora"]["tokens_per_second"] / runs["golora-hf"]["tokens_per_second"], 2)
    # No GPU: Liger's Triton kernels are not applied, so no liger/golora ratio is claimed.
    assert runs["golora-liger"]["liger_modules"] == 0 and report["summary"]["liger_over_golora"] is None
    assert "steps," in out.with_suffix(".profile.txt").read_text()
    assert "seconds per optimizer step" in out.with_suffix(".txt").read_text()
