"""The AdapterServing validation Job's worker: the trainer's vLLM validator on store files."""

from __future__ import annotations

import json

from golora.api.worker import EXIT_INVALID_ADAPTER, EXIT_INVALID_CONFIG
from golora.builders.adapter_check import build_adapter_check_job
from golora.settings import Settings
from golora_trainer.validate_adapter import run


def _adapter(root, name, **extra):
    d = root / "adapters" / name
    d.mkdir(parents=True)
    (d / "adapter_config.json").write_text(json.dumps({"r": 24, "lora_alpha": 48, "bias": "none",
                                                       "target_modules": ["q_proj"],
                                                       "base_model_name_or_path": "Qwen/Qwen2.5-7B-Instruct", **extra}))
    (d / "adapter_model.safetensors").write_bytes(b"\0")
    return f"adapters/{name}"


def test_good_bad_and_escaping_paths(tmp_path, capsys):
    good = _adapter(tmp_path, "good")
    bad = _adapter(tmp_path, "bad", modules_to_save=["lm_head"])
    assert run(json.dumps({"storeRoot": str(tmp_path), "adapterPath": good})) == 0
    assert json.loads(capsys.readouterr().out)["rank"] == 24
    assert run(json.dumps({"storeRoot": str(tmp_path), "adapterPath": bad})) == EXIT_INVALID_ADAPTER
    assert "modules_to_save" in json.loads(capsys.readouterr().out)["problems"][0]
    assert run(json.dumps({"storeRoot": str(tmp_path), "adapterPath": "../etc"})) == EXIT_INVALID_ADAPTER
    assert run("not json") == EXIT_INVALID_CONFIG


def test_validation_job_reads_the_store_read_only_and_passes_the_config_as_json():
    job = build_adapter_check_job(namespace="llm", name="go", uid="u", generation=2, path="adapters/x",
                                  claim="golora-store", settings=Settings(trainer_image="t:1"))
    pod = job["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["command"] == ["python", "-m", "golora_trainer", "validate-adapter"]
    assert all(m["readOnly"] for m in container["volumeMounts"] if m["mountPath"] == "/store")
    config = json.loads(container["env"][0]["value"])
    assert config["adapterPath"] == "adapters/x" and config["statusTarget"]["plural"] == "adapterservings"
    assert job["metadata"]["name"] == "go-asv-g2-a1"
