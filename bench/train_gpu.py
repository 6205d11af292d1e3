#!/usr/bin/env python3
"""GPU training benchmark: golora's trainer against the blog's seed recipe, and the T4 profile.

On one GPU (an H200 when available; CI never has one) this

1. builds a random Qwen2.5-7B-shaped checkpoint (config only, random weights initialised on
   the GPU, saved as safetensors; nothing is downloaded) with a byte-level BPE tokenizer
   trained on synthetic Go, and Go-like instruction/output data;
2. runs, each in its own process so peak memory is clean:
   - ``seed``: the blog's recipe — 4-bit NF4 with the default fp32 compute dtype,
     ``prepare_model_for_kbit_training``, LoRA r16 on q/k/v/o, fp16=False/bf16=False (fp32),
     micro-batch 1, TRL defaults otherwise;
   - ``golora``: ``golora_trainer.train.run`` — the LoraTraining Job's code path — with the
     spec's defaults (nf4, precision auto, microBatchSize auto) on the same data, one epoch;
   - ``golora-hf``: the same, with transformers' ``group_by_length`` sampler instead of golora's
     length buckets (the baseline of that change, same samples, same run);
   - ``golora-liger``: the same with Liger's fused RMSNorm/SwiGLU/RoPE kernels
     (``GOLORA_LAYER_KERNELS=liger``; needs liger-kernel and a GPU) — measured before it
     becomes a default;
   - ``golora-packed``: the same with padding-free packed micro-batches
     (``GOLORA_PACKING=padding_free``: each micro-batch one row, attention kept inside each
     sample by PyTorch's varlen flash kernel); before training it checks, on the GPU, that the
     packed and the padded batch of the same first samples give the same loss;
   - ``golora-bf16``: the same with ``quantization: none`` (bf16 LoRA, no 4-bit);
   - ``golora-profile``: a few steps under torch.profiler (kernels by GPU time, GPU busy
     fraction) — kept out of the measured runs;
   - ``t4``: the same code path made to believe it runs on a T4 (compute capability 7.5, so the
     fp16 recipe; GPU memory capped at 15 GiB with torch.cuda.set_per_process_memory_fraction)
     on 2,048-token samples; an OutOfMemory attempt is retried with half the micro-batch, the
     way the operator does;
3. prints tokens/s (non-padding tokens, steady state: the first optimizer step excluded), the
   golora/seed ratio, peak GPU memory and each golora run's per-step times (synchronised), and
   writes ``<out>.json``, ``<out>.txt`` (and ``<out>.profile.txt``).

Targets: golora >= 12,000 tok/s on an H200 and >= 11.5x the seed recipe in the same run; the T4
profile <= 14.5 GiB peak without OOM.

``--smoke`` runs the same plumbing on CPU with a tiny shape (no GPU needed).

    python bench/train_gpu.py --out bench/results/train_gpu_h200
    python bench/train_gpu.py --smoke --out /tmp/train_gpu_smoke

On the device machine: ``bench/device/train_gpu.sh`` (installs the carried wheels, runs all of it).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
for _sub in ("operator", "trainer_image"):
    if str(REPO / _sub) not in sys.path:
        sys.path.insert(0, str(REPO / _sub))

GIB = 1024**3
TARGET_TOKENS_PER_SECOND = 12_000
TARGET_RATIO = 11.5
T4_LIMIT_GIB = 14.5
T4_CAP_GIB = 15.0

SHAPES = {
    # Qwen/Qwen2.5-7B-Instruct's config.json (architecture fields only)
    "qwen2.5-7b": dict(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
                       num_key_value_heads=4, vocab_size=152064, max_position_embeddings=32768,
                       rope_theta=1_000_000.0, rms_norm_eps=1e-6, tie_word_embeddings=False),
    "smoke": dict(hidden_size=128, intermediate_size=384, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, vocab_size=4096, max_position_embeddings=4096, rope_theta=10000.0,
                  rms_norm_eps=1e-6, tie_word_embeddings=False),
}


# --- synthetic Go ---------------------------------------------------------------------------
_NOUNS = ["pod", "node", "lease", "entry", "peer", "queue", "cache", "token", "request", "snapshot", "member",
          "watcher", "index", "shard", "replica", "object", "config", "stream", "batch", "record"]
_VERBS = ["get", "list", "update", "delete", "sync", "apply", "reconcile", "watch", "compact", "flush", "encode",
          "decode", "validate", "schedule", "resolve", "merge", "append", "restore", "release", "acquire"]
_TYPES = ["string", "int", "int64", "bool", "[]byte", "time.Duration", "*Node", "map[string]int", "[]string"]


def _ident(rng: random.Random, exported: bool = False) -> str:
    name = rng.choice(_VERBS) + rng.choice(_NOUNS).capitalize()
    return name[0].upper() + name[1:] if exported else name


def _stmt(rng: random.Random, depth: int) -> list[str]:
    ind = "\t" * depth
    a, b, n = rng.choice(_NOUNS), rng.choice(_NOUNS), rng.choice(_NOUNS).capitalize()
    kind = rng.randrange(9 if depth < 3 else 5)
    if kind == 0:
        return [f"{ind}{a}, err := r.client.{_ident(rng, True)}(ctx, {b}.Name)",
                f"{ind}if err != nil {{", f'{ind}\treturn nil, fmt.Errorf("{rng.choice(_VERBS)} {a} %q: %w", {b}.Name, err)',
                f"{ind}}}"]
    if kind == 1:
        return [f"{ind}{a}.mu.Lock()", f"{ind}defer {a}.mu.Unlock()"]
    if kind == 2:
        return [f"{ind}if len({a}.{n}s) == 0 {{", f"{ind}\treturn nil, Err{n}NotFound", f"{ind}}}"]
    if kind == 3:
        return [f"{ind}{b}Count += {rng.randrange(1, 64)}"]
    if kind == 4:
        return [f'{ind}klog.V({rng.randrange(1, 5)}).InfoS("{rng.choice(_VERBS)} {a}", "{b}", {b}.Name, "count", len({a}.{n}s))']
    body = [ln for _ in range(rng.randrange(1, 4)) for ln in _stmt(rng, depth + 1)]
    if kind == 5:
        return [f"{ind}for i, {a} := range {b}.{n}s {{", *body, f"{ind}\t{b}.index[{a}.Name] = i", f"{ind}}}"]
    if kind == 6:
        return [f"{ind}select {{", f"{ind}case <-ctx.Done():", f"{ind}\treturn nil, ctx.Err()",
                f"{ind}case {a} := <-r.{b}Ch:", *body, f"{ind}}}"]
    if kind == 7:
        return [f"{ind}switch {a}.Phase {{", f"{ind}case {n}Pending, {n}Running:", *body, f"{ind}default:",
                f"{ind}\treturn nil, fmt.Errorf(\"unexpected phase %s\", {a}.Phase)", f"{ind}}}"]
    return [f"{ind}if {a}.{n} != nil && {a}.{n}.Generation > {b}.ObservedGeneration {{", *body, f"{ind}}}"]


def go_function(rng: random.Random, statements: int) -> tuple[str, str]:
    name = _ident(rng, True)
    recv = rng.choice(_NOUNS)
    noun = rng.choice(_NOUNS)
    doc = (f"{name} {rng.choice(_VERBS)}s the {noun} of the {recv} and returns the {rng.choice(_NOUNS)}s "
           f"that changed. It holds the {recv} lock while it {rng.choice(_VERBS)}s the {rng.choice(_NOUNS)} index.")
    lines = [f"func (r *{recv.capitalize()}Reconciler) {name}(ctx context.Context, {noun} *{noun.capitalize()}) "
             f"([]{rng.choice(_TYPES)}, error) {{"]
    for _ in range(statements):
        lines += _stmt(rng, 1)
    lines += ["\treturn out, nil", "}"]
    return doc, "\n".join(lines)


def go_corpus(rng: random.Random, n: int = 300) -> list[str]:
    from golora_trainer.gosrc import BUNDLED_GO

    return [BUNDLED_GO] + ["\n\n".join(go_function(rng, rng.randrange(3, 30))) for _ in range(n)]


def make_pairs(tok, rng: random.Random, count: int, lengths) -> list[dict]:
    """``count`` pairs whose chat-formatted length is near the targets drawn from ``lengths``."""
    pairs = []
    for _ in range(count):
        target = lengths(rng)
        statements = max(1, target // 30)
        for _ in range(6):  # adjust the statement count toward the token target
            doc, code = go_function(rng, statements)
            msgs = [{"role": "user", "content": doc}, {"role": "assistant", "content": code}]
            n = len(tok(tok.apply_chat_template(msgs, tokenize=False), add_special_tokens=False)["input_ids"])
            if abs(n - target) <= max(16, target // 10):
                break
            statements = max(1, round(statements * target / max(n, 1)))
        pairs.append({"instruction": doc, "output": code})
    return pairs


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


# --- worker: build the random checkpoint ---------------------------------------------------
def worker_build(spec: dict) -> dict:
    import torch
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    out = Path(spec["model_dir"])
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    t0 = time.monotonic()
    config = Qwen2Config(**SHAPES[spec["shape"]], bos_token_id=None, eos_token_id=spec["eos_id"],
                         pad_token_id=spec["pad_id"], dtype="bfloat16" if dtype == torch.bfloat16 else "float32")
    torch.manual_seed(0)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    with torch.device(device):
        model = Qwen2ForCausalLM(config)
    torch.set_default_dtype(previous)
    model.generation_config = GenerationConfig(eos_token_id=[spec["eos_id"]], pad_token_id=spec["pad_id"])
    params = sum(p.numel() for p in model.parameters())
    t_init = time.monotonic() - t0
    model.to("cpu")  # serialise from host memory
    model.save_pretrained(out, safe_serialization=True, max_shard_size="4GB")
    size = sum(p.stat().st_size for p in out.glob("*.safetensors"))
    return {"params": params, "init_seconds": round(t_init, 1), "save_seconds": round(time.monotonic() - t0 - t_init, 1),
            "bytes": size, "device": device, "dtype": str(dtype)}


# --- worker: the seed recipe ---------------------------------------------------------------
class _Meter:
    """A TrainerCallback factory measuring tokens/s between the first and the last logged step."""

    @staticmethod
    def make():
        from transformers import TrainerCallback

        class Meter(TrainerCallback):
            def __init__(self):
                self.points: list[tuple[float, int, int]] = []  # (time, step, num_tokens)
                self.losses: list[float] = []

            def on_log(self, args, state, control, logs=None, **kw):
                logs = logs or {}
                if "num_tokens" in logs:
                    self.points.append((time.monotonic(), state.global_step, int(logs["num_tokens"])))
                if "loss" in logs:
                    self.losses.append(float(logs["loss"]))

            def rate(self) -> tuple[float | None, int, int, float]:
                if len(self.points) < 2:
                    return None, 0, 0, 0.0
                (t0, s0, n0), (t1, s1, n1) = self.points[0], self.points[-1]
                return (n1 - n0) / (t1 - t0), s1 - s0, n1 - n0, t1 - t0

        return Meter()


def _gpu_memory(pid: int | None = None) -> dict:
    import torch

    if not torch.cuda.is_available():
        return {}
    out = {"peak_allocated_gib": round(torch.cuda.max_memory_allocated() / GIB, 3),
           "peak_reserved_gib": round(torch.cuda.max_memory_reserved() / GIB, 3)}
    try:  # whole-process usage as nvidia-smi shows it (includes the CUDA context)
        import pynvml

        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(0)
        for proc in pynvml.nvmlDeviceGetComputeRunningProcesses(handle):
            if proc.pid == (pid or os.getpid()) and proc.usedGpuMemory:
                out["process_gib_nvml"] = round(proc.usedGpuMemory / GIB, 3)
    except Exception as exc:  # noqa: BLE001
        out["nvml"] = f"unavailable: {type(exc).__name__}"
    return out


def worker_seed(spec: dict) -> dict:
    import torch
    from datasets import Dataset
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig
    from trl import SFTConfig, SFTTrainer

    cuda = torch.cuda.is_available()
    t0 = time.monotonic()
    tok = AutoTokenizer.from_pretrained(spec["model_dir"])
    kwargs: dict = {}
    notes = []
    if cuda:
        # the blog: load_in_4bit via BitsAndBytes, compute dtype left at its fp32 default
        kwargs = {"quantization_config": BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                                            bnb_4bit_use_double_quant=True),
                  "device_map": {"": 0}}
    else:
        notes.append("CPU smoke: no 4-bit (bitsandbytes needs CUDA for the real recipe)")
    model = AutoModelForCausalLM.from_pretrained(spec["model_dir"], **kwargs)
    if cuda:
        model = prepare_model_for_kbit_training(model)  # casts every non-int8 parameter to fp32
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, bias="none",
                                             target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
                                             task_type="CAUSAL_LM"))
    load_seconds = time.monotonic() - t0
    rows = [json.loads(line) for line in Path(spec["train"]).read_text().splitlines()]
    ds = Dataset.from_list([{"prompt": r["instruction"] + "\n", "completion": r["output"]} for r in rows])
    meter = _Meter.make()
    args = SFTConfig(output_dir=str(Path(spec["work"]) / "seed-out"), per_device_train_batch_size=1,
                     gradient_accumulation_steps=1, learning_rate=2e-4, fp16=False, bf16=False, use_cpu=not cuda,
                     max_steps=spec["steps"], logging_steps=1, save_strategy="no", report_to="none",
                     disable_tqdm=True, max_length=spec["max_seq_length"])
    trainer = SFTTrainer(model=model, args=args, train_dataset=ds, processing_class=tok, callbacks=[meter])
    dtypes = sorted({str(p.dtype) for p in trainer.model.parameters() if p.requires_grad})
    t1 = time.monotonic()
    trainer.train()
    rate, steps, tokens, seconds = meter.rate()
    return {"tokens_per_second": rate, "measured_steps": steps, "measured_tokens": tokens,
            "measured_seconds": round(seconds, 2), "load_seconds": round(load_seconds, 1),
            "train_seconds": round(time.monotonic() - t1, 1), "micro_batch_size": 1, "gradient_accumulation_steps": 1,
            "precision": "fp32", "quantization": "nf4" if cuda else "none", "gradient_checkpointing":
            bool(args.gradient_checkpointing), "trainable_dtypes": dtypes, "losses": meter.losses, "notes": notes,
            **_gpu_memory()}


# --- worker: golora's trainer --------------------------------------------------------------
def _kernel_seconds(prof) -> float:
    """GPU time of the kernels a profile saw (device-side events only, no CPU op counted twice)."""
    try:
        from torch.autograd import DeviceType

        kernels = [e for e in prof.events() if e.device_type == DeviceType.CUDA]
        return sum(getattr(e, "device_time", None) or getattr(e, "cuda_time", 0) for e in kernels) / 1e6
    except Exception:  # noqa: BLE001 - a profiler API change must not lose the run
        return float("nan")


def liger_modules(model) -> int:
    """Modules whose forward Liger Kernel replaced (0: its layer kernels are not in use)."""
    return sum(1 for m in model.modules()
               if str(getattr(getattr(m, "forward", None), "__module__", "")).startswith("liger_kernel"))


PACKED_CHECK_SAMPLES = 4


def packed_check(model, args, row: dict, pad_id: int) -> dict:
    """Loss of the first few samples of a packed row, packed and padded, on the device and in the
    precision training runs in (the varlen kernel is CUDA-only: the CPU tests cannot reach it)."""
    import torch

    from golora_trainer.packing import CALLS, PackedCollator, kernel_for, sample_bounds, unpack

    cu = sample_bounds(row)[:PACKED_CHECK_SAMPLES + 1]
    feats = [{"input_ids": row["input_ids"][0, a:b].tolist(), "labels": row["labels"][0, a:b].tolist()}
             for a, b in zip(cu, cu[1:], strict=False)]
    packed = PackedCollator()(feats)
    padded = unpack(packed, pad_id)
    device = next(model.parameters()).device
    dtype = torch.bfloat16 if args.bf16 else torch.float16
    autocast = device.type == "cuda" and (args.bf16 or args.fp16)  # as the Trainer runs the steps
    was = model.training
    model.eval()
    with torch.no_grad(), torch.autocast(device.type, dtype=dtype, enabled=autocast):
        losses = [float(model(**{k: v.to(device) if hasattr(v, "to") else v for k, v in b.items()}).loss)
                  for b in (packed, padded)]
    model.train(was)
    CALLS.clear()  # from here on the counts are the run's
    if device.type == "cuda":  # the check's logits must not count in the run's peak
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    return {"samples": len(feats), "tokens": cu[-1], "packed_loss": round(losses[0], 5),
            "padded_loss": round(losses[1], 5), "abs_diff": round(abs(losses[0] - losses[1]), 5),
            "attention": model.config._attn_implementation, "kernel": kernel_for(model)}


def _instrument(spec: dict, clock: list[float], profile_out: list[str], kernels: list[int],
                checks: list[dict] | None = None) -> None:
    """Adds bench-only callbacks to the trainer golora builds: synchronised per-step times, how
    many modules run Liger's kernels once training starts, for a packed run the packed-vs-padded
    loss check and, when asked, torch.profiler over a few steps."""
    import torch
    from transformers import TrainerCallback

    from golora_trainer.train import TrainingRun

    cuda = torch.cuda.is_available()

    def sync():
        if cuda:
            torch.cuda.synchronize()

    class StepClock(TrainerCallback):
        def on_train_begin(self, args, state, control, model=None, train_dataloader=None, processing_class=None,
                           **kw):
            kernels.append(liger_modules(model) if model is not None else 0)
            if checks is not None and model is not None and train_dataloader is not None:
                try:
                    checks.append(packed_check(model, args, next(iter(train_dataloader)),
                                               processing_class.pad_token_id))
                except Exception as exc:  # noqa: BLE001 - reported next to the run, not lost with it
                    checks.append({"error": f"{type(exc).__name__}: {exc}"[:500]})

        def on_step_begin(self, args, state, control, **kw):
            if not hasattr(self, "t"):
                sync()
                self.t = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            sync()
            now = time.perf_counter()
            clock.append(round(now - self.t, 4))
            self.t = now

    class Profile(TrainerCallback):
        def __init__(self, start: int, steps: int):
            self.start, self.stop, self.prof, self.t0 = start, start + steps, None, 0.0

        def on_step_begin(self, args, state, control, **kw):
            if state.global_step == self.start and self.prof is None:
                from torch.profiler import ProfilerActivity, profile

                acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
                sync()
                self.prof = profile(activities=acts)
                self.prof.__enter__()
                self.t0 = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            if self.prof is not None and state.global_step >= self.stop:
                self.finish(state)

        def on_train_end(self, args, state, control, **kw):
            if self.prof is not None:
                self.finish(state)

        def finish(self, state):
            sync()
            wall = time.perf_counter() - self.t0
            self.prof.__exit__(None, None, None)
            events = self.prof.key_averages()
            key = "device_time_total" if cuda else "cpu_time_total"
            busy = _kernel_seconds(self.prof)
            launches = sum(e.count for e in events if e.key in ("cudaLaunchKernel", "cuLaunchKernel",
                                                                 "cudaLaunchKernelExC"))
            profile_out.append(
                f"{state.global_step - self.start} steps, {wall:.3f}s wall, GPU kernels {busy:.3f}s "
                f"({100 * busy / wall:.0f}% busy), {launches} kernel launches\n"
                + events.table(sort_by=key, row_limit=25, max_name_column_width=70))
            self.prof = None

    build = TrainingRun.build_trainer

    def build_instrumented(self, *args, **kwargs):
        trainer = build(self, *args, **kwargs)
        trainer.add_callback(StepClock())
        if spec.get("profile_steps"):
            trainer.add_callback(Profile(*spec["profile_steps"]))
        return trainer

    TrainingRun.build_trainer = build_instrumented


def _attention_calls() -> dict:
    """Layer calls of golora_varlen per kernel in a packed run: training ("varlen" on CUDA,
    "sdpa_per_sample" elsewhere) and the padded eval batches ("sdpa")."""
    from golora_trainer.packing import CALLS

    return dict(CALLS)


def worker_golora(spec: dict) -> dict:
    from golora.api.worker import TrainerConfig
    from golora_trainer.report import StatusReporter
    from golora_trainer.train import run

    clock: list[float] = []
    profile_out: list[str] = []
    kernels: list[int] = []
    checks: list[dict] | None = [] if spec.get("packed") else None
    _instrument(spec, clock, profile_out, kernels, checks)

    class Recorder(StatusReporter):
        def __init__(self):
            super().__init__(None)
            self.stages: list[tuple[str, float]] = []
            self.final: dict | None = None

        def progress(self, progress, *, force=False):
            stage = progress.get("stage")
            if stage and (not self.stages or self.stages[-1][0] != stage):
                self.stages.append((stage, time.monotonic()))

        def result(self, result, progress=None):
            self.final = result
            self.stages.append(("end", time.monotonic()))
            return True

    doc = {
        "spec": {
            "baseModel": {"path": "model"},
            "dataPath": spec["train"],
            "quantization": {"type": spec.get("quantization", "nf4")},
            "training": {"maxSteps": spec["steps"], "maxSeqLength": spec["max_seq_length"],
                         "effectiveBatchSize": spec["effective_batch_size"], "loggingSteps": 1,
                         "checkpointSteps": 100000, "microBatchSize": spec.get("micro_batch_size", "auto")},
            "qualityGate": {"enabled": spec.get("gate", False), "prompts": 4, "maxNewTokens": 32},
        },
        "storeRoot": spec["work"],
        "trainPath": spec["train"],
        "evalPath": spec["eval"],
        "outputPath": f"adapters/{spec['name']}",
        "modelPath": spec["model_dir"],
        "attempt": spec.get("attempt", 1),
        "microBatchSize": spec.get("override_micro_batch"),
    }
    shutil.rmtree(Path(spec["work"]) / "adapters" / spec["name"], ignore_errors=True)
    rec = Recorder()
    t0 = time.monotonic()
    code = run(TrainerConfig.model_validate(doc), reporter=rec)
    result = rec.final or {}
    stamps = dict(rec.stages)
    times = {}
    order = [s for s, _ in rec.stages]
    for a, b in zip(order, order[1:], strict=False):
        times[a] = round(stamps[b] - stamps[a], 1)
    peak = result.get("peakMemoryBytes")
    return {
        "exit_code": code,
        "failure": result.get("failure"),
        "tokens_per_second": result.get("tokensPerSecond"),
        "micro_batch_size": result.get("microBatchSize"),
        "gradient_accumulation_steps": result.get("gradientAccumulationSteps"),
        "gradient_checkpointing": result.get("gradientCheckpointing"),
        "precision": result.get("precision"),
        "quantization": result.get("quantization"),
        "loss_implementation": result.get("lossImplementation"),
        "padding_efficiency": result.get("paddingEfficiency"),
        "estimated_peak_gib": round(result["estimatedPeakMemoryBytes"] / GIB, 2)
        if result.get("estimatedPeakMemoryBytes") else None,
        "trainer_peak_reserved_gib": round(peak / GIB, 3) if peak else None,
        "first_loss": result.get("firstLoss"),
        "train_loss": result.get("trainLoss"),
        "eval_loss": result.get("evalLoss"),
        "base_eval_loss": result.get("baseEvalLoss"),
        "quality_gate": (result.get("qualityGate") or {}).get("reason"),
        "global_step": result.get("globalStep"),
        "stage_seconds": times,
        "step_seconds": clock,
        "liger_modules": kernels[0] if kernels else None,
        "packed_check": checks[0] if checks else None,
        "attention_calls": _attention_calls() if spec.get("packed") else None,
        "profile": profile_out[0] if profile_out else None,
        "wall_seconds": round(time.monotonic() - t0, 1),
        **_gpu_memory(),
    }


WORKERS = {"build": worker_build, "seed": worker_seed, "golora": worker_golora}


# --- orchestration -------------------------------------------------------------------------
def run_worker(kind: str, spec: dict, env: dict | None, timeout: float) -> dict:
    spec_path = Path(spec["work"]) / f"spec-{spec.get('name', kind)}.json"
    out_path = spec_path.with_suffix(".out.json")
    out_path.unlink(missing_ok=True)
    spec_path.write_text(json.dumps(spec))
    t0 = time.monotonic()
    full_env = {**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1"}
    full_env["PYTHONPATH"] = os.pathsep.join(
        [p for p in (full_env.get("PYTHONPATH", ""), str(REPO / "operator"), str(REPO / "trainer_image")) if p])
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", kind, "--spec", str(spec_path),
           "--result", str(out_path)]
    print(f"[bench] {spec.get('name', kind)}: starting", flush=True)
    try:
        proc = subprocess.run(cmd, env=full_env, timeout=max(10, timeout), check=False)
        rc = proc.returncode
    except subprocess.TimeoutExpired:
        rc = None
    res = json.loads(out_path.read_text()) if out_path.is_file() else {}
    res.setdefault("process_exit", rc)
    res["process_seconds"] = round(time.monotonic() - t0, 1)
    if rc is None:
        res["error"] = f"timed out after {timeout:.0f}s"
    elif not out_path.is_file():
        res["error"] = f"worker exited {rc} without a result"
    print(f"[bench] {spec.get('name', kind)}: done in {res['process_seconds']}s: "
          f"{ {k: res.get(k) for k in ('tokens_per_second', 'micro_batch_size', 'peak_reserved_gib', 'exit_code', 'error') if k in res} }",
          flush=True)
    return res


def versions() -> dict:
    out = {"python": platform.python_version()}
    for name in ("torch", "transformers", "trl", "peft", "bitsandbytes", "accelerate", "datasets"):
        try:
            mod = __import__(name)
            out[name] = getattr(mod, "__version__", "?")
        except Exception as exc:  # noqa: BLE001
            out[name] = f"missing ({type(exc).__name__})"
    try:
        import torch

        if torch.cuda.is_available():
            p = torch.cuda.get_device_properties(0)
            out["gpu"] = f"{p.name}, {p.total_memory / GIB:.1f} GiB, cc {p.major}.{p.minor}"
            out["cuda"] = torch.version.cuda
    except Exception:  # noqa: BLE001
        pass
    return out


def pick_workdir(requested: str | None, need_bytes: int) -> Path:
    if requested:
        return Path(requested)
    shm = Path("/dev/shm")
    if shm.is_dir() and shutil.disk_usage(shm).free > need_bytes * 1.3:
        return shm / "golora-bench"
    return Path("/tmp/golora-bench")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", help="output path prefix: writes <out>.json and <out>.txt")
    ap.add_argument("--smoke", action="store_true", help="tiny shape on CPU: checks the plumbing only")
    ap.add_argument("--work", help="work directory (default /dev/shm/golora-bench when it fits, else /tmp)")
    ap.add_argument("--steps", type=int, help="optimizer steps per golora run, one epoch (default 18; smoke 3)")
    ap.add_argument("--seed-steps", type=int, help="seed-recipe steps (default 10; smoke 3)")
    ap.add_argument("--t4-steps", type=int, help="T4-profile steps (default 3; smoke 2)")
    ap.add_argument("--effective-batch-size", type=int, default=16)
    ap.add_argument("--budget", type=float, default=400, help="seconds for the whole run; later runs are skipped")
    ap.add_argument("--runs", default="golora,golora-hf,seed,t4",
                    help="comma list among golora,golora-hf,seed,t4,golora-liger,golora-packed,golora-bf16,"
                         "golora-profile")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--spec", help=argparse.SUPPRESS)
    ap.add_argument("--result", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.worker:
        import logging

        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        spec = json.loads(Path(args.spec).read_text())
        try:
            res = WORKERS[args.worker](spec)
        except Exception as exc:  # noqa: BLE001 - reported, not raised
            import traceback

            traceback.print_exc()
            res = {"error": f"{type(exc).__name__}: {exc}"[:2000]}
            try:
                res.update(_gpu_memory())
            except Exception:  # noqa: BLE001
                pass
        Path(args.result).write_text(json.dumps(res, default=str))
        return 0

    if not args.out:
        ap.error("--out is required")
    t_start = time.monotonic()
    shape = "smoke" if args.smoke else "qwen2.5-7b"
    steps = args.steps or (3 if args.smoke else 18)
    seed_steps = args.seed_steps or (3 if args.smoke else 10)
    t4_steps = args.t4_steps or (2 if args.smoke else 3)
    max_len = 256 if args.smoke else 1024
    t4_len = 512 if args.smoke else 2048
    need = 20 * 10**9 if not args.smoke else 10**8
    work = pick_workdir(args.work, need)
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    report: dict = {"benchmark": "bench/train_gpu.py", "smoke": args.smoke, "shape": shape, "work": str(work),
                    "versions": versions(), "runs": {}, "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    print(f"[bench] {json.dumps(report['versions'])}", flush=True)

    # tokenizer + data ------------------------------------------------------------------------
    from golora_trainer.tiny import train_tokenizer

    rng = random.Random(1234)
    tok = train_tokenizer(go_corpus(rng), 3000)
    model_dir = work / "model"
    model_dir.mkdir()
    tok.save_pretrained(model_dir)

    def lognormal(median: int, lo: int, hi: int):
        return lambda r: int(min(hi, max(lo, r.lognormvariate(math.log(median), 0.6))))

    n_train = max(steps * args.effective_batch_size, seed_steps + 8)  # the golora runs train one epoch
    train = make_pairs(tok, rng, n_train, lognormal(max_len * 3 // 10, 64, max_len - 24))
    evals = make_pairs(tok, rng, 16, lognormal(max_len * 3 // 10, 64, max_len - 24))
    t4_train = make_pairs(tok, rng, t4_steps * args.effective_batch_size + 8, lambda r: t4_len + 64)
    t4_eval = make_pairs(tok, rng, 8, lambda r: t4_len + 64)
    for name, rows in (("train", train), ("eval", evals), ("t4-train", t4_train), ("t4-eval", t4_eval)):
        write_jsonl(work / f"{name}.jsonl", rows)
    lens = sorted(len(tok(tok.apply_chat_template(
        [{"role": "user", "content": p["instruction"]}, {"role": "assistant", "content": p["output"]}],
        tokenize=False), add_special_tokens=False)["input_ids"]) for p in train)
    report["data"] = {"train_samples": len(train), "tokens_min": lens[0], "tokens_median": lens[len(lens) // 2],
                      "tokens_mean": round(sum(lens) / len(lens)), "tokens_max": lens[-1],
                      "t4_samples": len(t4_train), "t4_sample_tokens": f">= {t4_len} (truncated at {t4_len})",
                      "tokenizer_vocab": len(tok)}
    print(f"[bench] data {report['data']}", flush=True)

    # checkpoint --------------------------------------------------------------------------------
    build = run_worker("build", {"name": "build", "work": str(work), "model_dir": str(model_dir), "shape": shape,
                                 "eos_id": tok.eos_token_id, "pad_id": tok.pad_token_id}, None, 600)
    report["checkpoint"] = build
    if "error" in build:
        return finish(report, args.out, t_start)

    common = {"work": str(work), "model_dir": str(model_dir), "effective_batch_size": args.effective_batch_size}
    wanted = [r.strip() for r in args.runs.split(",") if r.strip()]
    estimates = {"golora": 120, "golora-hf": 90, "seed": 90, "t4": 150, "golora-liger": 90, "golora-packed": 90,
                 "golora-bf16": 100, "golora-profile": 90}

    def left() -> float:
        return args.budget - (time.monotonic() - t_start)

    for run_name in wanted:
        if left() < (20 if args.smoke else estimates.get(run_name, 100)):
            report["runs"][run_name] = {"skipped": f"time budget ({left():.0f}s left)"}
            continue
        if run_name == "seed":
            report["runs"]["seed"] = run_worker("seed", {**common, "name": "seed", "train": str(work / "train.jsonl"),
                                                         "steps": seed_steps, "max_seq_length": max_len}, None, left())
            continue
        t4 = run_name == "t4"
        profiling = run_name == "golora-profile"
        spec = {**common, "name": run_name, "steps": t4_steps if t4 else (min(steps, 6) if profiling else steps),
                "max_seq_length": t4_len if t4 else max_len,
                "train": "t4-train.jsonl" if t4 else "train.jsonl", "eval": "t4-eval.jsonl" if t4 else "eval.jsonl",
                "gate": run_name == "golora", "quantization": "none" if run_name == "golora-bf16" else "nf4",
                "profile_steps": [1, 2] if profiling else None,  # after the first (warm-up) step
                "packed": run_name == "golora-packed"}
        env = {"GOLORA_GPU_COMPUTE_CAPABILITY": "7.5", "GOLORA_GPU_MEMORY_GIB": str(T4_CAP_GIB)} if t4 else {}
        if run_name == "golora-hf":
            env["GOLORA_TRAIN_SAMPLER"] = "group_by_length"
        if run_name == "golora-liger":
            env["GOLORA_LAYER_KERNELS"] = "liger"
        if run_name == "golora-packed":
            env["GOLORA_PACKING"] = "padding_free"
        attempts = []
        override = None
        for attempt in (1, 2, 3):
            res = run_worker("golora", {**spec, "attempt": attempt, "override_micro_batch": override}, env, left())
            attempts.append(res)
            if res.get("exit_code") != 3 or left() < 60:  # 3 = OutOfMemory: retry with half, like the operator
                break
            override = max(1, (res.get("micro_batch_size") or 2) // 2)
        final = dict(attempts[-1])
        if len(attempts) > 1:
            final["attempts"] = [{k: a.get(k) for k in ("micro_batch_size", "exit_code", "peak_reserved_gib",
                                                        "failure")} for a in attempts]
        report["runs"][run_name] = final
    return finish(report, args.out, t_start)


def finish(report: dict, out: str, t_start: float) -> int:
    runs = report["runs"]
    g, s, t4 = runs.get("golora", {}), runs.get("seed", {}), runs.get("t4", {})
    g_tps, s_tps = g.get("tokens_per_second"), s.get("tokens_per_second")
    ratio = g_tps / s_tps if g_tps and s_tps else None
    hf_tps = runs.get("golora-hf", {}).get("tokens_per_second")
    liger = runs.get("golora-liger", {})
    liger_tps = liger.get("tokens_per_second") if liger.get("liger_modules") else None
    packed = runs.get("golora-packed", {})
    check = packed.get("packed_check") or {}
    packed_tps = packed.get("tokens_per_second") if check.get("attention") == "golora_varlen" else None
    t4_peak = t4.get("process_gib_nvml") or t4.get("peak_reserved_gib")
    report["summary"] = {
        "golora_tokens_per_second": g_tps,
        "seed_tokens_per_second": s_tps,
        "ratio": round(ratio, 2) if ratio else None,
        "buckets_over_group_by_length": round(g_tps / hf_tps, 2) if g_tps and hf_tps else None,
        "liger_over_golora": round(liger_tps / g_tps, 2) if g_tps and liger_tps else None,
        "packed_over_golora": round(packed_tps / g_tps, 2) if g_tps and packed_tps else None,
        "packed_over_seed": round(packed_tps / s_tps, 2) if s_tps and packed_tps else None,
        "packed_check": check or None,
        "t4_peak_gib": t4_peak,
        "t4_oom_free": t4.get("exit_code") == 0 and "attempts" not in t4 if t4 else None,
        "targets": {
            f"golora >= {TARGET_TOKENS_PER_SECOND} tok/s": bool(g_tps and g_tps >= TARGET_TOKENS_PER_SECOND),
            f"ratio >= {TARGET_RATIO}x": bool(ratio and ratio >= TARGET_RATIO),
            f"T4 profile <= {T4_LIMIT_GIB} GiB without OOM": bool(
                t4 and t4.get("exit_code") == 0 and "attempts" not in t4 and t4_peak and t4_peak <= T4_LIMIT_GIB),
        },
        "seconds": round(time.monotonic() - t_start, 1),
    }
    text = table(report)
    print(text, flush=True)
    base = Path(out)
    base.parent.mkdir(parents=True, exist_ok=True)
    Path(str(base) + ".json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    Path(str(base) + ".txt").write_text(text + "\n")
    profiles = [f"== {name}\n{r['profile']}" for name, r in runs.items() if r.get("profile")]
    if profiles:
        Path(str(base) + ".profile.txt").write_text("\n\n".join(profiles) + "\n")
    return 0


def table(report: dict) -> str:
    v = report["versions"]
    lines = [
        f"golora training benchmark ({'SMOKE, CPU' if report['smoke'] else report['shape']})",
        f"device: {v.get('gpu', 'cpu')}; torch {v.get('torch')}, transformers {v.get('transformers')}, "
        f"trl {v.get('trl')}, peft {v.get('peft')}, bitsandbytes {v.get('bitsandbytes')}",
        f"data: {report.get('data')}",
        "",
        f"{'run':<12} {'tok/s':>9} {'micro':>5} {'GA':>3} {'ckpt':>5} {'prec':>5} {'quant':>5} "
        f"{'peak rsv GiB':>12} {'proc GiB':>9} {'est GiB':>8} {'pad eff':>7} {'exit':>4}  notes",
    ]
    clocks = []
    for name, r in report["runs"].items():
        if "skipped" in r:
            lines.append(f"{name:<12} skipped: {r['skipped']}")
            continue
        tps = r.get("tokens_per_second")
        note = r.get("error") or (r.get("failure") or {}).get("reason", "") if isinstance(r.get("failure"), dict) else (
            r.get("error") or "")
        if r.get("exit_code") == 5:
            note += " (the gate refusing random weights' output, as it should)"
        if name == "golora-liger" or r.get("liger_modules"):
            note += f" liger kernels on {r.get('liger_modules') or 0} modules"
        if r.get("packed_check"):
            c = r["packed_check"]
            note += (f" packed check: {c['error']}" if "error" in c else
                     f" {c['kernel']}; loss packed {c['packed_loss']} vs padded {c['padded_loss']}"
                     f" on {c['samples']} samples ({c['tokens']} tok); attention calls {r.get('attention_calls')}")
        if r.get("attempts"):
            note += " attempts " + ", ".join(f"mb{a['micro_batch_size']}->exit{a['exit_code']}" for a in r["attempts"])
        lines.append(
            f"{name:<12} {tps if tps is None else round(tps):>9} {str(r.get('micro_batch_size')):>5} "
            f"{str(r.get('gradient_accumulation_steps')):>3} {str(r.get('gradient_checkpointing'))[:5]:>5} "
            f"{str(r.get('precision')):>5} {str(r.get('quantization')):>5} {str(r.get('peak_reserved_gib')):>12} "
            f"{str(r.get('process_gib_nvml')):>9} {str(r.get('estimated_peak_gib')):>8} "
            f"{str(r.get('padding_efficiency')):>7} {str(r.get('exit_code', r.get('process_exit'))):>4}  {note}")
        if r.get("step_seconds"):
            clocks.append(f"  {name}: " + " ".join(f"{t:.2f}" for t in r["step_seconds"]))
    if clocks:
        lines += ["", "seconds per optimizer step (synchronised):", *clocks]
    s = report.get("summary", {})
    lines += ["", f"golora/seed ratio: {s.get('ratio')}; buckets/group_by_length: "
                  f"{s.get('buckets_over_group_by_length')}; liger/golora: {s.get('liger_over_golora')}; "
                  f"packed/golora: {s.get('packed_over_golora')} (packed/seed {s.get('packed_over_seed')}); T4 profile peak: {s.get('t4_peak_gib')} GiB; "
                  f"total {s.get('seconds')}s"]
    for target, ok in (s.get("targets") or {}).items():
        lines.append(f"  [{'x' if ok else ' '}] {target}")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
