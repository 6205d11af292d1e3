"""builders.serving.args: golora's part of a container's args, added and stripped."""

from __future__ import annotations

import json

import pytest

from golora import vllm
from golora.builders import serving as sv

from .serving_helpers import AWQ, entry

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
    inv = vllm.parse_invocation(command, args)
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
    inv = vllm.parse_invocation(["vllm", "serve"], args)
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
    assert vllm.parse_invocation(command, args).int_value(vllm.FLAG_MAX_LORA_RANK) == 16  # the last one wins


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
    inv = vllm.parse_invocation(["vllm", "serve"], args)
    assert inv.value(vllm.FLAG_MAX_LORAS) == loras
    assert inv.value(vllm.FLAG_MAX_CPU_LORAS) == cpu


def test_explicit_max_cpu_loras_is_at_least_max_loras():
    args, _ = sv.desired_args(["vllm", "serve"], [AWQ], [entry(max_loras=4, max_cpu_loras=2)], AWQ)
    inv = vllm.parse_invocation(["vllm", "serve"], args)
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
    mods = vllm.parse_invocation(command, args).lora_modules
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
    assert [m.name for m in vllm.parse_invocation(["vllm", "serve"], stripped).lora_modules] == ["mine"]

