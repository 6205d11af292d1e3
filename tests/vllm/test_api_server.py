"""The other way people start vLLM, ``python -m vllm.entrypoints.openai.api_server --model``
(an llm-d prefill-shaped pod: explicit command, model as a flag): golora's patch of it is
accepted by the real server too."""

from __future__ import annotations

import pytest

from golora.builders import serving as sv

from . import helpers

pytestmark = [pytest.mark.vllm, pytest.mark.train]


def prefill_deployment() -> dict:
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "tiny-prefill", "namespace": helpers.NAMESPACE,
                     "labels": {"llm-d.ai/role": "prefill", "llm-d.ai/model": "tiny-go"}},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"llm-d.ai/role": "prefill"}},
                 "template": {"metadata": {"labels": {"llm-d.ai/role": "prefill"}}, "spec": {"containers": [{
                     "name": "vllm", "image": "vllm/vllm-openai:v0.11.0",
                     "command": ["python3", "-m", "vllm.entrypoints.openai.api_server"],
                     "args": ["--model", f"{sv.STORE_MOUNT}/{helpers.MODEL_PATH}", "--port", "8000",
                              "--served-model-name", helpers.BASE_SERVED, "--dtype", "float32"],
                     "ports": [{"containerPort": 8000}]}]}}},
    }


def test_api_server_entrypoint_serves_golora_patch(store, adapter, logs):
    container = helpers.golora_container(prefill_deployment(), [helpers.entry(store)])
    assert container["command"] == ["python3", "-m", "vllm.entrypoints.openai.api_server"]
    with helpers.local_server(container, store, log_path=logs / "prefill-api-server.log") as server:
        assert server.cmd[1:3] == ["-m", "vllm.entrypoints.openai.api_server"]
        cards = {c["id"]: c for c in server.models()}
        assert cards[helpers.ADAPTER]["parent"] == helpers.BASE_SERVED
        assert cards[helpers.ADAPTER]["root"] == str(adapter)
        body = server.chat(helpers.ADAPTER, "// Reverse returns s reversed.", max_tokens=16)
        assert body["usage"]["completion_tokens"] > 0
