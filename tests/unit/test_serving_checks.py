"""builders.serving.checks: what must hold before golora patches a Deployment."""

from __future__ import annotations

from golora.builders import serving as sv

from .serving_helpers import AWQ, apply, deployment, entry


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

