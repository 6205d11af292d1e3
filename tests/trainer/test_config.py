"""The trainer's contract: TrainerConfig, exit codes, the CLI flags, an unreadable config."""

from __future__ import annotations

import json

from golora.api import worker
from golora_trainer.cli import build_parser, cmd_run, config_from_flags

from .helpers import trainer_config


def test_exit_codes_are_distinct_per_reason_and_map_back():
    assert worker.EXIT_OUT_OF_MEMORY == 3 and worker.EXIT_DIVERGED == 4 and worker.EXIT_QUALITY_GATE_FAILED == 5
    assert worker.EXIT_PREQUANTIZED_BASE == worker.EXIT_INVALID_CONFIG == 2 and worker.EXIT_FAILED == 1
    codes = {worker.exit_code_for(r) for r in worker.REASON_EXIT_CODES if r != worker.REASON_PREQUANTIZED_BASE}
    assert len(codes) == len(worker.REASON_EXIT_CODES) - 1 and worker.EXIT_OK not in codes
    for code, reason in worker.EXIT_CODE_REASONS.items():
        assert worker.exit_code_for(reason) == code
    assert worker.reason_for_exit_code(3) == worker.REASON_OUT_OF_MEMORY and worker.reason_for_exit_code(0) is None
    assert worker.REASON_OUT_OF_MEMORY in worker.RETRYABLE_REASONS and worker.REASON_DIVERGED not in worker.RETRYABLE_REASONS
    assert worker.exit_code_for("SomethingNew") == worker.EXIT_FAILED


def test_trainer_config_round_trip_in_camel_case(tmp_path):
    doc = trainer_config(tmp_path, train="datasets/ns/go/train.jsonl", eval_="datasets/ns/go/eval.jsonl",
                         attempt=2, microBatchSize=2, statusTarget={"namespace": "ns", "name": "demo"})
    doc["spec"] = {"baseModel": {"name": "Qwen/Qwen2.5-7B-Instruct"}, "datasetRef": {"name": "go"}}
    cfg = worker.TrainerConfig.model_validate_json(json.dumps(doc))
    assert cfg.micro_batch_size == 2 and cfg.attempt == 2 and cfg.status_target.plural == "loratrainings"
    assert cfg.status_target.group == "golora.dev" and cfg.spec.training.micro_batch_size == "auto"
    again = worker.TrainerConfig.model_validate_json(cfg.model_dump_json(by_alias=True))
    assert again == cfg


def test_blog_command_line_builds_the_same_config(tmp_path):
    data = tmp_path / "training_data.jsonl"
    data.write_text("")
    args = build_parser().parse_args([
        "train", "--model", "Qwen/Qwen2.5-7B-Instruct", "--data", str(data), "--output", str(tmp_path / "v1"),
        "--epochs", "1", "--max-samples", "5000", "--micro-batch-size", "2", "--precision", "fp16",
    ])
    cfg = config_from_flags(args)
    assert cfg.spec.base_model.name == "Qwen/Qwen2.5-7B-Instruct" and cfg.model_path is None
    assert cfg.spec.training.max_samples == 5000 and cfg.spec.training.epochs == 1
    assert cfg.spec.training.micro_batch_size == 2 and cfg.spec.training.precision == "fp16"
    assert cfg.spec.lora.r == 16 and cfg.spec.lora.alpha == 32
    assert cfg.spec.lora.target_modules == ["q_proj", "k_proj", "v_proj", "o_proj"]
    assert cfg.spec.quantization.type == "nf4" and cfg.spec.training.learning_rate == 2e-4
    assert cfg.train_path == str(data.resolve()) and cfg.output_path == str((tmp_path / "v1").resolve())


def test_local_model_directory_from_the_command_line(tmp_path, tiny_random):
    args = build_parser().parse_args(["train", "--model", str(tiny_random), "--data", "x.jsonl", "--output", "o"])
    cfg = config_from_flags(args)
    assert cfg.model_path == str(tiny_random.resolve()) and cfg.spec.base_model.path == str(tiny_random)


def test_unreadable_config_exits_2_and_reports_when_it_can(status_server, monkeypatch, tmp_path):
    bad = {"spec": {"baseModel": {"name": "x"}}, "storeRoot": "/store",
           "statusTarget": {"namespace": "ns", "name": "demo"}}  # trainPath/outputPath missing
    monkeypatch.setenv("GOLORA_CONFIG", json.dumps(bad))
    code = cmd_run(build_parser().parse_args(["run"]))
    assert code == worker.EXIT_INVALID_CONFIG
    result = status_server.results()[-1]
    assert result["failure"]["reason"] == worker.REASON_INVALID_CONFIG and "trainPath" in result["failure"]["message"]
    monkeypatch.setenv("GOLORA_CONFIG", "{not json")
    assert cmd_run(build_parser().parse_args(["run"])) == worker.EXIT_INVALID_CONFIG
    monkeypatch.delenv("GOLORA_CONFIG")
    assert cmd_run(build_parser().parse_args(["run"])) == worker.EXIT_INVALID_CONFIG
    assert "InvalidConfig" in (tmp_path / "termination-log").read_text()
