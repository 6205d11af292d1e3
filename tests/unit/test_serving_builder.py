"""builders.serving and the vLLM command-line knowledge in golora.vllm: pure functions,
no cluster."""

from __future__ import annotations

import copy
import json

import pytest

from golora import vllm
from golora.builders import serving as sv

QWEN = "Qwen/Qwen2.5-7B-Instruct"
AWQ = "Qwen/Qwen2.5-7B-Instruct-AWQ"


def entry(name="go-adapter", rank=16, owner=None, **kw) -> sv.AdapterEntry:
    return sv.AdapterEntry(name=name, owner=owner or name, path=f"adapters/ns/{name}", rank=rank,
                           base_model=kw.pop("base_model", QWEN), **kw)


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
    inv = sv.parse_invocation(command, args)
    assert inv.kind == kind
    assert inv.model == model
    assert inv.patchable == (kind in ("vllm-serve", "api-server", "image-default"))


def test_flags_in_every_spelling():
    inv = sv.parse_invocation(["vllm", "serve"], [
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
    inv = sv.parse_invocation(["vllm", "serve", AWQ, "--max-lora-rank", "16"], ["--port", "8200"])
    rank, port = inv.last(vllm.FLAG_MAX_LORA_RANK), inv.last(vllm.FLAG_PORT)
    assert not rank.in_args and port.in_args
    assert inv.port == 8200


def test_served_model_names_default_to_the_model_and_double_dash_ends_flags():
    assert sv.parse_invocation(["vllm", "serve"], [AWQ]).served_model_names == [AWQ]
    inv = sv.parse_invocation(["vllm", "serve"], ["--port", "1", "--", AWQ])
    assert inv.model == AWQ


def test_lora_enabled_follows_the_last_switch():
    assert not sv.parse_invocation(["vllm", "serve"], [AWQ, "--enable-lora", "--no-enable-lora"]).lora_enabled
    assert not sv.parse_invocation(["vllm", "serve"], [AWQ]).lora_enabled


def test_lora_modules_effective_occurrence_is_the_last():
    inv = sv.parse_invocation(["vllm", "serve"], [AWQ, "--lora-modules", "a=/a", "b=/b", "--enable-lora",
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


# --- desired args: added, stripped, round trips --------------------------------------------------

ROUND_TRIPS = [
    # (command, user args)
    (["vllm", "serve"], [AWQ, "--port", "8200", "--served-model-name", AWQ, "--kv-transfer-config",
                         '{"kv_connector":"NixlConnector","kv_role":"kv_both"}']),
    (["vllm", "serve"], [AWQ]),
    (["vllm", "serve", AWQ], []),
    (["vllm", "serve", AWQ, "--enable-lora", "--max-lora-rank", "8", "--lora-modules", "mine=/m"], ["--port", "1"]),
    (["python3", "-m", "vllm.entrypoints.openai.api_server"],
     [f"--model={AWQ}", "--max_lora_rank", "8", "--lora-modules", "sql=/adapters/sql", "--enforce-eager"]),
    (None, ["--model", AWQ, "--enable-lora", "--max-loras=8", "--max-cpu-loras", "2"]),
    (None, [AWQ, "--lora-modules=solo=/s", "--max-lora-rank=64"]),
    (["vllm", "serve"], [AWQ, "--lora-modules", "a=/a", "--max-loras", "1", "--lora-modules", "b=/b", "c=/c"]),
    (["vllm", "serve"], [AWQ, "--max-lora-rank", "24"]),  # invalid for vLLM: golora's value replaces it
]


@pytest.mark.parametrize("command,user", ROUND_TRIPS)
@pytest.mark.parametrize("entries", [[entry()], [entry("b-adapter", 24), entry("a-adapter", 8)]])
def test_strip_undoes_exactly_and_desired_is_stable(command, user, entries):
    args, rec = sv.desired_args(command, user, entries, AWQ)
    assert sv.strip_args(command, args, rec) == user
    # from the stripped args the same result again (a second reconcile changes nothing)
    again, rec2 = sv.desired_args(command, sv.strip_args(command, args, rec), entries, AWQ)
    assert again == args and rec2.to_json() == rec.to_json()
    # and strip survives a round trip through the annotation
    record = sv.Record(entries, {"vllm": rec})
    back = sv.Record(**{"adapters": sv.read_record({"metadata": {"annotations": {sv.ANNOTATION: record.dumps()}}}).adapters,
                        "containers": sv.read_record({"metadata": {"annotations": {
                            sv.ANNOTATION: record.dumps()}}}).containers})
    assert sv.strip_args(command, args, back.containers["vllm"]) == user
    inv = sv.parse_invocation(command, args)
    assert inv.lora_enabled
    assert inv.int_value(vllm.FLAG_MAX_LORA_RANK) in vllm.ALLOWED_MAX_LORA_RANKS
    assert inv.int_value(vllm.FLAG_MAX_LORA_RANK) >= max(e.rank for e in entries)
    names = [m.name for m in inv.lora_modules]
    assert all(e.name in names for e in entries)
    assert "--lora-extra-vocab-size" not in args
    loras = inv.int_value(vllm.FLAG_MAX_LORAS) or vllm.DEFAULT_MAX_LORAS
    cpu = inv.int_value(vllm.FLAG_MAX_CPU_LORAS)
    assert cpu is None or cpu >= loras


def test_plain_append_order_and_json_form():
    args, rec = sv.desired_args(["vllm", "serve"], [AWQ], [entry("go-b", 24), entry("go-a", 16)], AWQ)
    mods = [vllm.lora_module_json(n, f"{sv.STORE_MOUNT}/adapters/ns/{n}", AWQ) for n in ("go-a", "go-b")]
    assert args == [AWQ, "--enable-lora", "--max-lora-rank", "32", "--max-loras", "2", "--lora-modules", *mods]
    assert rec.to_json() == {"enableLora": True, "loraModules": "appended",
                             "scalars": {"--max-lora-rank": {"value": "32", "was": None},
                                         "--max-loras": {"value": "2", "was": None}}}


@pytest.mark.parametrize("user_rank,adapter_rank,explicit,expected", [
    (None, 24, None, "32"), (None, 16, None, "16"), (None, 1, None, "1"), (None, 300, None, "320"),
    ("8", 16, None, "16"), ("64", 16, None, None), ("24", 16, None, "32"), (None, 16, 128, "128"),
    ("256", 16, 128, None),
])
def test_max_lora_rank_rounds_up_never_lowers(user_rank, adapter_rank, explicit, expected):
    user = [AWQ] + (["--max-lora-rank", user_rank] if user_rank else [])
    args, rec = sv.desired_args(["vllm", "serve"], user, [entry(rank=adapter_rank, max_lora_rank=explicit)], AWQ)
    inv = sv.parse_invocation(["vllm", "serve"], args)
    if expected is None:
        assert vllm.FLAG_MAX_LORA_RANK not in rec.scalars
        assert inv.value(vllm.FLAG_MAX_LORA_RANK) == user_rank
    else:
        assert inv.value(vllm.FLAG_MAX_LORA_RANK) == expected
        assert args.count(vllm.FLAG_MAX_LORA_RANK) == 1  # edited in place, not repeated


def test_rank_in_command_is_overridden_from_args():
    command = ["vllm", "serve", AWQ, "--max-lora-rank", "8"]
    args, rec = sv.desired_args(command, [], [entry(rank=16)], AWQ)
    assert args[args.index("--max-lora-rank") + 1] == "16"
    assert rec.scalars["--max-lora-rank"] == ["16", None]
    assert sv.parse_invocation(command, args).int_value(vllm.FLAG_MAX_LORA_RANK) == 16  # the last one wins


@pytest.mark.parametrize("user,entries,explicit,loras,cpu", [
    ([], 1, None, "1", None),
    ([], 3, None, "3", None),
    (["--lora-modules", "mine=/m"], 1, None, "2", None),  # the user's static adapters count too
    (["--max-loras", "8"], 2, None, "8", None),  # never lowered
    ([], 1, 4, "4", None),
    (["--max-cpu-loras", "1"], 2, None, "2", "2"),  # raised to >= max-loras
    (["--max-cpu-loras", "16"], 2, None, "2", "16"),
])
def test_max_loras_and_cpu_loras(user, entries, explicit, loras, cpu):
    es = [entry(f"a{i}", max_loras=explicit) for i in range(entries)]
    args, _ = sv.desired_args(["vllm", "serve"], [AWQ, *user], es, AWQ)
    inv = sv.parse_invocation(["vllm", "serve"], args)
    assert inv.value(vllm.FLAG_MAX_LORAS) == loras
    assert inv.value(vllm.FLAG_MAX_CPU_LORAS) == cpu


def test_explicit_max_cpu_loras_is_at_least_max_loras():
    args, _ = sv.desired_args(["vllm", "serve"], [AWQ], [entry(max_loras=4, max_cpu_loras=2)], AWQ)
    inv = sv.parse_invocation(["vllm", "serve"], args)
    assert (inv.value(vllm.FLAG_MAX_LORAS), inv.value(vllm.FLAG_MAX_CPU_LORAS)) == ("4", "4")


def test_users_lora_modules_extended_in_place_and_kept_on_strip():
    user = [AWQ, "--lora-modules", "sql=/adapters/sql", '{"name":"x","path":"/x"}', "--port", "8000"]
    args, rec = sv.desired_args(["vllm", "serve"], user, [entry()], AWQ)
    assert rec.lora_modules == "extended"
    assert args[:4] == user[:4] and json.loads(args[4])["name"] == "go-adapter" and args[5:7] == ["--port", "8000"]
    assert args.count("--lora-modules") == 1


def test_lora_modules_in_command_are_carried_into_goloras_occurrence():
    command = ["vllm", "serve", AWQ, "--lora-modules", "mine=/m"]
    args, rec = sv.desired_args(command, [], [entry()], AWQ)
    assert rec.lora_modules == "appended" and rec.copied == ["mine=/m"]
    mods = sv.parse_invocation(command, args).lora_modules
    assert [m.name for m in mods] == ["mine", "go-adapter"]  # vLLM keeps the last occurrence: both present


def test_enable_lora_already_there_is_not_added_or_removed():
    user = [AWQ, "--enable-lora"]
    args, rec = sv.desired_args(["vllm", "serve"], user, [entry()], AWQ)
    assert args.count("--enable-lora") == 1 and not rec.enable_lora
    assert sv.strip_args(["vllm", "serve"], args, rec) == user


def test_user_change_after_golora_is_kept_on_strip():
    args, rec = sv.desired_args(["vllm", "serve"], [AWQ, "--max-lora-rank", "8"], [entry(rank=16)], AWQ)
    i = args.index("--max-lora-rank")
    args[i + 1] = "128"  # the user raised it meanwhile
    assert sv.strip_args(["vllm", "serve"], args, rec)[1:3] == ["--max-lora-rank", "128"]


def test_strip_without_a_record_still_removes_values_in_goloras_mount():
    args, _ = sv.desired_args(["vllm", "serve"], [AWQ, "--lora-modules", "mine=/m"], [entry()], AWQ)
    stripped = sv.strip_args(["vllm", "serve"], args, None)
    assert [m.name for m in sv.parse_invocation(["vllm", "serve"], stripped).lora_modules] == ["mine"]


# --- plan: the server-side-apply body ---------------------------------------------------------------

def deployment(args=None, command=("vllm", "serve"), name="vllm", extra=None, init=None, strategy=None,
               gpu=True, volumes=None, mounts=None) -> dict:
    engine = {"name": "vllm", "image": "vllm/vllm-openai:v0.21.0", "command": list(command),
              "args": list(args if args is not None else [AWQ]), "ports": [{"containerPort": 8000}]}
    if gpu:
        engine["resources"] = {"limits": {"nvidia.com/gpu": "1"}}
    if mounts:
        engine["volumeMounts"] = mounts
    pod = {"containers": [engine, *(extra or [])]}
    if init:
        pod["initContainers"] = init
    if volumes:
        pod["volumes"] = volumes
    spec = {"replicas": 1, "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": pod}}
    if strategy:
        spec["strategy"] = strategy
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": "ns", "resourceVersion": "7", "generation": 1}, "spec": spec}


def apply(dep: dict, body: dict) -> dict:
    """A tiny server-side apply for golora's narrow bodies (the integration tests use the real one):
    golora's previous set is replaced by the new one; fields only golora owned disappear."""
    out = copy.deepcopy(dep)
    owned = sv.owned_fields(dep)
    pod = out["spec"]["template"]["spec"]
    intent = body["spec"]["template"]["spec"]
    items = {c["name"]: c for c in intent.get("containers", [])}
    fields: dict = {}
    for c in pod["containers"]:
        item = items.get(c["name"])
        key = f'k:{{"name":"{c["name"]}"}}'
        if item and "args" in item:
            c["args"] = item["args"]
            fields.setdefault(key, {})["f:args"] = {}
        elif c["name"] in owned.args:
            c.pop("args", None)
        mounts = [m for m in c.get("volumeMounts", []) if (c["name"], m["mountPath"]) not in owned.mounts]
        for m in (item or {}).get("volumeMounts", []):
            mounts = [x for x in mounts if x["mountPath"] != m["mountPath"]] + [m]  # merged by key
            fields.setdefault(key, {}).setdefault("f:volumeMounts", {})[f'k:{{"mountPath":"{m["mountPath"]}"}}'] = {}
        if mounts:
            c["volumeMounts"] = mounts
        else:
            c.pop("volumeMounts", None)
    vols = [v for v in pod.get("volumes", []) if v["name"] not in owned.volumes]
    vol_fields = {}
    for v in intent.get("volumes", []):
        vols = [x for x in vols if x["name"] != v["name"]] + [v]  # merged by key
        vol_fields[f'k:{{"name":"{v["name"]}"}}'] = {}
    if vols:
        pod["volumes"] = vols
    else:
        pod.pop("volumes", None)
    ann = out["metadata"].setdefault("annotations", {})
    if owned.annotation:
        ann.pop(sv.ANNOTATION, None)
    new_ann = body["metadata"].get("annotations") or {}
    ann.update(new_ann)
    if not ann:
        out["metadata"].pop("annotations")
    fv1: dict = {"f:spec": {"f:template": {"f:spec": {"f:containers": fields}}}}
    if vol_fields:
        fv1["f:spec"]["f:template"]["f:spec"]["f:volumes"] = vol_fields
    if new_ann:
        fv1["f:metadata"] = {"f:annotations": {f"f:{sv.ANNOTATION}": {}}}
    out["metadata"]["managedFields"] = [{"manager": "golora", "operation": "Apply", "fieldsV1": fv1}]
    if out["spec"]["template"] != dep["spec"]["template"]:
        out["metadata"]["generation"] += 1
    out["metadata"]["resourceVersion"] = str(int(out["metadata"]["resourceVersion"]) + 1)
    return out


def test_plan_body_is_narrow():
    dep = deployment(init=[{"name": "routing-proxy", "image": "sidecar", "restartPolicy": "Always"}],
                     extra=[{"name": "exporter", "image": "busybox"}])
    plan = sv.plan_deployment(dep, [entry()])
    body = plan.body
    assert body["metadata"] == {"name": "vllm", "namespace": "ns", "resourceVersion": "7",
                                "annotations": {sv.ANNOTATION: plan.record.dumps()}}
    pod = body["spec"]["template"]["spec"]
    assert set(body["spec"]) == {"template"} and set(body["spec"]["template"]) == {"spec"}
    assert set(pod) == {"containers", "volumes"}
    assert [c["name"] for c in pod["containers"]] == ["vllm"]  # never the sidecar or the proxy
    assert set(pod["containers"][0]) == {"name", "args", "volumeMounts"}
    assert pod["containers"][0]["volumeMounts"] == [{"name": sv.STORE_VOLUME, "mountPath": sv.STORE_MOUNT,
                                                     "readOnly": True}]
    assert pod["volumes"] == [{"name": sv.STORE_VOLUME,
                               "persistentVolumeClaim": {"claimName": "golora-store", "readOnly": True}}]


def test_no_change_no_body_then_exact_removal():
    dep = deployment(args=[AWQ, "--port", "8000"])
    original = copy.deepcopy(dep)
    dep = apply(dep, sv.plan_deployment(dep, [entry("a", 16), entry("b", 24)]).body)
    assert dep["metadata"]["generation"] == 2
    assert sv.plan_deployment(dep, [entry("a", 16), entry("b", 24)]).body is None  # no write
    assert sv.plan_deployment(dep, [entry("b", 24), entry("a", 16)]).body is None  # order does not matter

    # remove b: only its value goes, rank recomputed
    dep = apply(dep, sv.plan_deployment(dep, [entry("a", 16)]).body)
    inv = sv.parse_invocation(dep["spec"]["template"]["spec"]["containers"][0]["command"],
                              dep["spec"]["template"]["spec"]["containers"][0]["args"])
    assert [m.name for m in inv.lora_modules] == ["a"] and inv.value(vllm.FLAG_MAX_LORA_RANK) == "16"

    # remove the last: the template is what the user wrote
    plan = sv.plan_deployment(dep, [])
    assert plan.record.adapters == []
    assert sv.ANNOTATION not in plan.body["metadata"].get("annotations", {})
    dep = apply(dep, plan.body)
    assert dep["spec"]["template"] == original["spec"]["template"]
    assert sv.ANNOTATION not in (dep["metadata"].get("annotations") or {})
    assert sv.plan_deployment(dep, []).body is None


def test_removal_keeps_what_the_user_had():
    mine = {"name": sv.STORE_VOLUME, "persistentVolumeClaim": {"claimName": "golora-store", "readOnly": True}}
    dep = deployment(args=[AWQ, "--enable-lora"], volumes=[mine])
    original = copy.deepcopy(dep)
    dep = apply(dep, sv.plan_deployment(dep, [entry()]).body)
    dep["metadata"]["managedFields"][0]["fieldsV1"]["f:spec"]["f:template"]["f:spec"].pop("f:volumes")  # co-owned
    dep = apply(dep, sv.plan_deployment(dep, []).body)
    pod = dep["spec"]["template"]["spec"]
    assert pod["volumes"] == [mine]
    assert pod["containers"][0]["args"] == original["spec"]["template"]["spec"]["containers"][0]["args"]


def test_container_without_args_gets_them_and_loses_them():
    dep = deployment(command=("vllm", "serve", AWQ), args=[])
    dep["spec"]["template"]["spec"]["containers"][0].pop("args")
    dep = apply(dep, sv.plan_deployment(dep, [entry()]).body)
    assert dep["spec"]["template"]["spec"]["containers"][0]["args"][0] == "--enable-lora"
    plan = sv.plan_deployment(dep, [])
    assert "args" not in plan.body["spec"]["template"]["spec"]["containers"][0]
    dep = apply(dep, plan.body)
    assert "args" not in dep["spec"]["template"]["spec"]["containers"][0]


def test_someone_reverting_the_args_is_repaired():
    dep = deployment()
    dep = apply(dep, sv.plan_deployment(dep, [entry()]).body)
    dep["spec"]["template"]["spec"]["containers"][0]["args"] = [AWQ]  # a GitOps sync
    plan = sv.plan_deployment(dep, [entry()])
    assert plan.changed and plan.body["spec"]["template"]["spec"]["containers"][0]["args"][1] == "--enable-lora"


def test_entry_for_a_missing_container_is_dropped_with_a_problem():
    plan = sv.plan_deployment(deployment(), [entry(container="engine")])
    assert plan.problems and plan.problems[0].reason == sv.CONTAINER_NOT_FOUND
    assert plan.body is None


def test_record_roundtrip_and_garbage():
    rec = sv.Record([entry(max_loras=3)], {"vllm": sv.ContainerRecord(True, {"--max-loras": ["3", None]},
                                                                     "appended", ["x=/x"])})
    dep = {"metadata": {"annotations": {sv.ANNOTATION: rec.dumps()}}}
    back = sv.read_record(dep)
    assert back.dumps() == rec.dumps() and back.adapters[0].max_loras == 3
    assert sv.read_record({"metadata": {"annotations": {sv.ANNOTATION: "{not json"}}}).adapters == []
    assert sv.read_record({"metadata": {}}).adapters == []


def test_entries_for_replaces_owner_and_drops_stale():
    rec = sv.Record([entry("a", owner="x"), entry("b", owner="y"), entry("c", owner="gone")])
    out = sv.entries_for(rec, "x", entry("a2", owner="x"), live_owners={"x", "y"})
    assert [(e.owner, e.name) for e in out] == [("x", "a2"), ("y", "b")]
    assert [e.name for e in sv.entries_for(rec, "x", None)] == ["b", "c"]


def test_owned_fields_from_managed_fields():
    dep = {"metadata": {"managedFields": [
        {"manager": "kubectl", "operation": "Update", "fieldsV1": {"f:spec": {"f:template": {"f:spec": {
            "f:containers": {'k:{"name":"vllm"}': {"f:args": {}}}}}}}},
        {"manager": "golora", "operation": "Apply", "fieldsV1": {
            "f:metadata": {"f:annotations": {f"f:{sv.ANNOTATION}": {}}},
            "f:spec": {"f:template": {"f:spec": {
                "f:containers": {'k:{"name":"vllm"}': {".": {}, "f:args": {}, "f:name": {},
                                                       "f:volumeMounts": {'k:{"mountPath":"/golora-store"}': {}}}},
                "f:volumes": {'k:{"name":"golora-store"}': {}}}}}}}]}}
    owned = sv.owned_fields(dep)
    assert owned == sv.Owned(frozenset({"vllm"}), frozenset({("vllm", sv.STORE_MOUNT)}),
                             frozenset({sv.STORE_VOLUME}), True)
    assert sv.owned_fields({"metadata": {}}) == sv.Owned()


# --- checks ------------------------------------------------------------------------------------------

def test_check_target_ok():
    assert sv.check_target(deployment(), entry()) == []


def test_container_found_by_name_only():
    dep = deployment(init=[{"name": "routing-proxy", "image": "x"}])
    problems = sv.check_target(dep, entry(container="routing-proxy"))
    assert problems[0].reason == sv.CONTAINER_NOT_FOUND
    assert "is an init container" in problems[0].message and "routing-proxy" in problems[0].message
    problems = sv.check_target(dep, entry(container="engine"))
    assert "'engine' does not exist (containers: vllm; init containers: routing-proxy)" in problems[0].message


def test_shell_and_wrapper_commands_are_refused():
    dep = deployment(command=("sh", "-c", f"vllm serve {AWQ}"), args=[])
    assert [p.reason for p in sv.check_target(dep, entry())] == [sv.UNSUPPORTED_COMMAND]
    dep = deployment(command=("/start.sh",), args=["--model", AWQ])
    assert sv.check_target(dep, entry())[0].reason == sv.UNSUPPORTED_COMMAND


def test_base_model_mismatch_names_both():
    problems = sv.check_target(deployment(), entry(base_model="meta-llama/Llama-3.1-8B-Instruct"))
    assert [p.reason for p in problems] == [sv.BASE_MODEL_MISMATCH]
    assert "meta-llama/Llama-3.1-8B-Instruct" in problems[0].message and AWQ in problems[0].message


def test_served_model_name_or_local_path_counts_for_the_family():
    dep = deployment(args=["/model-cache/models/snapshot", "--served-model-name", AWQ])
    assert sv.check_target(dep, entry()) == []


def test_no_model_found():
    dep = deployment(command=("python3", "-m", "vllm.entrypoints.openai.api_server"), args=["--config", "c.yaml"])
    problems = sv.check_target(dep, entry())
    assert problems[0].reason == sv.SERVED_MODEL_UNKNOWN and "--config" in problems[0].message


def test_duplicate_names():
    dep = deployment(args=[AWQ, "--lora-modules", "go-adapter=/mine"])
    assert "its own --lora-modules" in sv.check_target(dep, entry())[0].message
    dep = deployment()
    dep = apply(dep, sv.plan_deployment(dep, [entry(owner="first")]).body)
    problems = sv.check_target(dep, entry(owner="second"))
    assert problems[0].reason == sv.DUPLICATE_SERVED_NAME and "AdapterServing 'first'" in problems[0].message
    assert sv.check_target(dep, entry(owner="first")) == []  # its own entry is no conflict
    assert sv.check_target(dep, entry(owner="second"), live_owners={"second"}) == []  # first is gone
    assert sv.check_target(deployment(), entry(name=AWQ))[0].reason == sv.DUPLICATE_SERVED_NAME


def test_storage_conflicts():
    dep = deployment()
    dep = apply(dep, sv.plan_deployment(dep, [entry("a", owner="a")]).body)
    problems = sv.check_target(dep, entry("b", owner="b", claim="other-store"))
    assert problems[0].reason == sv.STORAGE_CONFLICT and "'golora-store'" in problems[0].message
    theirs = deployment(volumes=[{"name": sv.STORE_VOLUME, "emptyDir": {}}])
    assert sv.check_target(theirs, entry())[0].reason == sv.STORAGE_CONFLICT
    mounted = deployment(mounts=[{"name": "models", "mountPath": sv.STORE_MOUNT}])
    assert sv.check_target(mounted, entry())[0].reason == sv.STORAGE_CONFLICT


# --- rollout, surge, probe helpers ---------------------------------------------------------------------

@pytest.mark.parametrize("status,done,words", [
    ({}, False, "observe generation 2"),
    ({"observedGeneration": 2, "replicas": 1, "updatedReplicas": 0}, False, "0 of 1 replicas updated"),
    ({"observedGeneration": 2, "replicas": 2, "updatedReplicas": 1, "availableReplicas": 1}, False, "old replicas"),
    ({"observedGeneration": 2, "replicas": 1, "updatedReplicas": 1, "availableReplicas": 0}, False, "0 of 1 updated"),
    ({"observedGeneration": 2, "replicas": 1, "updatedReplicas": 1, "availableReplicas": 1}, True, "rolled out"),
])
def test_rollout_state(status, done, words):
    dep = deployment()
    dep["metadata"]["generation"] = 2
    dep["status"] = status
    ro = sv.rollout_state(dep)
    assert ro.done == done and words in ro.message


@pytest.mark.parametrize("strategy,gpu,warn", [
    (None, True, True),
    ({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%"}}, True, True),
    ({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}}, True, False),
    ({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "0%"}}, True, False),
    ({"type": "Recreate"}, True, False),
    (None, False, False),
])
def test_surge_risk(strategy, gpu, warn):
    msg = sv.surge_risk(deployment(strategy=strategy, gpu=gpu))
    assert bool(msg) == warn
    if warn:
        assert "nvidia.com/gpu" in msg and "Recreate" in msg and "maxSurge 0" in msg


def test_container_port():
    assert sv.container_port({"args": [AWQ, "--port", "8200"], "command": ["vllm", "serve"],
                              "ports": [{"containerPort": 8000}]}) == 8200
    assert sv.container_port({"command": ["vllm", "serve"], "ports": [{"containerPort": 8100}]}) == 8100
    assert sv.container_port({"command": ["vllm", "serve"]}) == 8000


def test_models_listing_like_vllm():
    c = {"command": ["vllm", "serve"], "args": [AWQ, "--served-model-name", "qwen", "--enable-lora", "--lora-modules",
                                                "sql=/a/sql", vllm.lora_module_json("go", "/p", "qwen"),
                                                vllm.lora_module_json("other", "/o", "not-served")]}
    listing = sv.models_for_container(c)
    assert vllm.listed_model_ids(listing) == ["qwen", "sql", "go", "other"]
    parents = {card["id"]: card["parent"] for card in listing["data"]}
    assert parents == {"qwen": None, "sql": "qwen", "go": "qwen", "other": "qwen"}
    assert listing["data"][0]["root"] == AWQ
    c["args"].remove("--enable-lora")
    assert vllm.listed_model_ids(sv.models_for_container(c)) == ["qwen"]  # no LoRA without --enable-lora


def test_selector_matches():
    assert sv.selector_matches({"llm-d.ai/model": "m"}, {"llm-d.ai/model": "m", "llm-d.ai/role": "decode"})
    assert not sv.selector_matches({"llm-d.ai/model": "m"}, {"llm-d.ai/model": "n"})
    assert not sv.selector_matches({"a": "b"}, None)


# --- the handler's adapter facts (kube.get_cr faked; no cluster) ----------------------------------------

def _spec(**kw):
    from golora.api.adapterserving import AdapterServingSpec

    body = {"servedName": "go-adapter", "trainingRef": {"name": "lt"}, "targets": {"deployments": ["vllm"]}}
    body.update(kw)
    return AdapterServingSpec.model_validate(body)


def _training(phase="Succeeded", gate="True", result=None, spec=None):
    conds = [{"type": "QualityGatePassed", "status": gate, "reason": "Passed" if gate == "True" else "DegenerateOutput",
              "message": "ok" if gate == "True" else "only whitespace"}] if gate else []
    return {"metadata": {"name": "lt"}, "spec": spec or {"baseModel": {"name": QWEN}, "lora": {"r": 32}},
            "status": {"phase": phase, "message": "m", "conditions": conds,
                       "result": {"adapterPath": "adapters/ns/lt", **(result or {})}}}


@pytest.fixture()
def fake_training(monkeypatch):
    from golora.handlers import adapterserving as h

    box: dict = {}
    monkeypatch.setattr(h.kube, "get_cr", lambda plural, ns, name: box.get("obj"))
    return box


@pytest.mark.parametrize("obj,require,reason,status", [
    (None, True, "TrainingNotFound", "Unknown"),
    (_training(phase="Running", gate=None), True, "TrainingNotReady", "Unknown"),
    (_training(phase="Failed", gate=None), True, "TrainingFailed", "False"),
    (_training(phase="Failed", gate="False"), True, "QualityGateNotPassed", "False"),
    (_training(gate="Unknown"), True, "QualityGateNotPassed", "False"),
    (_training(result={"adapterPath": "/abs/path"}), True, "InvalidAdapter", "False"),
    (_training(result={"adapterPath": "a/../../etc"}), True, "InvalidAdapter", "False"),
    (_training(spec={"baseModel": {"name": QWEN}, "storage": {"claimName": "other"}}), True, "StorageMismatch", "False"),
])
def test_resolve_adapter_holds(fake_training, obj, require, reason, status):
    from golora.handlers import adapterserving as h

    fake_training["obj"] = obj
    got = h.resolve_adapter("ns", _spec(requireQualityGate=require))
    assert isinstance(got, h.Hold) and (got.reason, got.status) == (reason, status), got


def test_resolve_adapter_from_training(fake_training):
    from golora.handlers import adapterserving as h

    fake_training["obj"] = _training()
    got = h.resolve_adapter("ns", _spec())
    assert (got.path, got.rank, got.base_model, got.claim) == ("adapters/ns/lt", 32, QWEN, "golora-store")
    assert "spec.lora.r" in got.source  # no result.rank: the rank it was trained with
    fake_training["obj"] = _training(result={"rank": 8, "baseModel": "Qwen/Qwen2.5-7B-Instruct"})
    got = h.resolve_adapter("ns", _spec())
    assert got.rank == 8 and "result.rank" in got.source
    fake_training["obj"] = _training(phase="Failed", gate="False")
    got = h.resolve_adapter("ns", _spec(requireQualityGate=False))
    assert isinstance(got, h.Facts) and "did NOT pass" in got.verified


def test_explicit_adapter_path(monkeypatch, tmp_path):
    from golora.handlers import adapterserving as h

    spec = _spec(trainingRef=None, adapterPath="adapters/manual")
    monkeypatch.delenv(h.CLAIMS_ROOT_ENV, raising=False)
    got = h.resolve_adapter("ns", spec)
    assert got.reason == "AdapterUnverifiable" and "validation Job" in got.message
    monkeypatch.setenv(h.CLAIMS_ROOT_ENV, str(tmp_path))
    assert h.resolve_adapter("ns", spec).reason == "InvalidAdapter"  # not there
    d = tmp_path / "ns" / "golora-store" / "adapters" / "manual"
    d.mkdir(parents=True)
    (d / "adapter_config.json").write_text(json.dumps({"r": 24, "lora_alpha": 48, "target_modules": ["q_proj"],
                                                       "bias": "none", "use_dora": True,
                                                       "base_model_name_or_path": QWEN}))
    (d / "adapter_model.safetensors").write_bytes(b"\0")
    got = h.resolve_adapter("ns", spec)
    assert got.reason == "InvalidAdapter" and "DoRA" in got.message
    (d / "adapter_config.json").write_text(json.dumps({"r": 24, "lora_alpha": 48, "target_modules": ["q_proj"],
                                                       "bias": "none", "base_model_name_or_path": QWEN}))
    got = h.resolve_adapter("ns", spec)
    assert (got.rank, got.base_model, got.reason) == (24, QWEN, "FilesValidated")


def _engine_pod(name: str, args: list[str], state: dict, last: dict | None = None) -> dict:
    cs = {"name": "vllm", "state": state, "lastState": last or {}, "restartCount": 1 if last else 0}
    return {"metadata": {"name": name}, "spec": {"containers": [{"name": "vllm", "args": args}]},
            "status": {"containerStatuses": [cs]}}


def test_engine_crash_only_counts_pods_of_the_current_template():
    dep = {"metadata": {"name": "v"}, "spec": {"template": {"spec": {"containers": [
        {"name": "vllm", "args": ["m", "--enable-lora"]}]}}}}
    crashed = {"terminated": {"exitCode": 1, "reason": "Error", "message": "ValueError: bad adapter\n"}}
    old = _engine_pod("old", ["m"], {"waiting": {"reason": "CrashLoopBackOff"}}, crashed)
    assert sv.engine_crash(dep, [old], "vllm") is None  # an older template's pod: not this patch's doing
    running = _engine_pod("ok", ["m", "--enable-lora"], {"running": {}})
    assert sv.engine_crash(dep, [running], "vllm") is None
    looping = _engine_pod("new", ["m", "--enable-lora"], {"waiting": {"reason": "CrashLoopBackOff"}}, crashed)
    assert sv.engine_crash(dep, [running, looping], "vllm") == sv.EngineCrash("new", 1, "Error", "ValueError: bad adapter")
    deleted = {**looping, "metadata": {"name": "gone", "deletionTimestamp": "2026-01-01T00:00:00Z"}}
    assert sv.engine_crash(dep, [deleted], "vllm") is None  # killed on purpose while terminating
    clean_exit = _engine_pod("done", ["m", "--enable-lora"], {"terminated": {"exitCode": 0, "reason": "Completed"}})
    assert sv.engine_crash(dep, [clean_exit], "vllm") is None
    assert sv.engine_crash(dep, [looping], "other") is None
