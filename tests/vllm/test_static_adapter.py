"""A real vLLM runs exactly the arguments golora's patch writes into the demo Deployment
(manifests/demo/vllm-deployment.yaml; the image's entrypoint is ``vllm serve``) and serves
the adapter the trainer made under its served name."""

from __future__ import annotations

import json

import pytest

from golora.builders import serving as sv
from golora.devcluster import vllm_local

from . import helpers

pytestmark = [pytest.mark.vllm, pytest.mark.train]


@pytest.fixture(scope="module")
def container(store):
    return helpers.golora_container(helpers.demo_deployment(), [helpers.entry(store)])


@pytest.fixture(scope="module")
def server(container, store, logs):
    with helpers.local_server(container, store, log_path=logs / "demo-serve.log") as srv:
        yield srv


def test_golora_writes_lora_flags_and_a_json_lora_module(container):
    args = container["args"]
    assert "command" not in container  # the image's entrypoint: vllm serve
    inv = sv.parse_invocation(None, args)
    assert inv.lora_enabled and inv.served_model_names == [helpers.BASE_SERVED]
    assert inv.value("--max-lora-rank") == "16" and inv.value("--max-loras") == "1"
    (mod,) = inv.lora_modules
    assert mod.form == "json"
    assert (mod.name, mod.path, mod.base_model_name) == (
        helpers.ADAPTER, f"{sv.STORE_MOUNT}/adapters/{helpers.NAMESPACE}/{helpers.ADAPTER}", helpers.BASE_SERVED)


def test_server_runs_exactly_golora_args_with_the_store_mapped(server, container, store):
    assert server.cmd[:2] == [str(vllm_local.vllm_executable()), "serve"]
    mapped = [a.replace(sv.STORE_MOUNT, str(store)) for a in container["args"]]
    # the same tokens in the same order; only --port (edited in place) and --host (appended)
    # point at a free loopback port
    expected = vllm_local.set_flag(vllm_local.set_flag(mapped, "--host", "127.0.0.1"), "--port", str(server.port))
    assert server.cmd[2:] == expected
    assert mapped[mapped.index("--port") + 1] == "8000"


def test_models_lists_the_adapter_with_the_base_as_parent(server, adapter):
    cards = {c["id"]: c for c in server.models()}
    assert set(cards) == {helpers.BASE_SERVED, helpers.ADAPTER}
    assert cards[helpers.BASE_SERVED]["parent"] is None
    assert cards[helpers.ADAPTER]["parent"] == helpers.BASE_SERVED
    assert cards[helpers.ADAPTER]["root"] == str(adapter)


def test_chat_through_the_adapter_answers_and_is_recorded_next_to_the_base(server, store, logs):
    pair = helpers.eval_pairs(store)[0]
    out = {}
    for model in (helpers.ADAPTER, helpers.BASE_SERVED):
        body = server.chat(model, pair["instruction"], max_tokens=64, temperature=0)
        assert body["model"] == model
        (choice,) = body["choices"]
        assert isinstance(choice["message"]["content"], str)
        assert body["usage"]["completion_tokens"] > 0
        out[model] = {"content": choice["message"]["content"], "finish_reason": choice["finish_reason"],
                      "completion_tokens": body["usage"]["completion_tokens"]}
    out["same"] = out[helpers.ADAPTER]["content"] == out[helpers.BASE_SERVED]["content"]
    out["prompt"], out["expected"] = pair["instruction"], pair["output"]
    (logs / "answers.json").write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))


def test_a_name_nobody_serves_is_404(server):
    status, body = server.request("POST", "/v1/chat/completions", {
        "model": "nope", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4})
    assert status == 404, body
    assert "nope" in json.dumps(body)
