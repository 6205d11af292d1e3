"""golora.vllm: reading a vLLM command line, ``--lora-modules`` values, model families, and the
``GET /v1/models`` listing (the stand-in server's too). Pure functions, no cluster."""

from __future__ import annotations

import json

import pytest
from golora_dev.vllm_stub import models_for_container

from golora import vllm

from .serving_helpers import AWQ, QWEN

# --- parsing command lines ----------------------------------------------------------------------

@pytest.mark.parametrize("command,args,kind,model", [
    (["vllm", "serve"], [AWQ, "--port", "8200"], "vllm-serve", AWQ),
    (["vllm", "serve", AWQ, "--port", "8000"], None, "vllm-serve", AWQ),
    (["/usr/local/bin/vllm", "serve"], [AWQ], "vllm-serve", AWQ),
    (["vllm"], ["serve", AWQ], "vllm-serve", AWQ),
    (["python3", "-m", "vllm.entrypoints.openai.api_server"], ["--model", AWQ], "api-server", AWQ),
    (["python3", "-m", "vllm.entrypoints.openai.api_server", f"--model={AWQ}"], None, "api-server", AWQ),
    (None, ["--model", AWQ, "--port", "8000"], "image-default", AWQ),
    (None, [AWQ, "--port", "8000"], "image-default", AWQ),
    (None, ["vllm", "serve", AWQ], "vllm-serve", AWQ),
    (["vllm", "serve"], ["--enforce-eager", AWQ], "vllm-serve", AWQ),  # a boolean flag takes no value
    (["vllm", "serve"], ["--port", "8000", AWQ], "vllm-serve", AWQ),  # positional after flags
    (["vllm", "serve"], ["--model", "other/model", AWQ], "vllm-serve", AWQ),  # the positional wins
    (["sh", "-c", f"vllm serve {AWQ} --enable-lora --port 8000"], None, "shell", AWQ),
    (["/bin/bash", "-c"], [f"exec vllm serve {AWQ}"], "shell", AWQ),
    (["/start.sh"], ["--model", AWQ], "unknown", AWQ),
])
def test_invocation_forms(command, args, kind, model):
    inv = vllm.parse_invocation(command, args)
    assert inv.kind == kind
    assert inv.model == model
    assert inv.patchable == (kind in ("vllm-serve", "api-server", "image-default"))


def test_flags_in_every_spelling():
    inv = vllm.parse_invocation(["vllm", "serve"], [
        AWQ, "--max_lora_rank", "8", "--max-loras=2", "--served-model-name", "qwen", "qwen-alias",
        "-tp", "2", "-O3", "--seed", "-1", "--enable-lora", "--kv-transfer-config", '{"kv_role":"kv_both"}'])
    assert inv.int_value(vllm.FLAG_MAX_LORA_RANK) == 8
    assert inv.int_value(vllm.FLAG_MAX_LORAS) == 2
    assert inv.served_model_names == ["qwen", "qwen-alias"]
    assert inv.value("-tp") == "2" and inv.last("-O3") is not None
    assert inv.value("--seed") == "-1"  # a negative number is a value, not a flag
    assert inv.lora_enabled
    assert inv.value("--kv-transfer-config") == '{"kv_role":"kv_both"}'
    assert inv.last(vllm.FLAG_MAX_LORA_RANK).raw == "--max_lora_rank"
    assert inv.last(vllm.FLAG_MAX_LORAS).inline


def test_command_and_args_positions():
    inv = vllm.parse_invocation(["vllm", "serve", AWQ, "--max-lora-rank", "16"], ["--port", "8200"])
    rank, port = inv.last(vllm.FLAG_MAX_LORA_RANK), inv.last(vllm.FLAG_PORT)
    assert not rank.in_args and port.in_args
    assert inv.port == 8200


def test_served_model_names_default_to_the_model_and_double_dash_ends_flags():
    assert vllm.parse_invocation(["vllm", "serve"], [AWQ]).served_model_names == [AWQ]
    inv = vllm.parse_invocation(["vllm", "serve"], ["--port", "1", "--", AWQ])
    assert inv.model == AWQ


def test_lora_enabled_follows_the_last_switch():
    assert not vllm.parse_invocation(["vllm", "serve"], [AWQ, "--enable-lora", "--no-enable-lora"]).lora_enabled
    assert not vllm.parse_invocation(["vllm", "serve"], [AWQ]).lora_enabled


def test_lora_modules_effective_occurrence_is_the_last():
    inv = vllm.parse_invocation(["vllm", "serve"], [AWQ, "--lora-modules", "a=/a", "b=/b", "--enable-lora",
                                                  "--lora-modules", '{"name":"c","path":"/c"}', "d=/d"])
    assert [m.name for m in inv.lora_modules] == ["c", "d"]
    assert [m.form for m in inv.lora_modules] == ["json", "pair"]


@pytest.mark.parametrize("value,form,name,path,base", [
    ("sql=/adapters/sql", "pair", "sql", "/adapters/sql", None),
    ('{"name":"go","path":"/p","base_model_name":"qwen"}', "json", "go", "/p", "qwen"),
    ('{"name": "go", "path": "/a=b,c"}', "json", "go", "/a=b,c", None),
    ("a=b=c", "invalid", None, None, None),
    ("no-equals", "invalid", None, None, None),
    ('{"name":"go","path":"/p","extra":1}', "invalid", None, None, None),
    ('{"name":"go"}', "invalid", None, None, None),
])
def test_parse_lora_module_like_vllm(value, form, name, path, base):
    mod = vllm.parse_lora_module(value)
    assert (mod.form, mod.name, mod.path, mod.base_model_name) == (form, name, path, base)


def test_lora_module_json_roundtrips_and_is_never_the_pair_form():
    value = vllm.lora_module_json("go-adapter", "/golora-store/adapters/x=y", QWEN)
    assert "," in value  # vLLM reads values with ',' as JSON
    mod = vllm.parse_lora_module(value)
    assert (mod.form, mod.name, mod.path, mod.base_model_name) == ("json", "go-adapter", "/golora-store/adapters/x=y",
                                                                   QWEN)
    assert list(json.loads(value)) == ["name", "path", "base_model_name"]


# --- model families ------------------------------------------------------------------------------

@pytest.mark.parametrize("served", [
    AWQ, QWEN, "Qwen/Qwen2.5-7B-Instruct-GPTQ-Int4", "Qwen/Qwen2.5-7B-Instruct-GPTQ-Int8",
    "unsloth/Qwen2.5-7B-Instruct-bnb-4bit", "unsloth/Qwen2.5-7B-Instruct-unsloth-bnb-4bit",
    "Qwen/Qwen2.5-7B-Instruct-GGUF", "RedHatAI/Qwen2.5-7B-Instruct-quantized.w4a16",
    "Qwen/Qwen2.5-7B-Instruct-FP8-Dynamic", "/model-cache/models/Qwen2.5-7B-Instruct-AWQ/", "hf://Qwen/Qwen2.5-7B-Instruct",
])
def test_quantized_variants_are_the_same_family(served):
    assert vllm.same_family(QWEN, served)


@pytest.mark.parametrize("adapter_base,served", [
    ("meta-llama/Llama-3.1-8B-Instruct", AWQ),
    ("Qwen/Qwen2.5-14B-Instruct", AWQ),
    ("Qwen/Qwen2.5-7B", AWQ),  # base vs instruct: different weights
    ("Qwen/Qwen2.5-Coder-7B-Instruct", AWQ),
])
def test_other_models_are_not(adapter_base, served):
    assert not vllm.same_family(adapter_base, served)


def test_model_family_examples():
    assert vllm.model_family("Qwen/Qwen2.5-7B-Instruct-GPTQ-Int4") == "qwen2.5-7b-instruct"
    assert vllm.model_family("TheBloke/Llama-2-7B-Chat-GGUF") == "llama-2-7b-chat"
    assert vllm.model_family("awq") == "awq"  # never strips everything



def test_models_listing_like_vllm():
    c = {"command": ["vllm", "serve"], "args": [AWQ, "--served-model-name", "qwen", "--enable-lora", "--lora-modules",
                                                "sql=/a/sql", vllm.lora_module_json("go", "/p", "qwen"),
                                                vllm.lora_module_json("other", "/o", "not-served")]}
    listing = models_for_container(c)
    assert vllm.listed_model_ids(listing) == ["qwen", "sql", "go", "other"]
    parents = {card["id"]: card["parent"] for card in listing["data"]}
    assert parents == {"qwen": None, "sql": "qwen", "go": "qwen", "other": "qwen"}
    assert listing["data"][0]["root"] == AWQ
    c["args"].remove("--enable-lora")
    assert vllm.listed_model_ids(models_for_container(c)) == ["qwen"]  # no LoRA without --enable-lora

