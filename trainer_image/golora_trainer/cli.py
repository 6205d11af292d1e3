"""``python -m golora_trainer {run,train,tiny,plan}``.

run    the LoraTraining Job's entry point: TrainerConfig JSON from $GOLORA_CONFIG or --config FILE
train  the same from flags, e.g. the blog's command line:
         python -m golora_trainer train --model Qwen/Qwen2.5-7B-Instruct --data training_data.jsonl \\
           --output output/v1 --epochs 1 --max-samples 5000
tiny   build the tiny Qwen2-architecture model + Go tokenizer (CPU runs, tests, the demo)
validate-adapter  the AdapterServing validation Job: is the adapter on the store one vLLM loads?
launch run `run` under torchrun: several GPUs (--nproc-per-node) or nodes (an Indexed Job's pods)
plan   print the micro-batch / memory plan for a model config and a GPU size (no GPU needed)
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from golora.api.worker import EXIT_INVALID_CONFIG, REASON_INVALID_CONFIG, TRAINER_CONFIG_ENV, TrainerConfig


def _setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for noisy in ("httpx", "urllib3", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def load_config(path: str | None) -> TrainerConfig:
    """TrainerConfig from a file or $GOLORA_CONFIG (validated by the CRD's own models)."""
    if path:
        text = Path(path).read_text()
    else:
        text = os.environ.get(TRAINER_CONFIG_ENV, "")
        if not text:
            raise ValueError(f"no config: set ${TRAINER_CONFIG_ENV} or pass --config FILE")
    return TrainerConfig.model_validate_json(text)


def _report_invalid(message: str, raw: str | None) -> int:
    """An unparseable config is still reported where possible (the statusTarget may be readable)."""
    from .report import StatusReporter, write_termination_message

    target = None
    try:
        from golora.api.worker import StatusTarget

        data = json.loads(raw or "{}")
        if isinstance(data, dict) and data.get("statusTarget"):
            target = StatusTarget.model_validate(data["statusTarget"])
    except Exception:  # noqa: BLE001 - best effort only
        target = None
    StatusReporter(target).result(
        {"failure": {"reason": REASON_INVALID_CONFIG, "message": message}, "exitCode": EXIT_INVALID_CONFIG}
    )
    write_termination_message(f"{REASON_INVALID_CONFIG}: {message}")
    logging.getLogger("golora_trainer").error("invalid config: %s", message)
    return EXIT_INVALID_CONFIG


def cmd_run(args) -> int:
    raw = None
    try:
        raw = Path(args.config).read_text() if args.config else os.environ.get(TRAINER_CONFIG_ENV)
        cfg = load_config(args.config)
    except Exception as exc:  # noqa: BLE001
        return _report_invalid(str(exc)[:2000], raw)
    from .train import run

    return run(cfg)


def config_from_flags(args) -> TrainerConfig:
    """The blog's flags -> the TrainerConfig the operator would have written."""
    model_dir = Path(args.model)
    base = {"path": str(model_dir)} if model_dir.is_dir() else {"name": args.model}
    if args.revision:
        base["revision"] = args.revision
    micro = args.micro_batch_size if args.micro_batch_size == "auto" else int(args.micro_batch_size)
    spec = {
        "baseModel": base,
        "dataPath": str(Path(args.data)),
        "lora": {"r": args.r, "alpha": args.alpha, "dropout": args.dropout,
                 "targetModules": args.target_modules.split(",")},
        "quantization": {"type": args.quantization},
        "training": {
            "epochs": args.epochs, "maxSamples": args.max_samples, "maxSteps": args.max_steps,
            "learningRate": args.lr, "warmupRatio": args.warmup_ratio, "microBatchSize": micro,
            "effectiveBatchSize": args.effective_batch_size, "maxSeqLength": args.max_seq_length,
            "precision": args.precision, "seed": args.seed, "checkpointSteps": args.checkpoint_steps,
            "loggingSteps": args.logging_steps,
        },
        "qualityGate": {"enabled": not args.no_gate, "prompts": args.gate_prompts,
                        "maxNewTokens": args.gate_max_new_tokens},
    }
    return TrainerConfig.model_validate({
        "spec": spec,
        "storeRoot": "/",
        "trainPath": str(Path(args.data).resolve()),
        "evalPath": str(Path(args.eval_data).resolve()) if args.eval_data else None,
        "outputPath": str(Path(args.output).resolve()),
        "modelPath": str(model_dir.resolve()) if model_dir.is_dir() else None,
        "extractorBinary": args.extractor_binary,
        "hfTokenFile": args.hf_token_file,
    })


def cmd_train(args) -> int:
    try:
        cfg = config_from_flags(args)
    except Exception as exc:  # noqa: BLE001
        print(f"invalid arguments: {exc}", file=sys.stderr)
        return EXIT_INVALID_CONFIG
    if args.print_config:
        print(cfg.model_dump_json(by_alias=True, indent=2, exclude_none=True))
        return 0
    from .train import run

    return run(cfg)


def cmd_tiny(args) -> int:
    from .tiny import TinySpec, build_tiny, ensure_tiny

    spec = TinySpec(pretrain_steps=args.pretrain_steps, vocab_size=args.vocab_size, seed=args.seed)
    if args.output:
        out = build_tiny(args.output, spec)
    else:
        out = ensure_tiny(spec)
    print(out)
    return 0


def cmd_plan(args) -> int:
    from .memory import GIB, LOSS_FUSED, LOSS_PLAIN, QWEN25_7B, ModelShape, Recipe, plan_micro_batch

    shape = QWEN25_7B if args.config is None else ModelShape.from_config(json.loads(Path(args.config).read_text()))
    plan = plan_micro_batch(
        args.gpu_gib * GIB, shape, args.seq_len, args.effective_batch_size,
        Recipe(quantized=args.quantization == "nf4", loss=LOSS_PLAIN if args.plain_loss else LOSS_FUSED),
        requested=args.micro_batch_size,
    )
    est = plan.estimate
    print(json.dumps({
        "microBatchSize": plan.micro_batch_size, "gradientAccumulationSteps": plan.gradient_accumulation_steps,
        "gradientCheckpointing": plan.gradient_checkpointing, "reason": plan.reason, "notes": plan.notes,
        "estimateGiB": {k: round(v / GIB, 3) for k, v in est.as_dict().items() if k != "tokens"},
        "tokens": est.tokens,
    }, indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m golora_trainer", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-v", "--verbose", action="store_true")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="run from a TrainerConfig (the Job's entry point)")
    r.add_argument("--config", help=f"TrainerConfig JSON file (default: ${TRAINER_CONFIG_ENV})")
    r.set_defaults(func=cmd_run)

    t = sub.add_parser("train", help="train from flags (no cluster needed)")
    t.add_argument("--model", required=True, help="Hugging Face id or local model directory")
    t.add_argument("--data", required=True, help="JSONL with instruction/output per line")
    t.add_argument("--output", required=True, help="adapter directory")
    t.add_argument("--epochs", type=float, default=1.0)
    t.add_argument("--max-samples", type=int, default=0)
    t.add_argument("--max-steps", type=int, default=0)
    t.add_argument("--eval-data", help="eval JSONL (default: hold out 5%% of --data)")
    t.add_argument("--lr", type=float, default=2e-4)
    t.add_argument("--warmup-ratio", type=float, default=0.03)
    t.add_argument("--r", type=int, default=16)
    t.add_argument("--alpha", type=int, default=32)
    t.add_argument("--dropout", type=float, default=0.05)
    t.add_argument("--target-modules", default="q_proj,k_proj,v_proj,o_proj")
    t.add_argument("--quantization", choices=["nf4", "none"], default="nf4")
    t.add_argument("--max-seq-length", type=int, default=1024)
    t.add_argument("--precision", choices=["auto", "bf16", "fp16", "fp32"], default="auto")
    t.add_argument("--micro-batch-size", default="auto", help="'auto' or an integer")
    t.add_argument("--effective-batch-size", type=int, default=16)
    t.add_argument("--checkpoint-steps", type=int, default=100)
    t.add_argument("--logging-steps", type=int, default=10)
    t.add_argument("--seed", type=int, default=42)
    t.add_argument("--revision")
    t.add_argument("--hf-token-file")
    t.add_argument("--no-gate", action="store_true", help="skip the quality gate")
    t.add_argument("--gate-prompts", type=int, default=8)
    t.add_argument("--gate-max-new-tokens", type=int, default=128)
    t.add_argument("--extractor-binary", default="golora-extract")
    t.add_argument("--print-config", action="store_true", help="print the TrainerConfig and exit")
    t.set_defaults(func=cmd_train)

    k = sub.add_parser("tiny", help="build the tiny model (cached under ~/.cache/golora/tiny without --output)")
    k.add_argument("--output", help="model directory to write (default: the cache; prints the path)")
    k.add_argument("--pretrain-steps", type=int, default=300)
    k.add_argument("--vocab-size", type=int, default=3000)
    k.add_argument("--seed", type=int, default=0)
    k.set_defaults(func=cmd_tiny)

    v = sub.add_parser("validate-adapter", help="the AdapterServing validation Job (config in $GOLORA_CONFIG)")
    v.set_defaults(func=lambda _args: __import__("golora_trainer.validate_adapter", fromlist=["run"]).run())

    e = sub.add_parser("resolver-entry", help="the AdapterServing resolver-directory Job (config in $GOLORA_CONFIG)")
    e.set_defaults(func=lambda _args: __import__("golora_trainer.resolver_entry", fromlist=["run"]).run())

    from .launch import add_parser as add_launch

    add_launch(sub)

    m = sub.add_parser("plan", help="micro-batch / memory plan (Qwen2.5-7B unless --config)")
    m.add_argument("--config", help="a model's config.json")
    m.add_argument("--gpu-gib", type=float, default=14.75, help="GPU memory (a 16 GB T4 reports 14.75 GiB)")
    m.add_argument("--seq-len", type=int, default=2048)
    m.add_argument("--effective-batch-size", type=int, default=16)
    m.add_argument("--micro-batch-size", type=int)
    m.add_argument("--quantization", choices=["nf4", "none"], default="nf4")
    m.add_argument("--plain-loss", action="store_true", help="assume full logits (no fused LM head)")
    m.set_defaults(func=cmd_plan)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _setup_logging(args.verbose)
    return int(args.func(args))
