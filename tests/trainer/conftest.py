"""Fixtures for the trainer tests: the tiny Go models (cached outside the repo), a Go dataset
from the extractor (or a Python walk of the Go stdlib when the binary is absent), and a local
HTTPS stand-in for the apiserver's status subresource."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
for sub in ("operator", "trainer_image"):
    if str(REPO / sub) not in sys.path:
        sys.path.insert(0, str(REPO / sub))

from .helpers import StatusServer  # noqa: E402

DATASET = "datasets/ns/go"


@pytest.fixture(autouse=True)
def _trainer_env(tmp_path, monkeypatch):
    monkeypatch.setenv("GOLORA_TERMINATION_LOG", str(tmp_path / "termination-log"))
    monkeypatch.setenv("GOLORA_PROGRESS_INTERVAL", "0.2")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("GOLORA_FAULT_OOM_ABOVE_MICRO_BATCH", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)


@pytest.fixture(scope="session")
def tiny_base() -> Path:
    """Tiny Qwen2 pretrained 300 steps on Go: writes Go-shaped code and stops at EOS."""
    from golora_trainer.tiny import TinySpec, ensure_tiny

    return ensure_tiny(TinySpec(pretrain_steps=300))


@pytest.fixture(scope="session")
def tiny_random() -> Path:
    """Tiny Qwen2 with random weights: after a few LoRA steps it emits only whitespace."""
    from golora_trainer.tiny import TinySpec, ensure_tiny

    return ensure_tiny(TinySpec(pretrain_steps=0))


@pytest.fixture(scope="session")
def extractor_binary(tmp_path_factory) -> str | None:
    """golora-extract: $GOLORA_EXTRACT_BIN, on PATH, /tmp/golora-extract, or built from extractor/."""
    for candidate in (os.environ.get("GOLORA_EXTRACT_BIN"), shutil.which("golora-extract"), "/tmp/golora-extract"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    go = shutil.which("go") or ("/usr/local/go/bin/go" if os.path.exists("/usr/local/go/bin/go") else None)
    if go is None or not (REPO / "extractor" / "cmd" / "golora-extract").is_dir():
        return None
    out = tmp_path_factory.mktemp("bin") / "golora-extract"
    proc = subprocess.run([go, "build", "-o", str(out), "./cmd/golora-extract"], cwd=REPO / "extractor",
                          capture_output=True, text=True, timeout=300)
    return str(out) if proc.returncode == 0 else None


HELDOUT = ("strings", "bytes", "sort", "strconv", "unicode/utf8", "path", "bufio", "container/list",
           "text/tabwriter", "errors", "slices", "maps", "math/bits", "encoding/hex", "encoding/csv")


@pytest.fixture(scope="session")
def go_store(tmp_path_factory, extractor_binary) -> Path:
    """A store with datasets/ns/go/{train,eval}.jsonl: Go stdlib pairs the tiny base never saw."""
    from golora_trainer import gosrc

    store = tmp_path_factory.mktemp("store")
    out = store / DATASET
    root = gosrc.goroot()
    if extractor_binary and root is not None:
        sources = [{"name": p.replace("/", "-"), "pvc": {"claimName": "goroot", "path": f"src/{p}"},
                    "dir": str(root / "src" / p)} for p in HELDOUT if (root / "src" / p).is_dir()]
        cfg = {"storeRoot": str(store), "outputPath": DATASET, "sources": sources,
               "filters": {"minLines": 5, "minDocWords": 3, "maxOutputBytes": 4096},
               "template": "doc", "split": {"evalFraction": 0.1, "seed": 42}, "maxPairs": 0}
        (store / "extract.json").write_text(json.dumps(cfg))
        proc = subprocess.run([extractor_binary, "run", "--config", str(store / "extract.json")],
                              capture_output=True, text=True, timeout=300)
        if proc.returncode == 0 and (out / "train.jsonl").is_file():
            (store / "SOURCE").write_text("golora-extract\n")
            return store
    from golora_trainer.data import Pair, holdout

    pairs = [Pair(**p) for p in gosrc.stdlib_pairs(include=HELDOUT)]
    train, evals = holdout(pairs, 42, fraction=0.1)
    out.mkdir(parents=True, exist_ok=True)
    for name, items in (("train.jsonl", train), ("eval.jsonl", evals)):
        (out / name).write_text("".join(json.dumps(p.__dict__) + "\n" for p in items))
    (store / "SOURCE").write_text("python-walk\n")
    return store


@pytest.fixture
def status_server(tmp_path, monkeypatch):
    server = StatusServer(tmp_path)
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", str(server.port))
    monkeypatch.setenv("GOLORA_SERVICEACCOUNT_DIR", str(server.sa_dir))
    yield server
    server.close()


def link_model(store: Path, model_dir: Path, name: str = "tiny") -> str:
    """Put a model under the store (symlink) as baseModel.path would find it."""
    target = store / "models" / name
    target.parent.mkdir(parents=True, exist_ok=True)
    if not target.exists():
        target.symlink_to(model_dir, target_is_directory=True)
    return f"models/{name}"
