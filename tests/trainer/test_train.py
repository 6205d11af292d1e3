"""CPU training of the tiny Go model, end to end, through ``golora_trainer.train.run`` — the code
path the LoraTraining Job runs for Qwen2.5-7B."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from golora.api.worker import (
    EXIT_OK,
    EXIT_QUALITY_GATE_FAILED,
    GATE_DEGENERATE_OUTPUT,
    GATE_PASSED,
    REASON_QUALITY_GATE_FAILED,
    TrainerConfig,
)
from golora.vllm import validate_adapter_dir
from golora_trainer.train import run

from .conftest import DATASET, REPO, link_model
from .helpers import trainer_config

pytestmark = pytest.mark.train

STAGES = ["loading", "preparing", "loading-model", "baseline", "training", "evaluating", "gate", "saving"]


def _doc(store, model_dir, name, output, training=None, gate=None, **extra):
    return trainer_config(
        store, train=f"{DATASET}/train.jsonl", eval_=f"{DATASET}/eval.jsonl", output=output,
        spec={
            "baseModel": {"path": link_model(store, model_dir, name)},
            "training": {"maxSteps": 40, "learningRate": 2e-4, "effectiveBatchSize": 8, "microBatchSize": 4,
                         "maxSeqLength": 1024, "loggingSteps": 5, "checkpointSteps": 20, **(training or {})},
            "qualityGate": {"prompts": 8, "maxNewTokens": 96, **(gate or {})},
        },
        **extra,
    )


def test_tiny_go_model_trains_passes_the_gate_and_reports(go_store, tiny_base, status_server, extractor_binary):
    doc = _doc(go_store, tiny_base, "tiny-base", "adapters/ns/demo",
               statusTarget={"namespace": "ns", "name": "demo"},
               extractor_binary=extractor_binary or "golora-extract-not-installed")
    code = run(TrainerConfig.model_validate(doc))
    out = go_store / "adapters/ns/demo"
    result = json.loads((out / "result.json").read_text())
    assert code == EXIT_OK, result.get("failure")

    # the loss went down and the adapter beats its base on held-out Go
    assert result["trainLoss"] < result["firstLoss"]
    assert result["evalLoss"] < result["baseEvalLoss"]
    # kubectl get shows these two to 3 decimals; the gate keeps the precise ones
    gate_losses = result["qualityGate"]["evalLoss"], result["qualityGate"]["baseEvalLoss"]
    assert (result["evalLoss"], result["baseEvalLoss"]) == tuple(round(x, 3) for x in gate_losses)
    assert result["evalTokenAccuracy"] > result["baseEvalTokenAccuracy"]
    # vLLM would load it
    check = validate_adapter_dir(out)
    assert check.ok, check.message
    assert check.base_model == str(go_store / "models/tiny-base") and check.rank == 16
    # result.json is complete
    for key in ("trainLoss", "evalLoss", "baseEvalLoss", "tokenAccuracy", "precision", "microBatchSize",
                "gradientAccumulationSteps", "samplesTruncated", "trainSamples", "tokensPerSecond", "adapterPath",
                "adapterSizeBytes", "qualityGate", "repetition", "globalStep", "evalTokens", "firstLoss",
                "lossImplementation", "finishedAt", "baseModel", "paddingEfficiency"):
        assert result[key] is not None, key
    assert result["precision"] == "fp32" and result["quantization"] == "none"  # CPU: no 4-bit, fp32
    assert (result["microBatchSize"], result["gradientAccumulationSteps"]) == (4, 2)
    assert result["globalStep"] == result["totalSteps"] == 40
    assert result["adapterPath"] == "adapters/ns/demo" and result["failure"] is None and result["exitCode"] == 0
    assert result["rank"] == 16
    assert 0.8 < result["paddingEfficiency"] <= 1.0  # length-bucketed micro-batches
    gate = result["qualityGate"]
    assert gate["passed"] is True and gate["reason"] == GATE_PASSED, gate["message"]
    adapter, base = gate["adapter"], gate["base"]  # the same prompts through both models
    assert adapter["whitespaceRatio"] < 0.5 and adapter["longestRepeatRun"] < 32 and adapter["distinct2"] >= 0.2
    assert adapter["eosRate"] > 0.5 and gate["prompts"] == adapter["prompts"] == base["prompts"] == 8
    assert gate["evalLossRatio"] < 1 and base["whitespaceRatio"] is not None and base["eosRate"] is not None
    assert len(gate["samples"]) == 3 and all(s["prompt"] and s["base"] is not None for s in gate["samples"])
    if extractor_binary:
        assert adapter["goParseRate"] is not None and adapter["goParseChecked"] == base["goParseChecked"] == 8
        assert result["goParseRate"] == adapter["goParseRate"]
        assert gate["comparison"] == f"parse {adapter['goParseRate']:.2f} vs {base['goParseRate']:.2f}"
        if (go_store / "SOURCE").read_text().startswith("golora-extract"):  # pairs with meta: stdlib type check
            assert adapter["typeCheckable"] == base["typeCheckable"] == 8
            assert adapter["typeCheckRate"] is not None and base["typeCheckRate"] is not None
        print(f"\ntiny model after 40 steps, 8 held-out stdlib prompts: parse {adapter['goParseRate']} vs base "
              f"{base['goParseRate']}, type-check {adapter.get('typeCheckRate')} vs {base.get('typeCheckRate')}, "
              f"whitespace {adapter['whitespaceRatio']:.3f} vs {base['whitespaceRatio']:.3f}, distinct-2 "
              f"{adapter['distinct2']:.3f} vs {base['distinct2']}, run {adapter['longestRepeatRun']} vs "
              f"{base['longestRepeatRun']}, EOS {adapter['eosRate']} vs {base['eosRate']}; {gate['comparison']}")
    else:
        assert adapter["goParseRate"] is None and gate["notes"]

    # live progress in status, then the same result
    progress = status_server.progress()
    stages = [p["stage"] for p in progress]
    assert [s for s in STAGES if s in stages] == STAGES and stages[-1] == "done"
    steps = [p["step"] for p in progress if p.get("stage") == "training" and "step" in p]
    assert steps == sorted(steps) and steps[-1] == 40
    training = [p for p in progress if p.get("stage") == "training" and p.get("loss") is not None]
    assert training and {"totalSteps", "epoch", "loss", "tokenAccuracy", "learningRate", "percent",
                         "summary"} <= set(training[-1])
    assert any("tokensPerSecond" in p and "etaSeconds" in p for p in training)
    final = status_server.results()[-1]
    assert {k: v for k, v in final.items() if k != "finishedAt"} == {
        k: v for k, v in result.items() if k != "finishedAt"}


def test_collapsed_adapter_is_stopped_by_the_gate(go_store, tiny_random, status_server):
    """The blog's failure, planted: a random base after 20 LoRA steps answers with whitespace only."""
    doc = _doc(go_store, tiny_random, "tiny-random", "adapters/ns/collapsed",
               training={"maxSteps": 20, "learningRate": 2e-4, "effectiveBatchSize": 4},
               statusTarget={"namespace": "ns", "name": "collapsed"})
    code = run(TrainerConfig.model_validate(doc))
    assert code == EXIT_QUALITY_GATE_FAILED == 5
    out = go_store / "adapters/ns/collapsed"
    assert not (out / "adapter_config.json").exists()  # nothing servable where AdapterServing looks
    rejected = json.loads((out / "rejected/result.json").read_text())
    assert validate_adapter_dir(out / "rejected").ok  # kept for inspection
    gate = rejected["qualityGate"]
    assert gate["passed"] is False and gate["reason"] == GATE_DEGENERATE_OUTPUT
    assert gate["adapter"]["whitespaceRatio"] > 0.5 and gate["adapter"]["longestRepeatRun"] >= 32
    # refused twice over: by the absolute collapse guard and against its own (random) base
    assert "collapse guard" in gate["message"] and "vs base" in gate["message"], gate["message"]
    assert gate["base"]["whitespaceRatio"] < gate["adapter"]["whitespaceRatio"]
    print(f"\ncollapsed adapter: {gate['comparison']}; {gate['message']}")
    assert rejected["failure"]["reason"] == REASON_QUALITY_GATE_FAILED
    assert rejected["trainLoss"] > 5  # a loss like the blog's 7.76
    assert status_server.results()[-1]["qualityGate"]["reason"] == GATE_DEGENERATE_OUTPUT
    assert status_server.results()[-1]["exitCode"] == 5


def _run_subprocess(config_path, env_extra=None):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "operator"), str(REPO / "trainer_image")]),
           "GOLORA_PROGRESS_INTERVAL": "1", **(env_extra or {})}
    return subprocess.Popen([sys.executable, "-m", "golora_trainer", "run", "--config", str(config_path)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_killed_run_resumes_from_its_last_checkpoint(go_store, tiny_base, tmp_path):
    doc = _doc(go_store, tiny_base, "tiny-base", "adapters/ns/resume",
               training={"maxSteps": 30, "checkpointSteps": 5, "loggingSteps": 5, "effectiveBatchSize": 4},
               gate={"enabled": False})
    config_path = tmp_path / "config.json"
    config_path.write_text(json.dumps(doc))
    ckpt = go_store / "adapters/ns/resume/checkpoints"

    proc = _run_subprocess(config_path)
    deadline = time.monotonic() + 180
    killed_after = None
    while time.monotonic() < deadline and proc.poll() is None:
        done = [int(p.name.split("-")[1]) for p in ckpt.glob("checkpoint-*") if (p / "trainer_state.json").exists()]
        if done and max(done) >= 10:
            killed_after = max(done)
            proc.send_signal(signal.SIGKILL)  # no chance to clean up: like a node failure
            break
        time.sleep(0.05)
    log = proc.communicate(timeout=60)[0]
    assert killed_after is not None, f"no checkpoint before the run ended:\n{log[-3000:]}"
    assert not (go_store / "adapters/ns/resume/adapter_config.json").exists()  # no half adapter

    doc["attempt"] = 2
    config_path.write_text(json.dumps(doc))
    proc = _run_subprocess(config_path)
    log = proc.communicate(timeout=300)[0]
    assert proc.returncode == EXIT_OK, log[-3000:]
    result = json.loads((go_store / "adapters/ns/resume/result.json").read_text())
    assert result["resumedFromStep"] >= killed_after >= 10
    assert result["globalStep"] == 30 and result["attempt"] == 2
    assert "resuming from" in log
    logged = [int(line.split("step ")[1].split("/")[0]) for line in log.splitlines() if " step " in line and "/30" in line]
    assert logged and min(logged) > killed_after  # the step counter continued
    assert validate_adapter_dir(go_store / "adapters/ns/resume").ok


def test_resume_from_the_final_checkpoint_trains_no_further_step(go_store, tiny_base):
    """A run killed after its last step (in the gate, or on the way out) is retried: the retry
    finds checkpoint-<maxSteps> and must evaluate that adapter, not train step maxSteps + 1.
    3 steps of a 10-step epoch: transformers' loop would enter the epoch again."""
    doc = _doc(go_store, tiny_base, "tiny-base", "adapters/ns/final",
               training={"maxSteps": 3, "maxSamples": 40, "effectiveBatchSize": 4, "checkpointSteps": 100,
                         "loggingSteps": 1},
               gate={"enabled": False})
    assert run(TrainerConfig.model_validate(doc)) == EXIT_OK
    ckpt = go_store / "adapters/ns/final/checkpoints"
    first = json.loads((go_store / "adapters/ns/final/result.json").read_text())
    assert first["globalStep"] == 3 and (ckpt / "checkpoint-3/trainer_state.json").is_file()

    doc["attempt"] = 2
    assert run(TrainerConfig.model_validate(doc)) == EXIT_OK
    second = json.loads((go_store / "adapters/ns/final/result.json").read_text())
    assert (second["resumedFromStep"], second["globalStep"], second["totalSteps"]) == (3, 3, 3)
    assert sorted(p.name for p in ckpt.glob("checkpoint-*")) == ["checkpoint-3"]
    # the trained weights came back from the checkpoint (a fresh LoRA would score the base's loss)
    assert second["evalLoss"] == pytest.approx(first["evalLoss"], abs=1e-3) and second["evalLoss"] < second["baseEvalLoss"]
    assert (second["firstLoss"], second["trainLoss"]) == (first["firstLoss"], first["trainLoss"])
    assert validate_adapter_dir(go_store / "adapters/ns/final").ok
