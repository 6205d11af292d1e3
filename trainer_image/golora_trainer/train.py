"""One training attempt, end to end: pre-flight, data, plan, train, evaluate, gate, save, report.

``run(config)`` returns the process exit code (``golora.api.worker`` EXIT_*); every
failure is reported to the CR's status, to result fields and to the termination log with a
reason the operator acts on (OutOfMemory: retry with half the micro-batch).
"""

from __future__ import annotations

import os

os.environ.setdefault("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import logging  # noqa: E402
import math  # noqa: E402
import shutil  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from golora.api.loratraining_status import QualityGateResult, TrainingResult, shown  # noqa: E402
from golora.api.worker import (  # noqa: E402
    EXIT_DIVERGED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_QUALITY_GATE_FAILED,
    GATE_DISABLED,
    REASON_DIVERGED,
    REASON_INTERRUPTED,
    REASON_INVALID_ADAPTER,
    REASON_INVALID_CONFIG,
    REASON_QUALITY_GATE_FAILED,
    TrainerConfig,
)
from golora.timestamps import now_rfc3339  # noqa: E402

from . import checkpoints, distributed, sft  # noqa: E402
from .adapter import RESULT_FILE, clean_stale_staging, install_adapter, stage_adapter  # noqa: E402
from .callbacks import (  # noqa: E402
    DivergenceGuard,
    FaultInjection,
    FinalCheckpoint,
    ProgressCallback,
    StopOnSignal,
    TrainableDtypeGuard,
)
from .data import Formatter, data_digest, holdout, read_pairs, to_dataset, tokenize_pairs  # noqa: E402
from .errors import TrainerError, classify  # noqa: E402
from .evaluate import eval_loss, quality_gate  # noqa: E402
from .memory import LOSS_FUSED, LOSS_PLAIN, ModelShape, Recipe, accumulation_for, plan_micro_batch  # noqa: E402
from .modelio import (  # noqa: E402
    check_prequantized,
    detect_device,
    load_config_dict,
    load_model,
    load_tokenizer,
    resolve_source,
)
from .precision import resolve_precision  # noqa: E402
from .report import CURVE_FIELDS, StatusReporter, progress_fields, write_termination_message  # noqa: E402

log = logging.getLogger(__name__)

CPU_MICRO_BATCH = 4  # CPU runs are tiny-model runs: no memory model needed
EVAL_MAX_SAMPLES = 512  # eval-loss samples (base and adapter see the same ones)
SEQ_ROUND = 64


def _roundup(n: int, m: int) -> int:
    return ((n + m - 1) // m) * m


class TrainingRun:
    """State of one attempt; ``fields`` become TrainingResult (status.result and result.json)."""

    def __init__(self, cfg: TrainerConfig, reporter: StatusReporter, ranks: distributed.Ranks | None = None):
        self.cfg = cfg
        self.spec = cfg.spec
        self.ranks = ranks or distributed.Ranks()
        # Rank 0 reports progress and results; another rank reports only its own failure.
        self.failure_reporter = reporter
        self.reporter = reporter if self.ranks.main else StatusReporter(None)
        self.store = Path(cfg.store_root)
        self.output = self.store / cfg.output_path
        self.ckpt_dir = self.output / "checkpoints"
        self.fields: dict = {"attempt": cfg.attempt, "world_size": self.ranks.world_size}
        self.static: dict = {"attempt": cfg.attempt}
        self.started = time.monotonic()
        self.device = None
        self._repetition: float | None = None
        self.trained = False  # every rank got through trainer.train()

    # -- reporting ---------------------------------------------------------------------
    def stage(self, name: str, reset: bool = False) -> None:
        log.info("stage %s", name)
        if not self.ranks.main:
            return
        cleared = dict.fromkeys(CURVE_FIELDS) if reset else {}  # what an earlier attempt left in status.progress
        self.reporter.progress(progress_fields(**cleared, **self.static, stage=name), force=True)

    def result_dict(self) -> dict:
        fields = dict(self.fields)
        fields["finished_at"] = now_rfc3339()
        return TrainingResult(**fields).model_dump(by_alias=True, mode="json")

    def _peak_memory(self) -> None:
        if self.device is not None and self.device.cuda:
            import torch

            self.fields["peak_memory_bytes"] = int(torch.cuda.max_memory_reserved())

    def fail(self, err: TrainerError) -> int:
        self._peak_memory()
        self.fields["failure"] = {"reason": err.reason, "message": err.message}
        self.fields["exit_code"] = err.exit_code
        self.fields["train_runtime_seconds"] = round(time.monotonic() - self.started, 1)
        result = self.result_dict()
        self.failure_reporter.result(result, progress=progress_fields(**self.static, stage="failed"))
        write_termination_message(f"{err.reason}: {err.message}")
        log.error("failed (%s, exit %d)%s: %s", err.reason, err.exit_code,
                  f" on rank {self.ranks.rank}" if self.ranks.distributed else "", err.message)
        return err.exit_code

    # -- the attempt -------------------------------------------------------------------
    def execute(self) -> int:
        spec = self.spec
        training = spec.training
        self.stage("loading", reset=True)
        from transformers import set_seed

        set_seed(training.seed)
        ranks = self.ranks
        self.device = device = detect_device(ranks.local_rank)
        distributed.init(ranks, device.cuda)
        # every rank's GPU, before any rank can decide alone (precision auto must agree)
        distributed.check_same_generation(training.precision, distributed.gather(device.capability))
        plan = resolve_precision(training.precision, cuda=device.cuda, capability=device.capability)
        self.fields["precision"] = plan.name
        self.static["precision"] = plan.name
        log.info("device %s; precision %s (%s)", device.describe(), plan.name, plan.reason)

        src = resolve_source(self.cfg)
        self.fields["base_model"] = src.adapter_base_name
        config_dict = load_config_dict(src)
        check_prequantized(config_dict, src.ref, spec.quantization.type)
        tokenizer = load_tokenizer(src)

        # data --------------------------------------------------------------------------
        self.stage("preparing")
        fmt = Formatter(tokenizer, training.max_seq_length)
        train_file = self.store / self.cfg.train_path
        eval_file = self.store / self.cfg.eval_path if self.cfg.eval_path else None
        pairs, rstats = read_pairs(train_file, training.max_samples)
        dropped = rstats.malformed + rstats.empty
        if eval_file is not None:
            eval_pairs, _ = read_pairs(eval_file, EVAL_MAX_SAMPLES)
        else:
            pairs, eval_pairs = holdout(pairs, training.seed)
            log.info("no eval split given: holding out %d of %d pairs", len(eval_pairs), len(pairs) + len(eval_pairs))
        train_ex, tstats = tokenize_pairs(fmt, pairs)
        eval_ex, estats = tokenize_pairs(fmt, eval_pairs)
        dropped += tstats.dropped
        if not train_ex:
            raise TrainerError(REASON_INVALID_CONFIG, f"no training pair fits maxSeqLength {training.max_seq_length}")
        if not eval_ex:
            raise TrainerError(REASON_INVALID_CONFIG, f"no eval pair fits maxSeqLength {training.max_seq_length}")
        if tstats.boundary_mismatch:
            log.warning("%d samples: prompt tokens differ from the start of prompt+completion", tstats.boundary_mismatch)
        log.info("train %d samples (%d tokens, %d truncated, %d dropped), eval %d samples; chat template: %s",
                 tstats.samples, tstats.tokens, tstats.truncated, dropped, estats.samples, fmt.uses_chat_template)
        self.fields.update(
            train_samples=tstats.samples, samples_truncated=tstats.truncated, tokens_truncated=tstats.tokens_truncated,
            samples_dropped=dropped, eval_samples=estats.samples,
        )

        # plan ----------------------------------------------------------------------------
        shape = ModelShape.from_config(config_dict)
        loss_impl = sft.loss_implementation()
        seq_len = min(training.max_seq_length, _roundup(tstats.max_len, SEQ_ROUND))
        # the effective batch is kept: each rank does its share of the sequences of one step
        effective = distributed.per_rank_batch(training.effective_batch_size, ranks.world_size)
        requested = self.cfg.micro_batch_size or (
            training.micro_batch_size if isinstance(training.micro_batch_size, int) else None
        )
        if device.cuda:
            recipe = Recipe(
                quantized=spec.quantization.type == "nf4", double_quant=spec.quantization.double_quant,
                lora_r=spec.lora.r, targets=tuple(spec.lora.target_modules),
                loss=LOSS_FUSED if loss_impl != LOSS_PLAIN else LOSS_PLAIN,
                half_bytes=4 if plan.name == "fp32" else 2,
            )
            mplan = plan_micro_batch(device.total_bytes, shape, seq_len, effective, recipe, requested=requested)
            micro, accumulation, ckpt = mplan.micro_batch_size, mplan.gradient_accumulation_steps, mplan.gradient_checkpointing
            self.fields["estimated_peak_memory_bytes"] = int(mplan.estimate.total)
            log.info("memory plan: micro-batch %d x %d accumulation, gradient checkpointing %s, ~%.1f GiB (%s)%s",
                     micro, accumulation, ckpt, mplan.estimate.total / 1024**3, mplan.reason,
                     "; " + "; ".join(mplan.notes) if mplan.notes else "")
        else:
            micro, accumulation = accumulation_for(requested or CPU_MICRO_BATCH, effective)
            ckpt = False
        self.fields.update(micro_batch_size=micro, gradient_accumulation_steps=accumulation,
                           gradient_checkpointing=ckpt, loss_implementation=loss_impl)
        self.static["micro_batch_size"] = micro

        # checkpoints -----------------------------------------------------------------------
        fp = checkpoints.fingerprint(self.cfg, data_digest(train_file, eval_file))
        resume = None
        if ranks.main:  # one rank tidies the shared directory; all resume from what it found
            resume = checkpoints.prepare(self.ckpt_dir, fp)
            clean_stale_staging(self.output)
        found = distributed.broadcast(str(resume) if resume is not None else None)
        resume = Path(found) if found else None
        if resume is not None:
            self.fields["resumed_from_step"] = checkpoints.checkpoint_step(resume)
            log.info("resuming from %s", resume)

        # model + trainer -----------------------------------------------------------------
        self.stage("loading-model")
        model, quantized = load_model(src, plan, device, quantization=spec.quantization.type,
                                      double_quant=spec.quantization.double_quant)
        self.fields["quantization"] = "nf4" if quantized else "none"
        progress = ProgressCallback(self.reporter, self.static)
        guard = DivergenceGuard(None, warmup_ratio=training.warmup_ratio, min_warmup=training.logging_steps)
        stop = StopOnSignal()
        dtype_guard = TrainableDtypeGuard(plan.trainable_fp32)
        callbacks = [progress, guard, stop, FinalCheckpoint(), FaultInjection(micro), dtype_guard]
        trainer = self.build_trainer(model, tokenizer, to_dataset(train_ex), plan=plan, micro=micro,
                                     accumulation=accumulation, ckpt=ckpt, cuda=device.cuda, loss_impl=loss_impl,
                                     callbacks=callbacks)
        eval_batch = micro if device.cuda else 8
        pad_id = tokenizer.pad_token_id

        # baseline ------------------------------------------------------------------------
        self.stage("baseline")
        baseline = checkpoints.load_baseline(self.ckpt_dir) if ranks.main else None
        if ranks.main and (not baseline or baseline.get("fingerprint") != fp):
            with trainer.model.disable_adapter():
                base = eval_loss(trainer.model, eval_ex, batch_size=eval_batch, pad_id=pad_id, precision=plan.name)
            baseline = {"fingerprint": fp, "loss": base.loss, "tokenAccuracy": base.token_accuracy,
                        "tokens": base.tokens}
            checkpoints.save_baseline(self.ckpt_dir, baseline)
        # the divergence guard must decide the same on every rank
        baseline = distributed.broadcast(baseline)
        log.info("base eval loss %.4f, token accuracy %.3f on %d tokens", baseline["loss"],
                 baseline["tokenAccuracy"], baseline["tokens"])
        # the result's losses are shown by kubectl get; the gate keeps the precise ones
        self.fields.update(base_eval_loss=shown(baseline["loss"]), base_eval_token_accuracy=baseline["tokenAccuracy"],
                           eval_tokens=baseline["tokens"])
        guard.base = baseline["loss"] if math.isfinite(baseline["loss"]) else None

        # train ---------------------------------------------------------------------------
        self.stage("training")
        stop.install()
        t_train = time.monotonic()
        try:
            if resume is not None and checkpoints.is_final(resume):
                log.info("%s is the last step: nothing left to train", resume.name)
                checkpoints.restore_final(trainer, resume)
            else:
                trainer.train(resume_from_checkpoint=str(resume) if resume else None)
        finally:
            stop.uninstall()
        train_seconds = time.monotonic() - t_train
        self.trained = True
        state = trainer.state
        # log_history survives a resume (it is restored from the checkpoint): the first loss is the run's
        history = [e for e in state.log_history if "loss" in e]
        self.fields.update(global_step=state.global_step, total_steps=state.max_steps,
                           first_loss=history[0]["loss"] if history else progress.first_loss,
                           train_loss=history[-1]["loss"] if history else None,
                           token_accuracy=next((e["mean_token_accuracy"] for e in reversed(history)
                                                if "mean_token_accuracy" in e), None))
        tps = progress.tokens_per_second()
        self.fields["tokens_per_second"] = round(tps, 1) if tps else None
        self._peak_memory()
        log.info("trained %d steps in %.1fs (%s tok/s)", state.global_step, train_seconds, self.fields["tokens_per_second"])
        if not ranks.main:
            # rank 0 evaluates, gates, saves and reports; the others are done (a divergence or a
            # signal stopped every rank alike: rank 0 says why)
            if guard.reason or stop.signalled is not None:
                return EXIT_INTERRUPTED if stop.signalled is not None else EXIT_DIVERGED
            # wait for rank 0 (run() meets it here): a node whose ranks left early would end its
            # torchrun agent, and with pod 0's the rendezvous store rank 0's agent still needs
            distributed.barrier()
            return EXIT_OK
        if guard.reason:
            raise TrainerError(REASON_DIVERGED, guard.reason + ": lower learningRate, or check the data (the "
                               "first logged loss should be close to the base eval loss)")
        if stop.signalled is not None:
            raise TrainerError(REASON_INTERRUPTED, f"stopped by signal {stop.signalled} at step {stop.stopped_at}; "
                               f"checkpoint saved, a rerun resumes from it")

        # evaluate + gate ---------------------------------------------------------------------
        self.stage("evaluating")
        ev = eval_loss(trainer.model, eval_ex, batch_size=eval_batch, pad_id=pad_id, precision=plan.name)
        log.info("adapter eval loss %.4f (base %.4f), token accuracy %.3f", ev.loss, baseline["loss"], ev.token_accuracy)
        self.fields.update(eval_loss=shown(ev.loss), eval_token_accuracy=ev.token_accuracy)
        gate_spec = spec.quality_gate
        if gate_spec.enabled:
            self.stage("gate")
            gate_result, passed = self.quality_gate(trainer.model, tokenizer, fmt, eval_pairs, ev.loss,
                                                    baseline["loss"], plan.name, device.cuda)
        else:
            gate_result = QualityGateResult(passed=None, reason=GATE_DISABLED, message="quality gate disabled",
                                            eval_loss=ev.loss, base_eval_loss=baseline["loss"])
            passed = True
        self.fields["quality_gate"] = gate_result.model_dump(by_alias=True, mode="json")
        self.fields["go_parse_rate"] = gate_result.adapter.go_parse_rate if gate_result.adapter else None
        self.fields["repetition"] = self._repetition

        # save ----------------------------------------------------------------------------
        self.stage("saving")
        self._peak_memory()
        dest = self.output if passed else self.output / "rejected"
        staging, check = stage_adapter(trainer.model, dest, src.adapter_base_name)
        if not check.ok:
            shutil.rmtree(staging, ignore_errors=True)
            raise TrainerError(REASON_INVALID_ADAPTER, f"the trained adapter would not load in vLLM: {check.message}")
        size = sum(p.stat().st_size for p in staging.iterdir() if p.is_file())
        self.fields["rank"] = check.rank  # AdapterServing sizes --max-lora-rank from it
        rel = dest.relative_to(self.store) if dest.is_relative_to(self.store) and str(self.store) != "/" else dest
        self.fields.update(adapter_path=str(rel), adapter_size_bytes=size,
                           train_runtime_seconds=round(time.monotonic() - self.started, 1))
        if passed:
            code = EXIT_OK
            self.fields["exit_code"] = code
            self.fields["failure"] = None
        else:
            code = EXIT_QUALITY_GATE_FAILED
            self.fields["exit_code"] = code
            self.fields["failure"] = {
                "reason": REASON_QUALITY_GATE_FAILED,
                "message": f"{gate_result.reason}: {gate_result.message} (adapter kept in {dest}, not served)",
            }
        result = self.result_dict()
        install_adapter(staging, dest, result)
        final = progress_fields(**self.static, stage="done" if passed else "gate-failed", step=state.global_step,
                                total_steps=state.max_steps)
        self.reporter.result(result, progress=final)
        if passed:
            write_termination_message(
                f"Succeeded: eval loss {ev.loss:.4f} (base {baseline['loss']:.4f}), gate {gate_result.reason}")
        else:
            write_termination_message(f"{REASON_QUALITY_GATE_FAILED}: {gate_result.reason}: {gate_result.message}")
        log.info("adapter %s (%d bytes); gate %s: %s", dest, size, gate_result.reason, gate_result.message)
        return code

    def build_trainer(self, model, tokenizer, train_ds, *, plan, micro, accumulation, ckpt, cuda, loss_impl,
                      callbacks):
        trainer, efficiency = sft.build_trainer(
            self.spec, model, tokenizer, train_ds, output_dir=self.ckpt_dir, world_size=self.ranks.world_size,
            plan=plan, micro=micro, accumulation=accumulation, ckpt=ckpt, cuda=cuda, loss_impl=loss_impl,
            callbacks=callbacks)
        self.fields["padding_efficiency"] = efficiency
        return trainer

    def quality_gate(self, model, tokenizer, fmt, eval_pairs, adapter_loss, base_loss, precision, cuda):
        # the type check finds each pair's original function through the extractor's meta
        metas_file = self.store / (self.cfg.eval_path or self.cfg.train_path)
        result, self._repetition = quality_gate(
            model, tokenizer, fmt, eval_pairs, gate=self.spec.quality_gate, budget=self.spec.training.max_seq_length,
            metas_file=metas_file, adapter_loss=adapter_loss, base_loss=base_loss, precision=precision, cuda=cuda,
            extractor_binary=self.cfg.extractor_binary)
        return result, bool(result.passed)


def _quiet_libraries() -> None:
    try:
        import datasets

        datasets.disable_progress_bars()
    except ImportError:
        pass


def run(cfg: TrainerConfig, reporter: StatusReporter | None = None) -> int:
    """One attempt; returns the exit code. Never raises (except KeyboardInterrupt)."""
    _quiet_libraries()
    reporter = reporter or StatusReporter(cfg.status_target)
    ranks = distributed.Ranks.from_env()
    attempt = TrainingRun(cfg, reporter, ranks)
    try:
        code = attempt.execute()
        if ranks.main and ranks.distributed and attempt.trained:
            distributed.barrier()  # the other ranks wait here until the adapter is saved (or refused)
        return code
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # noqa: BLE001 - every failure must be reported with a reason
        if ranks.distributed and distributed.is_peer_failure(exc):
            # another rank went away first; its own failure (or its pod's end) is the reason
            log.error("rank %d: a peer rank was lost (%s: %s)", ranks.rank, type(exc).__name__, str(exc)[:500])
            return EXIT_INTERRUPTED
        err = classify(exc)
        if not isinstance(exc, TrainerError):
            log.exception("training failed")
        return attempt.fail(err)
    finally:
        reporter.flush()


__all__ = ["RESULT_FILE", "run", "TrainingRun"]
