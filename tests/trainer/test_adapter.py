"""The saved adapter is what vLLM loads, and it appears atomically."""

from __future__ import annotations

import json
import stat

import pytest

from golora.vllm import ADAPTER_CONFIG, ADAPTER_WEIGHTS, validate_adapter_dir
from golora_trainer.adapter import install_adapter, normalize_config, stage_adapter


@pytest.fixture(scope="module")
def peft_model(tiny_random):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_random)
    return get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"],
                                            task_type="CAUSAL_LM"))


def write_adapter(path, **overrides):
    path.mkdir(parents=True, exist_ok=True)
    cfg = {"r": 16, "lora_alpha": 32, "target_modules": ["q_proj", "v_proj"], "bias": "none",
           "base_model_name_or_path": "Qwen/Qwen2.5-7B-Instruct", "modules_to_save": None, "use_dora": False}
    cfg.update(overrides)
    (path / ADAPTER_CONFIG).write_text(json.dumps(cfg))
    (path / ADAPTER_WEIGHTS).write_bytes(b"\0" * 16)
    return path


def test_validator_accepts_a_plain_lora(tmp_path):
    check = validate_adapter_dir(write_adapter(tmp_path / "a"))
    assert check.ok and check.rank == 16 and check.base_model == "Qwen/Qwen2.5-7B-Instruct"


@pytest.mark.parametrize(("override", "problem"), [
    ({"modules_to_save": ["lm_head", "embed_tokens"]}, "modules_to_save"),
    ({"use_dora": True}, "DoRA"),
    ({"bias": "all"}, "bias"),
    ({"lora_bias": True}, "lora_bias"),
    ({"r": 1024}, "exceeds"),
    ({"base_model_name_or_path": None}, "base_model_name_or_path"),
])
def test_validator_rejects_what_vllm_rejects(tmp_path, override, problem):
    check = validate_adapter_dir(write_adapter(tmp_path / "a", **override))
    assert not check.ok and problem in check.message


def test_validator_needs_safetensors(tmp_path):
    path = write_adapter(tmp_path / "a")
    (path / ADAPTER_WEIGHTS).unlink()
    (path / "adapter_model.bin").write_bytes(b"x")
    assert "safetensors" in validate_adapter_dir(path).message


def test_normalize_config_removes_what_vllm_refuses(tmp_path):
    path = write_adapter(tmp_path / "a", modules_to_save=["lm_head"], use_dora=True, bias="lora_only", lora_bias=True)
    normalize_config(path / ADAPTER_CONFIG, "/store/models/base")
    assert validate_adapter_dir(path).ok
    assert json.loads((path / ADAPTER_CONFIG).read_text())["base_model_name_or_path"] == "/store/models/base"


def test_staged_adapter_is_valid_and_installs_world_readable(tmp_path, peft_model):
    dest = tmp_path / "adapters" / "ns" / "demo"
    staging, check = stage_adapter(peft_model, dest, "Qwen/Qwen2.5-7B-Instruct")
    assert check.ok, check.message
    assert staging.parent == dest and staging.name.startswith(".adapter-staging-")
    assert not (dest / ADAPTER_CONFIG).exists()  # nothing visible before install
    assert not (staging / "README.md").exists()
    size = install_adapter(staging, dest, {"evalLoss": 1.0})
    assert size > 0 and not staging.exists()
    check = validate_adapter_dir(dest)
    assert check.ok and check.base_model == "Qwen/Qwen2.5-7B-Instruct" and sorted(check.target_modules) == [
        "q_proj", "v_proj"]
    for name in (ADAPTER_CONFIG, ADAPTER_WEIGHTS, "result.json"):
        assert stat.S_IMODE((dest / name).stat().st_mode) == 0o644


def test_replacing_an_adapter_never_shows_new_config_over_old_weights(tmp_path, peft_model, monkeypatch):
    """Kill the install right after the weights moved: the directory holds no valid adapter
    (config removed first) rather than a mixed one."""
    import golora_trainer.adapter as adapter_mod

    dest = tmp_path / "out"
    install_adapter(stage_adapter(peft_model, dest, "base")[0], dest, None)
    assert validate_adapter_dir(dest).ok
    staging, _ = stage_adapter(peft_model, dest, "base-v2")
    real_replace = adapter_mod.os.replace
    calls = []

    def crash_on_config(src, dst):
        calls.append(str(dst))
        if str(dst).endswith(ADAPTER_CONFIG):
            raise KeyboardInterrupt("killed")
        return real_replace(src, dst)

    monkeypatch.setattr(adapter_mod.os, "replace", crash_on_config)
    with pytest.raises(KeyboardInterrupt):
        install_adapter(staging, dest, None)
    assert not validate_adapter_dir(dest).ok  # no config: vLLM/AdapterServing sees no adapter
    assert calls[0].endswith(ADAPTER_WEIGHTS)
