#!/usr/bin/env python3
"""CPU benchmark of data-parallel training: 1 process vs 2 ranks under torchrun, same run.

The LoraTraining Job's own entry points on the tiny Qwen2 model and Go standard library pairs:
``python -m golora_trainer run`` (one process, torch's default threads), ``python -m
golora_trainer launch --nproc-per-node 2`` (what ``placement.gpus: 2`` runs: torchrun, gloo on
CPU, one thread per rank as torchrun sets) and the one process at one thread (what a rank gets,
so the threading effect and DDP's own cost are told apart). Same data, seed, steps and effective
batch (4 x 2 accumulation vs 4 x 1 on each rank), in turn, ``--repeats`` times each; prints real
tokens/s over training (the trainer's own figure, tokens of all ranks), wall time, the ratios and
whether the loss curves agree. On a 2-core machine two ranks share the cores one process already
uses: there is no new compute, so this is not the speed-up N GPUs give (each rank its own device).

    python bench/train_ddp_cpu.py --out bench/results/train_ddp_cpu
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path[:0] = [str(REPO / "operator"), str(REPO / "trainer_image")]

MODES = ("1-process", "2-ranks", "1-proc-1-thr")
LOSS = re.compile(r" step (\d+)/\d+ loss ([0-9.]+)")
PACKAGES = ("strings", "bytes", "sort", "strconv", "unicode/utf8", "path", "bufio", "errors", "slices", "maps")


def store(work: Path, model: Path) -> Path:
    from golora_trainer import gosrc
    from golora_trainer.data import Pair, holdout

    out = work / "datasets/go"
    if not (out / "train.jsonl").is_file():
        pairs = [Pair(**p) for p in gosrc.stdlib_pairs(include=PACKAGES)]
        train, evals = holdout(pairs, 42, fraction=0.1)
        out.mkdir(parents=True, exist_ok=True)
        for name, items in (("train.jsonl", train), ("eval.jsonl", evals)):
            (out / name).write_text("".join(json.dumps(p.__dict__) + "\n" for p in items))
    link = work / "models/tiny"
    link.parent.mkdir(parents=True, exist_ok=True)
    if not link.exists():
        link.symlink_to(model, target_is_directory=True)
    return work


def config(work: Path, name: str, steps: int) -> dict:
    return {
        "spec": {"baseModel": {"path": "models/tiny"}, "dataPath": "datasets/go/train.jsonl", "lora": {"dropout": 0.0},
                 "training": {"maxSteps": steps, "learningRate": 1e-3, "effectiveBatchSize": 8, "microBatchSize": 4,
                              "maxSeqLength": 512, "loggingSteps": 1, "checkpointSteps": 10000},
                 "qualityGate": {"enabled": False}},
        "storeRoot": str(work), "trainPath": "datasets/go/train.jsonl", "evalPath": "datasets/go/eval.jsonl",
        "outputPath": f"adapters/{name}",
    }


def run_one(work: Path, mode: str, steps: int, index: int) -> dict:
    name = f"{mode}-{index}"
    out = work / "adapters" / name
    subprocess.run(["rm", "-rf", str(out)], check=False)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "operator"), str(REPO / "trainer_image")]),
           "GOLORA_CONFIG": json.dumps(config(work, name, steps)), "GOLORA_TERMINATION_LOG": str(work / "term")}
    if mode == "1-proc-1-thr":  # one process with the thread count a rank gets: DDP's cost alone
        env["OMP_NUM_THREADS"] = "1"
    cmd = [sys.executable, "-m", "golora_trainer", "launch", "--nproc-per-node", "2"] if mode == "2-ranks" else \
        [sys.executable, "-m", "golora_trainer", "run"]
    t0 = time.monotonic()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.monotonic() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{mode} failed ({proc.returncode}):\n{(proc.stdout + proc.stderr)[-3000:]}")
    result = json.loads((out / "result.json").read_text())
    losses = {int(m.group(1)): float(m.group(2)) for m in LOSS.finditer(proc.stdout + proc.stderr)}
    return {"mode": mode, "tokens_per_second": result["tokensPerSecond"], "wall_seconds": round(wall, 1),
            "train_seconds": result.get("trainRuntimeSeconds"), "world_size": result["worldSize"],
            "micro_batch_size": result["microBatchSize"], "accumulation": result["gradientAccumulationSteps"],
            "losses": [losses[k] for k in sorted(losses)], "eval_loss": result["evalLoss"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="writes <out>.json and <out>.txt")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--work", default="/tmp/golora-bench-ddp")
    args = ap.parse_args()
    from golora_trainer.tiny import TinySpec, ensure_tiny

    work = store(Path(args.work), ensure_tiny(TinySpec(pretrain_steps=300)))
    runs = []
    for i in range(args.repeats):
        for mode in MODES:
            runs.append(run_one(work, mode, args.steps, i))
            print(json.dumps({k: v for k, v in runs[-1].items() if k != "losses"}), flush=True)
    best = {m: max((r for r in runs if r["mode"] == m), key=lambda r: r["tokens_per_second"]) for m in MODES}
    one, two, one_thread = best["1-process"], best["2-ranks"], best["1-proc-1-thr"]
    max_dloss = max(abs(a - b) for a, b in zip(one["losses"], two["losses"], strict=True))
    load = os.getloadavg()
    report = {"steps": args.steps, "cpus": os.cpu_count(), "loadavg_at_end": [round(x, 2) for x in load],
              "runs": runs, "ratio_tokens_per_second": round(two["tokens_per_second"] / one["tokens_per_second"], 3),
              "ratio_vs_one_thread": round(two["tokens_per_second"] / one_thread["tokens_per_second"], 3),
              "max_abs_loss_difference": round(max_dloss, 6)}
    lines = [f"1 process vs 2 DDP ranks (torchrun, gloo), tiny Qwen2, {args.steps} steps, effective batch 8; "
             f"{os.cpu_count()} CPUs, load average at end {load[0]:.2f}",
             f"{'run':<12} {'tok/s':>8} {'wall s':>7} {'train s':>8} {'micro x acc x ranks':>20}"]
    for r in runs:
        lines.append(f"{r['mode']:<12} {r['tokens_per_second']:>8} {r['wall_seconds']:>7} {r['train_seconds']!s:>8} "
                     f"{r['micro_batch_size']} x {r['accumulation']} x {r['world_size']:>11}")
    lines.append(f"best of {args.repeats}: 2 ranks / 1 process = {report['ratio_tokens_per_second']}x tokens/s, "
                 f"2 ranks / 1 process at 1 thread = {report['ratio_vs_one_thread']}x; loss curves differ by at most "
                 f"{report['max_abs_loss_difference']} (same samples per step)")
    lines.append("Two ranks on the cores one process already uses: no new compute, so any gain is how torch's "
                 "threads use the cores (1 process at 1 thread separates that), and what is left is DDP's cost "
                 "(gloo all-reduce, a second process and model copy) — not the speed-up N GPUs give.")
    text = "\n".join(lines) + "\n"
    Path(args.out + ".json").write_text(json.dumps(report, indent=2) + "\n")
    Path(args.out + ".txt").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
