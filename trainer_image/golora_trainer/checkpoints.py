"""Resumable checkpoints under ``<output>/checkpoints/``.

transformers writes ``checkpoint-<step>/`` non-atomically (``trainer_state.json`` last), so
only a checkpoint with a readable trainer_state.json and its adapter weights counts; a
half-written newer one (the pod was killed mid-save) is removed. ``run.json`` records what
the checkpoints were trained for (base, LoRA shape, data digest, hyperparameters): a changed
spec or dataset starts fresh instead of resuming someone else's run. The micro-batch is not
part of it — an OutOfMemory retry resumes with half the micro-batch and twice the
accumulation. ``baseline.json`` caches the base model's eval loss for resumed attempts.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
from pathlib import Path

from golora.api.worker import TrainerConfig

log = logging.getLogger(__name__)

RUN_FILE = "run.json"
BASELINE_FILE = "baseline.json"
_CKPT = re.compile(r"^checkpoint-(\d+)$")


def fingerprint(cfg: TrainerConfig, data_digest: str) -> str:
    spec = cfg.spec
    training = spec.training.model_dump(
        mode="json", exclude={"micro_batch_size", "checkpoint_steps", "logging_steps"}
    )
    blob = {
        "base": spec.base_model.model_dump(mode="json", exclude={"token_secret"}),
        "modelPath": cfg.model_path,
        "lora": spec.lora.model_dump(mode="json"),
        "quantization": spec.quantization.model_dump(mode="json"),
        "training": training,
        "data": data_digest,
    }
    return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()


def _trainer_state(path: Path) -> dict | None:
    """The checkpoint's trainer_state.json, or None while it is missing or half-written."""
    try:
        return json.loads((path / "trainer_state.json").read_text())
    except (OSError, ValueError):
        return None


def is_complete(path: Path) -> bool:
    if _trainer_state(path) is None:
        return False
    return any((path / name).is_file() for name in ("adapter_model.safetensors", "model.safetensors"))


def is_final(path: Path) -> bool:
    """The checkpoint holds the run's last step (``FinalCheckpoint`` wrote it): nothing is left
    to train. The fingerprint already guarantees it was trained for this very spec."""
    state = _trainer_state(path) or {}
    max_steps = state.get("max_steps") or 0
    return max_steps > 0 and state.get("global_step", 0) >= max_steps


def restore_final(trainer, path: Path) -> None:
    """Load a final checkpoint into ``trainer`` without calling ``train()``.

    ``Trainer.train(resume_from_checkpoint=...)`` from a final checkpoint whose step is not a
    whole number of epochs re-enters the epoch loop and takes one more optimizer step before it
    checks ``max_steps`` (no callback can stop it), so a retried gate would judge a different
    adapter than the one trained. This does what the resume would, minus the step: the
    trainer state (step, log history) and the adapter weights, still trainable.
    """
    from transformers.trainer_callback import TrainerState

    trainer.state = TrainerState.load_from_json(str(path / "trainer_state.json"))
    model = trainer.model
    model.load_adapter(str(path), adapter_name=model.active_adapter, is_trainable=True)


def checkpoint_step(path: Path) -> int:
    m = _CKPT.match(path.name)
    return int(m.group(1)) if m else -1


def latest_checkpoint(ckpt_dir: Path) -> Path | None:
    """Newest complete checkpoint; incomplete newer ones are deleted."""
    if not ckpt_dir.is_dir():
        return None
    found = sorted((p for p in ckpt_dir.iterdir() if p.is_dir() and _CKPT.match(p.name)), key=checkpoint_step,
                   reverse=True)
    for path in found:
        if is_complete(path):
            return path
        log.warning("removing incomplete checkpoint %s", path)
        shutil.rmtree(path, ignore_errors=True)
    return None


def prepare(ckpt_dir: Path, fp: str) -> Path | None:
    """Make ``ckpt_dir`` belong to run ``fp``; return the checkpoint to resume from, if any."""
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    run_file = ckpt_dir / RUN_FILE
    try:
        previous = json.loads(run_file.read_text()).get("fingerprint")
    except (OSError, ValueError):
        previous = None
    if previous != fp:
        stale = [p for p in ckpt_dir.iterdir() if p.name != RUN_FILE]
        if stale:
            log.info("checkpoints in %s belong to another run (spec or data changed): starting fresh", ckpt_dir)
        for p in stale:
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
        tmp = run_file.with_suffix(".tmp")
        tmp.write_text(json.dumps({"fingerprint": fp}) + "\n")
        tmp.replace(run_file)
        return None
    return latest_checkpoint(ckpt_dir)


def load_baseline(ckpt_dir: Path) -> dict | None:
    try:
        return json.loads((ckpt_dir / BASELINE_FILE).read_text())
    except (OSError, ValueError):
        return None


def save_baseline(ckpt_dir: Path, baseline: dict) -> None:
    tmp = ckpt_dir / (BASELINE_FILE + ".tmp")
    tmp.write_text(json.dumps(baseline) + "\n")
    tmp.replace(ckpt_dir / BASELINE_FILE)
