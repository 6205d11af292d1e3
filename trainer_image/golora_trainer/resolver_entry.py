"""``python -m golora_trainer resolver-entry``: the AdapterServing resolver-directory Job
(``spec.loading: Runtime``; the layout is described in ``golora.builders.runtime_load``).

Per Deployment it writes a snapshot of the trained adapter whose ``adapter_config.json`` names
that Deployment's ``--model`` (vLLM's filesystem resolver accepts nothing else) and whose weights
are a hard link (or a copy) of the trained ones, then points the resolver entry (a symlink named
after the served name) at it. The trained adapter is only read. With ``remove`` it deletes the
entry and every snapshot of that served name instead. Exit 0 on success.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

from golora.api.worker import CONFIG_ENV, EXIT_INVALID_ADAPTER, EXIT_INVALID_CONFIG
from golora.vllm import ADAPTER_CONFIG, ADAPTER_WEIGHTS

from .report import write_termination_message

KEEP_SNAPSHOTS = 2  # the newest and the one before (pods may still hold it until updated in place)
DIR_MODE, FILE_MODE = 0o755, 0o644


def _safe(root: Path, rel: str) -> Path:
    if rel.startswith("/") or ".." in Path(rel).parts or not rel.strip("/"):
        raise ValueError(f"path {rel!r} must be relative to the store")
    return root / rel


def write_snapshot(adapter: Path, snapshot: Path, base_model: str) -> None:
    """The snapshot directory, complete or not at all (built aside, then renamed)."""
    if (snapshot / ADAPTER_CONFIG).is_file() and (snapshot / ADAPTER_WEIGHTS).is_file():
        cfg = json.loads((snapshot / ADAPTER_CONFIG).read_text())
        if cfg.get("base_model_name_or_path") == base_model:
            return  # already written by an earlier run of this Job
    cfg = json.loads((adapter / ADAPTER_CONFIG).read_text())
    cfg["base_model_name_or_path"] = base_model
    snapshot.parent.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    tmp = snapshot.parent / f".tmp-{snapshot.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(mode=DIR_MODE)
    (tmp / ADAPTER_CONFIG).write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    os.chmod(tmp / ADAPTER_CONFIG, FILE_MODE)
    try:
        os.link(adapter / ADAPTER_WEIGHTS, tmp / ADAPTER_WEIGHTS)  # a snapshot for free: a retrain renames
    except OSError:
        shutil.copy2(adapter / ADAPTER_WEIGHTS, tmp / ADAPTER_WEIGHTS)
    shutil.rmtree(snapshot, ignore_errors=True)
    os.rename(tmp, snapshot)


def point_entry(entry: Path, snapshot: Path) -> None:
    """The resolver entry ``<dir>/<served>`` -> the snapshot (relative: the store is mounted at
    different paths in this Job and in the model server)."""
    entry.parent.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    tmp = entry.parent / f".{entry.name}.link-{os.getpid()}"
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    os.symlink(os.path.relpath(snapshot, entry.parent), tmp)
    os.replace(tmp, entry)


def prune(snapshot: Path, served: str, keep: int = KEEP_SNAPSHOTS) -> list[Path]:
    """Older snapshots of ``served`` beyond the newest ``keep`` (``snapshot`` always stays)."""
    others = sorted((p for p in snapshot.parent.glob(f"{served}-*") if p != snapshot and p.is_dir()),
                    key=lambda p: p.stat().st_mtime, reverse=True)
    removed = others[keep - 1:]
    for p in removed:
        shutil.rmtree(p, ignore_errors=True)
    return removed


def remove(entry: Path, snapshot: Path, served: str) -> None:
    if entry.is_symlink() or entry.exists():
        entry.unlink()
    for p in snapshot.parent.glob(f"{served}-*"):
        shutil.rmtree(p, ignore_errors=True)


def run(raw: str | None = None) -> int:
    try:
        config = json.loads(raw if raw is not None else os.environ.get(CONFIG_ENV, ""))
        root = Path(config["storeRoot"])
        adapter = _safe(root, str(config["adapterPath"]))
        entries = [(str(e["served"]), _safe(root, e["snapshot"]), _safe(root, e["entry"]), str(e["baseModel"]))
                   for e in config["entries"]]
        removing = bool(config.get("remove"))
    except (ValueError, KeyError, TypeError) as exc:
        write_termination_message(f"InvalidConfig: {exc}")
        return EXIT_INVALID_CONFIG
    for served, snapshot, entry, base in entries:
        if removing:
            remove(entry, snapshot, served)
            print(json.dumps({"removed": str(entry)}))
            continue
        if not (adapter / ADAPTER_CONFIG).is_file() or not (adapter / ADAPTER_WEIGHTS).is_file():
            write_termination_message(f"InvalidAdapter: {adapter} has no {ADAPTER_CONFIG} and {ADAPTER_WEIGHTS}")
            return EXIT_INVALID_ADAPTER
        write_snapshot(adapter, snapshot, base)
        point_entry(entry, snapshot)
        pruned = prune(snapshot, served)
        print(json.dumps({"snapshot": str(snapshot), "entry": str(entry), "baseModel": base,
                          "pruned": [str(p) for p in pruned]}))
    sys.stdout.flush()
    return 0
