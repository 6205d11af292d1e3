"""The shared test helpers that need no cluster: condition lookup and building, the
AdapterServing body, and the operator log waits the integration tests rely on."""

from __future__ import annotations

import pytest

from tests.kube_helpers import adapter_serving, condition, make_condition
from tests.operator_runner import OperatorProcess


def test_condition_is_none_until_there_is_one():
    ready = make_condition("Ready", "True", "AdapterReady")
    assert condition({}, "Ready") is None and condition({"status": None}, "Ready") is None
    assert condition({"status": {"conditions": None}}, "Ready") is None
    assert condition({"status": {"conditions": [ready]}}, "Ready") is ready
    assert condition({"status": {"conditions": [ready]}}, "Serving") is None


def test_make_condition_is_a_metav1_condition():
    assert make_condition("Patched", "False", "TargetNotFound", "no Deployment") == {
        "type": "Patched", "status": "False", "reason": "TargetNotFound", "message": "no Deployment",
        "lastTransitionTime": "2026-01-01T00:00:00Z"}
    assert make_condition("Ready", "True", "R", generation=2)["observedGeneration"] == 2


def test_adapter_serving_refers_to_its_training_only_when_given():
    body = adapter_serving("a", "go-a", {"deployments": ["vllm"]}, "t", loading="Runtime")
    assert body["kind"] == "AdapterServing" and body["metadata"] == {"name": "a"}
    assert body["spec"] == {"servedName": "go-a", "targets": {"deployments": ["vllm"]}, "loading": "Runtime",
                            "trainingRef": {"name": "t"}}
    assert "trainingRef" not in adapter_serving("m", "go-m", {}, adapterPath="adapters/m")["spec"]


def test_wait_for_log_looks_after_the_mark_and_at_one_object_only():
    op = OperatorProcess(cluster=None)
    op.capture.lines += ["[ns/a] Resuming is in progress: {...}"]
    mark = op.log_mark()
    op.capture.lines += ["[ns/b] Resuming is in progress: {...}", "[ns/ab] Creation is in progress: {...}",
                         "[ns/a] Handler 'x' succeeded.", "[ns/a] Creation is in progress: {...}"]
    assert op.wait_for_log(mark, "ns", "a", r"(Resuming|Creation) is in progress") == \
        "[ns/a] Creation is in progress: {...}"
    with pytest.raises(AssertionError, match="timed out"):
        op.wait_for_log(mark, "ns", "a", "Resuming is in progress", timeout=0.3)
