"""Liger Kernel arguments: its layer kernels only when asked, on a GPU, with the package there,
and never its fused cross-entropy next to TRL's fused LM head (TRL refuses that pair)."""

from __future__ import annotations

import pytest

from golora_trainer.memory import LOSS_FUSED, LOSS_PLAIN
from golora_trainer.sft import LIGER_LAYER_KERNELS, LOSS_LIGER, liger_arguments, sft_config


def test_layer_kernels_when_asked_on_a_gpu_with_the_package():
    args = liger_arguments(LOSS_FUSED, cuda=True, requested="liger", available=True)
    assert args["use_liger_kernel"] is True
    config = args["liger_kernel_config"]
    assert config["rms_norm"] and config["swiglu"] and config["rope"]
    assert config["fused_linear_cross_entropy"] is False and config["cross_entropy"] is False


@pytest.mark.parametrize(
    "cuda, requested, available",
    [(True, None, True), (True, "none", True), (False, "liger", True), (True, "liger", False)],
)
def test_no_liger_unless_asked_and_runnable(cuda, requested, available, caplog):
    args = liger_arguments(LOSS_FUSED, cuda=cuda, requested=requested, available=available)
    assert args == {"use_liger_kernel": False}
    if requested == "liger":
        assert "ignored" in caplog.text


def test_liger_loss_keeps_its_fused_cross_entropy():
    assert liger_arguments(LOSS_LIGER, cuda=True, requested=None, available=True) == {"use_liger_kernel": True}
    assert liger_arguments(LOSS_PLAIN, cuda=True, requested=None, available=True) == {"use_liger_kernel": False}


def test_sft_config_takes_the_layer_kernel_arguments(tmp_path):
    args = liger_arguments(LOSS_FUSED, cuda=True, requested="liger", available=True)
    config = sft_config(output_dir=str(tmp_path), use_cpu=True, report_to="none", **args)
    assert config.use_liger_kernel is True
    assert config.liger_kernel_config == LIGER_LAYER_KERNELS
