"""Divergence guard: NaN/inf loss, or loss far above the base eval loss, stops the run."""

from __future__ import annotations

import math
from types import SimpleNamespace

import torch
from trl import SFTTrainer

from golora.api.worker import EXIT_DIVERGED, REASON_DIVERGED, TrainerConfig
from golora_trainer.callbacks import DivergenceGuard
from golora_trainer.train import run

from .conftest import DATASET, link_model
from .helpers import trainer_config


def _state(step, max_steps=100):
    return SimpleNamespace(global_step=step, max_steps=max_steps)


def test_guard_stops_on_nan_and_on_runaway_loss():
    for bad in (math.nan, math.inf):
        guard, control = DivergenceGuard(1.0, min_warmup=2), SimpleNamespace(should_training_stop=False,
                                                                              should_save=True)
        guard.on_log(None, _state(1), control, logs={"loss": bad})
        assert control.should_training_stop and not control.should_save and "became" in guard.reason

    guard = DivergenceGuard(1.0, warmup_ratio=0.1, min_warmup=2)
    control = SimpleNamespace(should_training_stop=False, should_save=False)
    guard.on_train_begin(None, _state(0), control)
    assert guard.warmup_steps == 10
    guard.on_log(None, _state(5), control, logs={"loss": 7.76})  # in warm-up: tolerated (warned)
    assert not control.should_training_stop and guard.warned
    guard.on_log(None, _state(20), control, logs={"loss": 2.0})
    assert not control.should_training_stop
    guard.on_log(None, _state(30), control, logs={"loss": 7.76})  # the blog's loss vs a base of 1.0
    assert control.should_training_stop and "3x the base" in guard.reason


def test_nan_loss_ends_the_run_as_diverged(go_store, tiny_random, status_server, monkeypatch):
    real = SFTTrainer.compute_loss

    def nan_loss(self, *args, **kwargs):
        out = real(self, *args, **kwargs)
        if isinstance(out, tuple):
            return (out[0] * torch.nan, *out[1:])
        return out * torch.nan

    monkeypatch.setattr(SFTTrainer, "compute_loss", nan_loss)
    doc = trainer_config(
        go_store, train=f"{DATASET}/train.jsonl", eval_=f"{DATASET}/eval.jsonl", output="adapters/ns/nan",
        spec={"baseModel": {"path": link_model(go_store, tiny_random, "tiny-random")},
              "training": {"maxSteps": 6, "loggingSteps": 1, "maxSamples": 40}},
        statusTarget={"namespace": "ns", "name": "nan"},
    )
    code = run(TrainerConfig.model_validate(doc))
    assert code == EXIT_DIVERGED == 4
    failure = status_server.results()[-1]["failure"]
    assert failure["reason"] == REASON_DIVERGED and "nan" in failure["message"].lower()
    assert status_server.results()[-1]["globalStep"] < 6  # stopped early
    assert not (go_store / "adapters/ns/nan/adapter_config.json").exists()
