"""A CUDA OOM ends the attempt with reason OutOfMemory and its exit code; the next attempt,
with half the micro-batch (the operator's override), resumes and finishes."""

from __future__ import annotations

import json

import torch
from trl import SFTTrainer

from golora.api.worker import EXIT_OK, EXIT_OUT_OF_MEMORY, REASON_OUT_OF_MEMORY, TrainerConfig
from golora_trainer.train import run

from .conftest import DATASET, link_model
from .helpers import trainer_config

TARGET = {"namespace": "ns", "name": "oom"}


def _doc(store, model, output, **extra):
    return trainer_config(
        store, train=f"{DATASET}/train.jsonl", eval_=f"{DATASET}/eval.jsonl", output=output,
        spec={"baseModel": {"path": link_model(store, model, "tiny-random")}, "qualityGate": {"enabled": False},
              "training": {"maxSteps": 4, "checkpointSteps": 2, "loggingSteps": 1, "maxSamples": 40,
                           "microBatchSize": 4, "effectiveBatchSize": 4}},
        statusTarget=TARGET, **extra,
    )


def test_oom_inside_training_is_reported_with_its_exit_code(go_store, tiny_random, status_server, monkeypatch,
                                                            tmp_path):
    def oom(self, *args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 14.75 GiB total)")

    monkeypatch.setattr(SFTTrainer, "training_step", oom)
    code = run(TrainerConfig.model_validate(_doc(go_store, tiny_random, "adapters/ns/oom")))
    assert code == EXIT_OUT_OF_MEMORY == 3
    result = status_server.results()[-1]
    assert result["failure"]["reason"] == REASON_OUT_OF_MEMORY
    assert "Tried to allocate" in result["failure"]["message"]
    assert result["exitCode"] == 3 and result["microBatchSize"] == 4 and result["attempt"] == 1
    assert (tmp_path / "termination-log").read_text().startswith("OutOfMemory: CUDA out of memory")
    stages = [p.get("stage") for p in status_server.progress()]
    assert "training" in stages and stages[-1] == "failed"
    assert not (go_store / "adapters/ns/oom/adapter_config.json").exists()


def test_retry_with_half_the_micro_batch_succeeds(go_store, tiny_random, status_server, monkeypatch):
    monkeypatch.setenv("GOLORA_FAULT_OOM_ABOVE_MICRO_BATCH", "2")  # this "GPU" fits 2 sequences
    first = run(TrainerConfig.model_validate(_doc(go_store, tiny_random, "adapters/ns/retry")))
    assert first == EXIT_OUT_OF_MEMORY
    assert status_server.results()[-1]["microBatchSize"] == 4
    # the operator: attempt 2 with microBatchSize = 4 / 2
    second = run(TrainerConfig.model_validate(
        _doc(go_store, tiny_random, "adapters/ns/retry", attempt=2, microBatchSize=2)))
    assert second == EXIT_OK
    result = status_server.results()[-1]
    assert result["failure"] is None and result["attempt"] == 2
    assert result["microBatchSize"] == 2 and result["gradientAccumulationSteps"] == 2  # effective batch kept
    assert json.loads((go_store / "adapters/ns/retry/result.json").read_text())["exitCode"] == 0
