"""golora_trainer.settings: every GOLORA_* variable the trainer reads is declared there, typed,
and listed in docs/trainer.md with the same default; the worker protocol's variables (the
operator sets them on the Job) come from golora.api.worker instead."""

from __future__ import annotations

import re
from pathlib import Path

from golora.api import worker
from golora_trainer import settings

REPO = Path(__file__).resolve().parents[2]
TRAINER = REPO / "trainer_image" / "golora_trainer"


def protocol_variables() -> set[str]:
    return {v for v in vars(worker).values() if isinstance(v, str) and v.startswith("GOLORA_")}


def test_every_variable_the_trainer_reads_is_a_setting_or_the_worker_protocols():
    declared = {env for env, _, _ in settings.variables()}
    protocol = protocol_variables()
    assert protocol >= {"GOLORA_CONFIG", "GOLORA_TERMINATION_LOG", "GOLORA_POD_IP"}
    assert not declared & protocol
    read = set()
    for path in TRAINER.rglob("*.py"):
        if path.name != "settings.py":
            read |= set(re.findall(r"GOLORA_[A-Z_]+", path.read_text()))
    assert read - protocol <= declared, sorted(read - protocol - declared)
    # and the modules read them through settings, not os.environ
    for path in TRAINER.rglob("*.py"):
        text = path.read_text()
        assert not re.search(r"environ(\.get)?\(?\[?\s*\"GOLORA_", text), path.name


def test_docs_table_follows_the_settings():
    table = (REPO / "docs" / "trainer.md").read_text()
    for env, default, doc in settings.variables():
        shown = "" if default is None else f"{default:g}" if isinstance(default, float) else str(default)
        shown = {"False": ""}.get(shown, shown)
        row = f"| `{env}` | {f'`{shown}`' if shown else ''} | {doc} |"
        assert row in table, row
    for env in protocol_variables():
        assert f"`{env}`" in table, env


def test_values_are_typed_and_unset_or_empty_means_the_default(monkeypatch):
    monkeypatch.setenv("GOLORA_PROGRESS_INTERVAL", "0.2")
    monkeypatch.setenv("GOLORA_GPU_COMPUTE_CAPABILITY", "7.5")
    monkeypatch.setenv("GOLORA_GPU_MEMORY_GIB", "")
    monkeypatch.setenv("GOLORA_FAULT_OOM_ABOVE_MICRO_BATCH", "2")
    monkeypatch.setenv("GOLORA_FORCE_CPU", "1")
    monkeypatch.setenv("GOLORA_PACKING", "padding_free")
    monkeypatch.delenv("GOLORA_TRAIN_SAMPLER", raising=False)
    monkeypatch.setenv("GOLORA_CACHE", "/tmp/c")
    now = settings.current()
    assert (now.progress_interval, now.gpu_compute_capability, now.gpu_memory_gib) == (0.2, (7, 5), None)
    assert (now.fault_oom_above_micro_batch, now.force_cpu, now.packing) == (2, True, "padding_free")
    assert (now.train_sampler, now.cache) == ("buckets", "/tmp/c")
    monkeypatch.setenv("GOLORA_FORCE_CPU", "0")
    assert settings.current().force_cpu is False


def test_the_tiny_model_cache_follows_golora_cache(monkeypatch, tmp_path):
    from golora_trainer import tiny

    monkeypatch.setenv("GOLORA_CACHE", str(tmp_path))
    assert tiny.cache_root() == tmp_path
    monkeypatch.delenv("GOLORA_CACHE")
    assert tiny.cache_root() == Path.home() / ".cache" / "golora"
