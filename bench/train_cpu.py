#!/usr/bin/env python3
"""CPU benchmark of the trainer's micro-batching: length buckets vs transformers' group_by_length.

Real data — the Go standard library through ``golora-extract`` — and the LoraTraining Job's own
code path (``golora_trainer.train.run``, each run in its own process) on the tiny Qwen2 model.
On a compute-bound device the time of a step follows the padded tokens, so real tokens/s
follows the padding efficiency (real / padded tokens). Each run trains exactly one epoch, so
both samplers see the same samples (over a few steps they would not: transformers' sampler
starts each megabatch with its longest pairs, and long pairs cost more per token). Two split
sizes: the GPU benchmark's 288 pairs (transformers then groups lengths inside four 64-pair
megabatches only) and 2,048 stdlib pairs (31 megabatches of 496). The two samplers run
alternately, ``--repeats`` times each (a 2-core machine's timings wander by 20 % and more
between runs); the best epoch of each is compared. Prints real tokens/s over the epoch,
padding efficiency and the ratio of each pair.

    python bench/train_cpu.py --out bench/results/train_cpu
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path[:0] = [str(BENCH), str(REPO / "operator"), str(REPO / "trainer_image")]

import train_gpu  # noqa: E402  (its golora worker and process runner)

SAMPLERS = ("group_by_length", "buckets")


def extract_stdlib(work: Path, binary: str) -> Path:
    from golora_trainer import gosrc

    root = gosrc.goroot()
    if root is None:
        raise SystemExit("no Go toolchain: the benchmark parses the Go standard library")
    cfg = {"storeRoot": str(work), "outputPath": "stdlib",
           "sources": [{"name": "stdlib", "pvc": {"claimName": "goroot", "path": "src"}, "dir": str(root / "src")}],
           "template": "doc", "split": {"evalFraction": 0.05, "seed": 42}, "maxPairs": 0}
    (work / "extract.json").write_text(json.dumps(cfg))
    subprocess.run([binary, "run", "--config", str(work / "extract.json")], check=True, capture_output=True)
    return work / "stdlib"


def lengths_of(model_dir: Path, path: Path, max_len: int) -> list[int]:
    from transformers import AutoTokenizer

    from golora_trainer.data import Formatter, read_pairs, tokenize_pairs

    pairs, _ = read_pairs(path, 0)
    examples, _ = tokenize_pairs(Formatter(AutoTokenizer.from_pretrained(model_dir), max_len), pairs)
    return [len(e.input_ids) for e in examples]


def hf_efficiency(lengths: list[int], micro: int, seed: int) -> float:
    import torch
    from transformers.trainer_pt_utils import get_length_grouped_indices

    from golora_trainer.batching import chunk, padding_efficiency

    order = get_length_grouped_indices(lengths, micro, generator=torch.Generator().manual_seed(seed))
    return padding_efficiency(lengths, chunk(order, micro))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="writes <out>.json and <out>.txt")
    ap.add_argument("--splits", default="small:288,medium:2048", help="name:pairs,... (one epoch each)")
    ap.add_argument("--repeats", type=int, default=2, help="epochs per sampler and split, run alternately")
    ap.add_argument("--micro-batch", type=int, default=16)
    ap.add_argument("--max-seq-length", type=int, default=1024)
    ap.add_argument("--extractor", default=str(REPO / ".bin" / "golora-extract"))
    ap.add_argument("--work", default="/tmp/golora-bench-cpu")
    args = ap.parse_args()

    from golora_trainer.tiny import TinySpec, ensure_tiny

    t0 = time.monotonic()
    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    model_dir = ensure_tiny(TinySpec(pretrain_steps=0))
    data = extract_stdlib(work, args.extractor)
    rows = (data / "train.jsonl").read_text().splitlines()
    shutil.copy(data / "eval.jsonl", work / "eval.jsonl")

    report: dict = {"benchmark": "bench/train_cpu.py", "versions": train_gpu.versions(), "cpus": os.cpu_count(),
                    "micro_batch": args.micro_batch, "extracted_pairs": len(rows), "runs": {}, "splits": {}}
    seed = 42  # the spec's default training.seed
    for item in args.splits.split(","):
        split, count = item.split(":")
        (work / f"{split}.jsonl").write_text(
            "\n".join(random.Random(1234).sample(rows, min(len(rows), int(count)))) + "\n")
        lengths = lengths_of(model_dir, work / f"{split}.jsonl", args.max_seq_length)
        steps = -(-len(lengths) // args.micro_batch)  # one epoch
        report["splits"][split] = {
            "pairs": len(lengths), "steps": steps, "tokens": sum(lengths),
            "tokens_mean": round(sum(lengths) / len(lengths)), "tokens_max": max(lengths),
            "hf_epoch_padding_efficiency": round(hf_efficiency(lengths, args.micro_batch, seed), 4)}
        for _ in range(args.repeats):
            for sampler in SAMPLERS:
                name = f"{split}-{sampler}"
                spec = {"work": str(work), "model_dir": str(model_dir), "name": name, "train": f"{split}.jsonl",
                        "eval": "eval.jsonl", "steps": steps, "max_seq_length": args.max_seq_length,
                        "effective_batch_size": args.micro_batch, "micro_batch_size": args.micro_batch,
                        "gate": False, "quantization": "none"}
                res = train_gpu.run_worker("golora", spec, {"GOLORA_TRAIN_SAMPLER": sampler}, 1800)
                seconds = (res.get("stage_seconds") or {}).get("training")
                res["epoch_tokens_per_second"] = round(sum(lengths) / seconds, 1) if seconds else None
                best = report["runs"].get(name)
                epochs = (best or {}).get("all_epoch_tokens_per_second", []) + [res["epoch_tokens_per_second"]]
                if best is None or (res["epoch_tokens_per_second"] or 0) > (best.get("epoch_tokens_per_second") or 0):
                    best = res
                best["all_epoch_tokens_per_second"] = epochs
                report["runs"][name] = best
    report["seconds"] = round(time.monotonic() - t0, 1)
    text = table(report)
    print(text)
    Path(args.out + ".json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    Path(args.out + ".txt").write_text(text + "\n")
    return 0


def table(report: dict) -> str:
    v = report["versions"]
    lines = [f"golora trainer micro-batching on CPU ({report['cpus']} CPUs; torch {v.get('torch')}, "
             f"transformers {v.get('transformers')}, trl {v.get('trl')}); tiny Qwen2, Go stdlib pairs from "
             f"golora-extract ({report['extracted_pairs']} train pairs), one epoch per run at micro-batch "
             f"{report['micro_batch']}; best of the alternating repeats", "",
             f"{'run':<24} {'epoch tok/s':>11} {'trainer tok/s':>13} {'padding eff.':>13} {'train s':>8}  all epochs"]
    for name, r in report["runs"].items():
        eff = r.get("padding_efficiency")
        if eff is None:  # transformers' sampler: the bench computes its epoch order's efficiency
            eff = report["splits"][name.split("-")[0]]["hf_epoch_padding_efficiency"]
        tps, etps = r.get("tokens_per_second"), r.get("epoch_tokens_per_second")
        lines.append(f"{name:<24} {round(etps) if etps else r.get('error'):>11} {round(tps) if tps else '-':>13} "
                     f"{eff:>13.3f} {(r.get('stage_seconds') or {}).get('training', '?'):>8}  "
                     + " ".join(str(round(x)) for x in r.get("all_epoch_tokens_per_second", []) if x))
    lines.append("")
    for split, info in report["splits"].items():
        a, b = (report["runs"].get(f"{split}-{s}", {}).get("epoch_tokens_per_second") for s in SAMPLERS)
        ratio = f"{b / a:.2f}x" if a and b else "n/a"
        lines.append(f"{split}: {info['pairs']} pairs in {info['steps']} steps, mean {info['tokens_mean']} tokens "
                     f"(max {info['tokens_max']}); buckets / group_by_length epoch tokens/s: {ratio}")
    lines.append(f"total {report['seconds']}s")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
