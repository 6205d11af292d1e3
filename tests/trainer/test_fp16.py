"""The T4 fix: SFTTrainer casts LoRA parameters of a 4-bit model to bf16; golora recasts them to
fp32 right after building it, so fp16 training starts with fp32 trainable parameters."""

from __future__ import annotations

import dataclasses

import pytest

from golora.api.worker import TrainerConfig
from golora_trainer.callbacks import TrainableDtypeGuard
from golora_trainer.data import Formatter, Pair, to_dataset, tokenize_pairs
from golora_trainer.precision import resolve_precision, trainable_dtypes
from golora_trainer.report import StatusReporter
from golora_trainer.train import TrainingRun

from .helpers import trainer_config

LORA_TENSORS = 4 * 4 * 2  # tiny model: 4 layers x q/k/v/o x (A, B)
GO = "func Max(a, b int) int {\n\tif a > b {\n\t\treturn a\n\t}\n\treturn b\n}"


def _build(tmp_path, model_dir, plan, guard):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    # What bitsandbytes sets on a 4-bit model: it makes TRL run its QLoRA bf16 cast (no GPU needed).
    model.is_loaded_in_4bit = True
    examples, _ = tokenize_pairs(Formatter(tok, 256), [Pair(f"Max{i} returns the larger value.", GO)
                                                       for i in range(8)])
    doc = trainer_config(tmp_path, train="d.jsonl", model_path=str(model_dir),
                         spec={"training": {"maxSteps": 1, "checkpointSteps": 100}})
    run = TrainingRun(TrainerConfig.model_validate(doc), StatusReporter(None))
    return run.build_trainer(model, tok, to_dataset(examples), plan=plan, micro=2, accumulation=1, ckpt=False,
                             cuda=False, loss_impl="fused", callbacks=[guard])


def test_trl_casts_lora_to_bf16_for_4bit_models(tmp_path, tiny_random):
    plan = dataclasses.replace(resolve_precision("auto", cuda=True, capability=(7, 5)), trainable_fp32=False)
    trainer = _build(tmp_path, tiny_random, plan, TrainableDtypeGuard(False))
    assert trainable_dtypes(trainer.model) == {"torch.bfloat16": LORA_TENSORS}  # the seed's GradScaler crash, armed


def test_trainable_parameters_are_fp32_when_fp16_training_starts(tmp_path, tiny_random):
    plan = resolve_precision("auto", cuda=True, capability=(7, 5))  # a T4
    assert plan.fp16 and not plan.bf16 and plan.trainable_fp32
    guard = TrainableDtypeGuard(require_fp32=True)
    trainer = _build(tmp_path, tiny_random, plan, guard)
    assert trainer.args.fp16 and not trainer.args.bf16
    assert trainable_dtypes(trainer.model) == {"torch.float32": LORA_TENSORS}
    trainer.train()  # fp16 mixed precision (CPU autocast here; the GradScaler on a GPU)
    assert guard.dtypes == {"torch.float32": LORA_TENSORS}  # what the optimizer was created with
    assert trainer.state.global_step == 1


def test_without_the_fix_fp16_training_refuses_to_start(tmp_path, tiny_random):
    plan = dataclasses.replace(resolve_precision("fp16", cuda=True, capability=(7, 5)), trainable_fp32=False)
    trainer = _build(tmp_path, tiny_random, plan, TrainableDtypeGuard(require_fp32=True))
    with pytest.raises(RuntimeError, match="must be fp32"):
        trainer.train()
