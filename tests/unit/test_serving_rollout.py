"""builders.serving.rollout and .targets: rollout state, engine crashes, surge risk, port,
selectors."""

from __future__ import annotations

import pytest

from golora.builders import serving as sv

from .serving_helpers import AWQ, deployment

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



def test_selector_matches():
    assert sv.selector_matches({"llm-d.ai/model": "m"}, {"llm-d.ai/model": "m", "llm-d.ai/role": "decode"})
    assert not sv.selector_matches({"llm-d.ai/model": "m"}, {"llm-d.ai/model": "n"})
    assert not sv.selector_matches({"a": "b"}, None)



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
