"""The resolver-directory Job's worker (golora_trainer.resolver_entry) on a store in a temp dir:
a snapshot whose config names the Deployment's model, the trained adapter untouched, the entry
vLLM's resolver reads, a retrain that does not change a loaded snapshot, pruning, removal."""

from __future__ import annotations

import json
import os

from golora.builders import runtime as rt
from golora.builders import runtime_load as rl
from golora_trainer import resolver_entry

MODEL = "/golora-store/models/tiny-go"


def _store(tmp_path):
    adapter = tmp_path / "adapters/ns/go"
    adapter.mkdir(parents=True)
    (adapter / "adapter_config.json").write_text(json.dumps({"r": 16, "peft_type": "LORA",
                                                             "base_model_name_or_path": "/store/models/tiny-go"}))
    (adapter / "adapter_model.safetensors").write_bytes(b"weights-v1")
    return adapter


def _config(tmp_path, version, remove=False):
    want = rl.Want("vllm", "go-adapter", version, rt.version_dir("ns", "vllm", "go-adapter", version), MODEL)
    cfg = rl.resolver_config("adapters/ns/go", [want], remove=remove)
    cfg["storeRoot"] = str(tmp_path)
    return json.dumps(cfg), want


def test_snapshot_entry_retrain_and_removal(tmp_path):
    adapter = _store(tmp_path)
    original = (adapter / "adapter_config.json").read_text()
    raw, want = _config(tmp_path, "v1")
    assert resolver_entry.run(raw) == 0
    snap = tmp_path / want.snapshot
    cfg = json.loads((snap / "adapter_config.json").read_text())
    assert cfg["base_model_name_or_path"] == MODEL and cfg["r"] == 16 and cfg["peft_type"] == "LORA"
    assert (adapter / "adapter_config.json").read_text() == original  # never edited in place
    entry = tmp_path / "lora-resolver/ns/vllm/go-adapter"
    assert entry.is_symlink() and not os.path.isabs(os.readlink(entry))
    assert json.loads((entry / "adapter_config.json").read_text())["base_model_name_or_path"] == MODEL
    assert resolver_entry.run(raw) == 0  # a rerun of the same Job changes nothing

    # A retrain replaces the trained files (the trainer renames new ones into place): the loaded
    # snapshot keeps the old weights, the new snapshot has the new ones, the entry follows.
    tmp = adapter / ".new"
    tmp.write_bytes(b"weights-v2")
    os.replace(tmp, adapter / "adapter_model.safetensors")
    raw2, want2 = _config(tmp_path, "v2")
    assert resolver_entry.run(raw2) == 0
    assert (snap / "adapter_model.safetensors").read_bytes() == b"weights-v1"
    assert (tmp_path / want2.snapshot / "adapter_model.safetensors").read_bytes() == b"weights-v2"
    assert (entry / "adapter_model.safetensors").read_bytes() == b"weights-v2"

    # A third version: the oldest snapshot goes, the one before stays (pods may still hold it).
    raw3, want3 = _config(tmp_path, "v3")
    assert resolver_entry.run(raw3) == 0
    assert not snap.exists() and (tmp_path / want2.snapshot).is_dir() and (tmp_path / want3.snapshot).is_dir()

    raw_rm, _ = _config(tmp_path, "x", remove=True)
    assert resolver_entry.run(raw_rm) == 0
    assert not entry.is_symlink() and not list((tmp_path / "lora-resolver/ns/vllm/.versions").iterdir())
    assert (adapter / "adapter_model.safetensors").read_bytes() == b"weights-v2"


def test_bad_configs_are_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("GOLORA_TERMINATION_LOG", str(tmp_path / "termination-log"))
    assert resolver_entry.run("not json") != 0
    raw, _ = _config(tmp_path, "v1")
    cfg = json.loads(raw)
    cfg["entries"][0]["snapshot"] = "../outside"
    assert resolver_entry.run(json.dumps(cfg)) != 0
    assert resolver_entry.run(raw) != 0  # no adapter files on this store
    assert "InvalidAdapter" in (tmp_path / "termination-log").read_text()
