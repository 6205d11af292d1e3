import json

import pytest

from golora import vllm


@pytest.mark.parametrize("rank,expected", [(1, 1), (2, 8), (8, 8), (16, 16), (24, 32), (33, 64), (300, 320), (512, 512)])
def test_max_lora_rank_rounds_up_to_allowed(rank, expected):
    assert vllm.max_lora_rank_for(rank) == expected


def test_rank_above_512_cannot_be_served():
    with pytest.raises(ValueError):
        vllm.max_lora_rank_for(513)


def _adapter(tmp_path, **cfg):
    base = {"r": 16, "lora_alpha": 32, "base_model_name_or_path": "Qwen/Qwen2.5-7B-Instruct",
            "target_modules": ["q_proj", "v_proj"], "bias": "none", "peft_type": "LORA"}
    base.update(cfg)
    (tmp_path / "adapter_config.json").write_text(json.dumps(base))
    (tmp_path / "adapter_model.safetensors").write_bytes(b"\0")
    return tmp_path


def test_good_adapter_passes(tmp_path):
    check = vllm.validate_adapter_dir(_adapter(tmp_path))
    assert check.ok, check.problems
    assert check.rank == 16 and check.base_model == "Qwen/Qwen2.5-7B-Instruct"


@pytest.mark.parametrize("cfg,problem", [
    ({"modules_to_save": ["lm_head"]}, "modules_to_save"),
    ({"use_dora": True}, "DoRA"),
    ({"bias": "all"}, "bias"),
    ({"lora_bias": True}, "lora_bias"),
    ({"r": 1024}, "exceeds"),
    ({"r": 0}, "positive"),
    ({"base_model_name_or_path": None}, "base_model_name_or_path"),
])
def test_bad_adapters_fail_with_reason(tmp_path, cfg, problem):
    check = vllm.validate_adapter_dir(_adapter(tmp_path, **cfg))
    assert not check.ok and problem in check.message


def test_missing_files(tmp_path):
    assert "does not exist" in vllm.validate_adapter_dir(tmp_path / "nope").message
    (tmp_path / "adapter_config.json").write_text("{}")
    assert "adapter_model.safetensors is missing" in vllm.validate_adapter_dir(tmp_path).message
