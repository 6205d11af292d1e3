"""Pre-flight: an already-quantized base (AWQ, GPTQ, ...) asked for 4-bit fails at once."""

from __future__ import annotations

import json

import pytest

from golora.api.worker import (
    EXIT_PREQUANTIZED_BASE,
    REASON_INVALID_CONFIG,
    REASON_PREQUANTIZED_BASE,
    TrainerConfig,
)
from golora_trainer.errors import TrainerError
from golora_trainer.modelio import check_prequantized, load_config_dict, prequantized_method, resolve_source
from golora_trainer.train import run

from .helpers import trainer_config

AWQ = {"quant_method": "awq", "bits": 4, "group_size": 128, "version": "gemm", "zero_point": True}
GPTQ = {"quant_method": "gptq", "bits": 4, "group_size": 128, "desc_act": False}


def qwen_config(**extra) -> dict:
    return {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_size": 3584,
            "intermediate_size": 18944, "num_hidden_layers": 28, "num_attention_heads": 28,
            "num_key_value_heads": 4, "vocab_size": 152064, **extra}


@pytest.mark.parametrize("quant", [AWQ, GPTQ])
def test_prequantized_config_is_refused_for_4bit(tmp_path, quant):
    (tmp_path / "config.json").write_text(json.dumps(qwen_config(quantization_config=quant)))
    cfg = load_config_dict(resolve_source(TrainerConfig.model_validate(
        trainer_config(tmp_path, train="d.jsonl", model_path=str(tmp_path)))))
    assert prequantized_method(cfg) == quant["quant_method"]
    with pytest.raises(TrainerError) as exc:
        check_prequantized(cfg, "Qwen/Qwen2.5-7B-Instruct-AWQ", "nf4")
    err = exc.value
    assert err.reason == REASON_PREQUANTIZED_BASE and err.exit_code == EXIT_PREQUANTIZED_BASE
    assert "full-precision base" in err.message and "serve the adapter on the quantized model" in err.message


def test_full_precision_base_or_no_quantization_passes():
    check_prequantized(qwen_config(), "Qwen/Qwen2.5-7B-Instruct", "nf4")
    check_prequantized(qwen_config(quantization_config=AWQ), "x-AWQ", "none")
    assert prequantized_method(qwen_config(text_config={"quantization_config": GPTQ})) == "gptq"


def test_run_fails_fast_and_reports(tmp_path, status_server):
    model = tmp_path / "models" / "qwen-awq"
    model.mkdir(parents=True)
    (model / "config.json").write_text(json.dumps(qwen_config(quantization_config=AWQ)))
    (tmp_path / "d.jsonl").write_text(json.dumps({"instruction": "a b c", "output": "func A() {}"}) + "\n")
    doc = trainer_config(tmp_path, train="d.jsonl", model_path=str(model),
                         statusTarget={"namespace": "ns", "name": "demo"})
    code = run(TrainerConfig.model_validate(doc))
    assert code == EXIT_PREQUANTIZED_BASE == 2
    result = status_server.results()[-1]
    assert result["failure"]["reason"] == REASON_PREQUANTIZED_BASE
    assert result["exitCode"] == 2
    assert (tmp_path / "termination-log").read_text().startswith("PrequantizedBase: ")
    assert not (tmp_path / "adapters").exists() or not any((tmp_path / "adapters").rglob("adapter_config.json"))


def test_missing_model_directory_is_invalid_config(tmp_path):
    doc = trainer_config(tmp_path, train="d.jsonl", model_path=str(tmp_path / "nope"))
    with pytest.raises(TrainerError) as exc:
        resolve_source(TrainerConfig.model_validate(doc))
    assert exc.value.reason == REASON_INVALID_CONFIG


def test_token_file_is_read_never_passed_on_a_command_line(tmp_path):
    (tmp_path / "token").write_text("hf_secret\n")
    doc = trainer_config(tmp_path, train="d.jsonl", spec={"baseModel": {"name": "Qwen/Qwen2.5-7B-Instruct",
                                                                          "revision": "main"}},
                         hfTokenFile=str(tmp_path / "token"))
    src = resolve_source(TrainerConfig.model_validate(doc))
    assert not src.local and src.token == "hf_secret"
    assert src.load_kwargs["revision"] == "main" and src.load_kwargs["token"] == "hf_secret"
    assert src.load_kwargs["local_files_only"] is True  # HF_HUB_OFFLINE=1 in the tests
