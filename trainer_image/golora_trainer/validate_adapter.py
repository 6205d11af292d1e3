"""``python -m golora_trainer validate-adapter``: the AdapterServing validation Job.

Reads one JSON config (env GOLORA_CONFIG) naming an adapter directory on the store, runs
``golora.vllm.validate_adapter_dir`` (the same check the trainer applies when it saves),
and reports ``status.adapterCheck`` of the AdapterServing. Exit 0 when vLLM would load it,
EXIT_INVALID_ADAPTER otherwise.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from golora.api.worker import CONFIG_ENV, EXIT_INVALID_ADAPTER, EXIT_INVALID_CONFIG, StatusTarget
from golora.timestamps import now_rfc3339
from golora.vllm import validate_adapter_dir

from .report import StatusReporter, write_termination_message


def run(raw: str | None = None) -> int:
    try:
        config = json.loads(raw if raw is not None else os.environ.get(CONFIG_ENV, ""))
        root, path = Path(config["storeRoot"]), str(config["adapterPath"])
        target = StatusTarget.model_validate(config["statusTarget"]) if config.get("statusTarget") else None
    except (ValueError, KeyError, TypeError) as exc:
        write_termination_message(f"InvalidConfig: {exc}")
        return EXIT_INVALID_CONFIG
    if path.startswith("/") or ".." in Path(path).parts:
        problems, check = [f"adapterPath {path!r} must be relative to the store"], None
    else:
        check = validate_adapter_dir(root / path)
        problems = check.problems
    ok = not problems
    result = {
        "path": path, "claim": config.get("claim"), "generation": config.get("generation"), "ok": ok,
        "rank": check.rank if check else None, "baseModel": check.base_model if check else None,
        "problems": problems, "checkedAt": now_rfc3339(),
    }
    StatusReporter(target, min_interval=0).patch({"adapterCheck": result})
    print(json.dumps(result))
    if not ok:
        write_termination_message(f"InvalidAdapter: {'; '.join(problems)}")
        return EXIT_INVALID_ADAPTER
    return 0
