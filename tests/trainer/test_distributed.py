"""Data-parallel training on CPU (gloo): the same run as 1 process and as 2 under torchrun
(``golora_trainer launch``, what the Job runs for ``placement.gpus: 2``) must train alike."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from golora.api.worker import EXIT_OK

from .conftest import DATASET, REPO, link_model
from .helpers import trainer_config

pytestmark = pytest.mark.train

STEPS = 6
LOSS_LINE = re.compile(rf" step (\d+)/{STEPS} loss ([0-9.]+)")


def _doc(store, model_dir, name):
    return trainer_config(
        store, train=f"{DATASET}/train.jsonl", eval_=f"{DATASET}/eval.jsonl", output=f"adapters/ns/{name}",
        spec={
            "baseModel": {"path": link_model(store, model_dir, "tiny-base")},
            # dropout 0: the only difference left between the runs is the order of float sums
            "lora": {"dropout": 0.0},
            "training": {"maxSteps": STEPS, "maxSamples": 160, "learningRate": 1e-3, "effectiveBatchSize": 8,
                         "microBatchSize": 4, "maxSeqLength": 512, "loggingSteps": 1, "checkpointSteps": 3},
            "qualityGate": {"enabled": False},
        },
        statusTarget={"namespace": "ns", "name": name},
    )


def _train(tmp_path, doc, *launcher: str) -> tuple[subprocess.CompletedProcess, dict[int, float]]:
    path = tmp_path / f"{doc['statusTarget']['name']}.json"
    path.write_text(json.dumps(doc))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "operator"), str(REPO / "trainer_image")]),
           "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "golora_trainer", *launcher, "run", "--config", str(path)]
                          if not launcher else
                          [sys.executable, "-m", "golora_trainer", *launcher],
                          env={**env, "GOLORA_CONFIG": path.read_text()}, capture_output=True, text=True,
                          timeout=600)
    losses = {int(m.group(1)): float(m.group(2)) for m in LOSS_LINE.finditer(proc.stdout + proc.stderr)}
    return proc, losses


def test_two_ranks_train_like_one_process(go_store, tiny_base, tmp_path, status_server):
    one, one_losses = _train(tmp_path, _doc(go_store, tiny_base, "one"))
    assert one.returncode == EXIT_OK, one.stderr[-3000:]
    two, two_losses = _train(tmp_path, _doc(go_store, tiny_base, "two"), "launch", "--nproc-per-node", "2")
    log = two.stdout + two.stderr
    assert two.returncode == EXIT_OK, log[-4000:]
    assert "torchrun --standalone --nnodes 1 --nproc-per-node 2" in log and "rank 1 of 2" in log

    r1 = json.loads((go_store / "adapters/ns/one/result.json").read_text())
    r2 = json.loads((go_store / "adapters/ns/two/result.json").read_text())
    # the effective batch is kept: 4 x 2 accumulation on one rank, 4 x 1 on each of two
    assert (r1["worldSize"], r1["microBatchSize"], r1["gradientAccumulationSteps"]) == (1, 4, 2)
    assert (r2["worldSize"], r2["microBatchSize"], r2["gradientAccumulationSteps"]) == (2, 4, 1)
    assert r1["globalStep"] == r2["globalStep"] == STEPS
    # same data, seed and samples per step: the same loss curve, up to float summation order
    assert sorted(one_losses) == sorted(two_losses) == list(range(1, STEPS + 1)), (one_losses, two_losses)
    for step in one_losses:
        assert two_losses[step] == pytest.approx(one_losses[step], rel=2e-3, abs=2e-3), (step, one_losses, two_losses)
    assert r2["evalLoss"] == pytest.approx(r1["evalLoss"], rel=5e-3)
    assert r2["evalLoss"] < r2["baseEvalLoss"]
    # checkpoints were written once, by rank 0, with each rank's RNG state
    ckpt = go_store / "adapters/ns/two/checkpoints/checkpoint-6"
    assert (ckpt / "trainer_state.json").is_file()
    assert {p.name for p in ckpt.glob("rng_state*.pth")} == {"rng_state_0.pth", "rng_state_1.pth"}

    # rank 0 alone reports: one run's worth of stages and one result; tokens counted over both ranks
    def sent(name, key):
        return [r["body"]["status"][key] for r in status_server.requests
                if r["code"] == 200 and r["path"].endswith(f"/{name}/status") and key in r["body"]["status"]]

    assert [p["stage"] for p in sent("two", "progress")].count("loading") == 1
    assert len(sent("two", "result")) == 1 and sent("two", "result")[0]["worldSize"] == 2
    tokens = {name: max(p.get("numTokens") or 0 for p in sent(name, "progress")) for name in ("one", "two")}
    # Summed over both ranks (one rank alone would report about half). Not exact: the count
    # comes from the last logged step's progress report, which was 12737 vs 11748 in one CI run.
    assert tokens["one"] > 0 and tokens["two"] == pytest.approx(tokens["one"], rel=0.15), tokens
    assert r2["tokensPerSecond"] and r1["tokensPerSecond"]
    print(f"\n1 process vs 2 ranks, {STEPS} steps: losses {one_losses} vs {two_losses}; tokens/s "
          f"{r1['tokensPerSecond']} vs {r2['tokensPerSecond']} (2 ranks summed)")
