"""status.conditions follow metav1.Condition in every CRD, every reason golora writes is one
the apiserver accepts, and every kind has a Ready condition that means "done and usable"."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from golora import conditions as c
from golora.api import KINDS
from golora.api.common import Condition
from golora.api.crdgen import filename
from golora.api.worker import GATE_DISABLED
from golora.builders import status as st

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "operator" / "golora"
T0 = "2026-01-01T00:00:00Z"

# What k8s.io/apimachinery's metav1.Condition declares (controller-gen output for it).
METAV1_REQUIRED = {"type", "status", "lastTransitionTime", "reason", "message"}
METAV1_TYPE_PATTERN = (r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
                       r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$")
METAV1_REASON_PATTERN = r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"


# ---- the schema ---------------------------------------------------------------------------

@pytest.mark.parametrize("info", KINDS, ids=lambda i: i.kind)
def test_every_crd_declares_conditions_like_metav1(info):
    crd = yaml.safe_load((REPO / "crds" / filename(info)).read_text())
    status = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]
    assert status["properties"]["observedGeneration"]["minimum"] == 0
    conds = status["properties"]["conditions"]
    assert conds["type"] == "array"
    assert conds["x-kubernetes-list-type"] == "map" and conds["x-kubernetes-list-map-keys"] == ["type"]
    item = conds["items"]
    props = item["properties"]
    assert set(item["required"]) == METAV1_REQUIRED
    assert set(props) == METAV1_REQUIRED | {"observedGeneration"}
    assert props["type"]["pattern"] == METAV1_TYPE_PATTERN and props["type"]["maxLength"] == 316
    assert props["status"]["enum"] == ["True", "False", "Unknown"]
    assert props["reason"]["pattern"] == METAV1_REASON_PATTERN
    assert (props["reason"]["minLength"], props["reason"]["maxLength"]) == (1, 1024)
    assert props["message"]["maxLength"] == 32768 and "default" not in props["message"]
    assert props["lastTransitionTime"] == {**props["lastTransitionTime"], "type": "string", "format": "date-time"}
    assert props["observedGeneration"]["minimum"] == 0 and props["observedGeneration"]["type"] == "integer"


def valid(cond: dict[str, Any]) -> Condition:
    """Validate one condition with the model the CRDs are generated from."""
    return Condition.model_validate(cond)


@pytest.mark.parametrize("bad", [
    {"reason": "has space"}, {"reason": ""}, {"reason": "1Leading"}, {"reason": "Trailing,"},
    {"reason": "x" * 1025}, {"type": "bad type"}, {"type": "Bad/Prefix"}, {"message": "m" * 32769},
    {"status": "Yes"}, {"observedGeneration": -1},
])
def test_the_model_rejects_what_the_apiserver_rejects(bad):
    good = {"type": "Ready", "status": "True", "reason": "Ok", "message": "", "lastTransitionTime": T0}
    valid(good)
    valid({**good, "type": "golora.dev/Ready", "reason": "A_b:c,D", "observedGeneration": 0})
    with pytest.raises(ValidationError):
        valid({**good, **bad})


@pytest.mark.parametrize("missing", sorted(METAV1_REQUIRED))
def test_every_metav1_field_is_required(missing):
    good = {"type": "Ready", "status": "True", "reason": "Ok", "message": "", "lastTransitionTime": T0}
    with pytest.raises(ValidationError):
        valid({k: v for k, v in good.items() if k != missing})


# ---- every condition golora writes --------------------------------------------------------

def test_every_condition_type_constant_is_valid():
    types = [v for k, v in vars(c).items() if k.isupper() and isinstance(v, str) and k not in
             {"PENDING", "RUNNING", "SUCCEEDED", "FAILED", "INVALID", "TRUE", "FALSE", "UNKNOWN",
              "REASON_RECONCILING", "REASON_INVALID_SPEC"}]
    assert {"Accepted", "Ready", "Extracted", "DatasetReady", "Succeeded", "Serving", "GPUSurgeRisk"} <= set(types)
    for type_ in types:
        assert c.valid_type(type_), type_
        valid({"type": type_, "status": "True", "reason": "Ok", "message": "", "lastTransitionTime": T0})


# Where a reason sits in the calls that make conditions: (callee name, positional index).
REASON_ARGS = {"Hold": 1, "JobState": 1, "refused": 4, "Problem": 0, "Facts": 6}
# How the code names golora.conditions.
CONDITIONS_ALIASES = ("c", "cond")
TYPE_NAMES = {k for k, v in vars(c).items() if k.isupper() and isinstance(v, str)} - {"TRUE", "FALSE", "UNKNOWN"}


def _module_name(path: Path) -> str:
    return "golora." + ".".join(path.relative_to(PACKAGE).with_suffix("").parts).removesuffix(".__init__")


def _resolve(node: ast.AST, module: Any) -> list[str]:
    """The values a reason expression can take that are literals or named constants (those
    computed at run time are checked by set_condition when they are written)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.Name) and node.id.isupper():
        return [getattr(module, node.id)]
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.attr.isupper():
        return [getattr(getattr(module, node.value.id), node.attr)]
    if isinstance(node, ast.IfExp):
        return _resolve(node.body, module) + _resolve(node.orelse, module)
    if isinstance(node, ast.BoolOp):
        return [v for value in node.values for v in _resolve(value, module)]
    if isinstance(node, ast.Call) and _callee(node) == "as_reason" and len(node.args) == 2:
        return _resolve(node.args[1], module)  # the fallback (the first is checked at run time)
    return []


def _callee(call: ast.Call) -> str:
    f = call.func
    return f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""


def reasons_in_code() -> dict[str, set[str]]:
    """Every reason literal or constant the operator passes where a condition's reason goes."""
    found: dict[str, set[str]] = {}
    sources = [p for p in PACKAGE.rglob("*.py")]
    for path in sources:
        module = importlib.import_module(_module_name(path))
        where = str(path.relative_to(REPO))
        nodes: list[tuple[ast.AST, int]] = []
        for node in ast.walk(ast.parse(path.read_text())):
            # (c.TYPE, status, reason, message): the tuples status_patch and Outcome take
            if isinstance(node, ast.Tuple) and len(node.elts) == 4:
                first = node.elts[0]
                if isinstance(first, ast.Attribute) and isinstance(first.value, ast.Name) and \
                        first.value.id in CONDITIONS_ALIASES and first.attr in TYPE_NAMES:
                    nodes.append((node.elts[2], node.lineno))
            # (c.FALSE, reason, message): what a kind's Ready rule returns
            elif isinstance(node, ast.Tuple) and len(node.elts) == 3 and isinstance(node.elts[0], ast.Attribute) \
                    and isinstance(node.elts[0].value, ast.Name) and node.elts[0].attr in ("TRUE", "FALSE", "UNKNOWN"):
                nodes.append((node.elts[1], node.lineno))
            elif isinstance(node, ast.Call):
                name = _callee(node)
                if name == "set_condition":
                    # conditions.set_condition(conds, type, status, reason, ...) and
                    # handlers.common.set_condition(patch, body, type, status, reason, ...)
                    index = 3 if isinstance(node.func, ast.Attribute) and node.func.value.id in CONDITIONS_ALIASES else 4
                    if len(node.args) > index:
                        nodes.append((node.args[index], node.lineno))
                elif name in REASON_ARGS and len(node.args) > REASON_ARGS[name]:
                    nodes.append((node.args[REASON_ARGS[name]], node.lineno))
                elif name == "_blocking" and isinstance(node.args[-1], ast.Tuple):  # its default (reason, message)
                    nodes.append((node.args[-1].elts[0], node.lineno))
                for kw in node.keywords:
                    if kw.arg == "reason":
                        nodes.append((kw.value, node.lineno))
                    if kw.arg == "patched" and isinstance(kw.value, ast.Tuple):
                        nodes.append((kw.value.elts[1], node.lineno))
            elif isinstance(node, ast.Assign) and len(node.targets) == 1:
                # REASON_X = "...", reason = ..., reason, msg = ..., ...
                target, value = node.targets[0], node.value
                pairs = list(zip(target.elts, value.elts, strict=False)) \
                    if isinstance(target, ast.Tuple) and isinstance(value, ast.Tuple) else [(target, value)]
                for t, v in pairs:
                    if isinstance(t, ast.Name) and (t.id.startswith("REASON_") or "reason" in t.id) or \
                            isinstance(t, ast.Subscript) and isinstance(t.slice, ast.Constant) and \
                            t.slice.value == "reason":
                        nodes.append((v, node.lineno))
        for expr, line in nodes:
            assert not isinstance(expr, ast.JoinedStr), f"{where}:{line}: a reason is a constant, not an f-string"
            for value in _resolve(expr, module):
                found.setdefault(value, set()).add(f"{where}:{line}")
    return found


def test_every_reason_in_the_code_is_a_valid_metav1_reason():
    found = reasons_in_code()
    # The scan sees the reasons of all three kinds (a scan that finds nothing proves nothing).
    for known in ("InvalidSpec", "Valid", "Extracting", "DatasetReady", "DatasetNotFound", "JobCreated",
                  "AdapterReady", "Completed", "Waiting", "TrainingNotFound", "QualityGateNotPassed",
                  "TargetNotFound", "RollingOut", "Listed", "NotListed", "NoReadyPods", "WaitingForRollout",
                  "ServerRejectedAdapter", "RankTooHigh", "BaseModelMismatch", "ContainerNotFound",
                  "OutOfMemory", "QualityGateFailed", "JobDeleted", "JobComplete", "Reconciling",
                  "FilesValidated", "TrainingSucceeded", "Serving", "NotServing", "Unknown", "Unschedulable"):
        assert known in found, known
    assert len(found) >= 60, sorted(found)
    bad = {r: sorted(w) for r, w in found.items() if not c.valid_reason(r)}
    assert not bad, bad
    for reason in found:
        for cond in c.set_condition(None, c.READY, c.FALSE, reason, "m", 3):
            valid(cond)


def test_set_condition_refuses_what_the_apiserver_would():
    with pytest.raises(ValueError):
        c.set_condition(None, c.READY, c.TRUE, "not a reason")
    with pytest.raises(ValueError):
        c.set_condition(None, c.READY, c.TRUE, "")
    with pytest.raises(ValueError):
        c.set_condition(None, "bad type", c.TRUE, "Ok")
    (cond,) = c.set_condition(None, c.READY, c.TRUE, "Ok", None, 2)
    assert cond["message"] == "" and valid(cond).observed_generation == 2
    (cond,) = c.set_condition(None, c.READY, c.TRUE, "Ok", "x" * 40000)
    assert len(cond["message"]) == 32768 and "observedGeneration" not in cond


def test_conditions_written_by_hand_or_by_an_older_golora_are_completed():
    old = [{"type": "Accepted", "status": "True"}, {"type": "Succeeded", "status": "False", "reason": "Exit code 1"}]
    out = c.set_condition(old, c.READY, c.FALSE, "Failed", "", 1, now=T0)
    for cond in out:
        valid(cond)
    assert out[0]["reason"] == "Unknown" and out[1]["reason"] == "Exitcode1"


@pytest.mark.parametrize("raw,expected", [
    ("BackoffLimitExceeded", "BackoffLimitExceeded"), ("OOMKilled", "OOMKilled"), (None, "Fallback"),
    ("", "Fallback"), ("source fetch failed!", "sourcefetchfailed"), ("42", "Fallback"), ("_x", "x"),
])
def test_as_reason_makes_outside_reasons_valid(raw, expected):
    assert c.as_reason(raw, "Fallback") == expected
    assert c.valid_reason(c.as_reason(raw, "Fallback"))


def test_a_failed_jobs_odd_reason_becomes_valid():
    job = {"status": {"conditions": [{"type": "Failed", "status": "True", "reason": "pod failure policy"}]}}
    assert c.valid_reason(st.job_state(job).reason)


# ---- observedGeneration and Ready ---------------------------------------------------------

def test_status_patch_writes_observed_generation_with_everything_it_writes():
    patch = st.status_patch({"observedGeneration": 1}, phase="Running", message="m", generation=2,
                            conditions=[(c.TRAINING, c.TRUE, "Training", "go")])
    assert patch["observedGeneration"] == 2
    again = st.status_patch({**patch}, phase="Running", message="m", generation=2,
                            conditions=[(c.TRAINING, c.TRUE, "Training", "go")])
    assert again is None  # nothing changed: no write at all


def conds(*items: tuple[str, str, str], generation: int = 1) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for type_, status, reason in items:
        out = c.set_condition(out, type_, status, reason, f"{type_} {reason}", generation, now=T0)
    return out


TRAINING_READY = st.training_ready(GATE_DISABLED)


@pytest.mark.parametrize("items,gen,expected", [
    ([(c.ACCEPTED, c.FALSE, "InvalidSpec")], 1, (c.FALSE, "InvalidSpec")),
    ([(c.ACCEPTED, c.TRUE, "Valid"), (c.DATASET_READY, c.FALSE, "DatasetNotReady")], 1, (c.FALSE, "DatasetNotReady")),
    ([(c.ACCEPTED, c.TRUE, "Valid"), (c.DATASET_READY, c.TRUE, "DatasetReady"),
      (c.SCHEDULED, c.FALSE, "Unschedulable")], 1, (c.FALSE, "Unschedulable")),
    ([(c.DATASET_READY, c.TRUE, "DatasetReady"), (c.SCHEDULED, c.UNKNOWN, "JobCreated"),
      (c.TRAINING, c.FALSE, "Waiting")], 1, (c.FALSE, "JobCreated")),
    ([(c.DATASET_READY, c.TRUE, "DatasetReady"), (c.SCHEDULED, c.TRUE, "Scheduled"),
      (c.TRAINING, c.TRUE, "Training")], 1, (c.FALSE, "Training")),
    ([(c.SUCCEEDED_CONDITION, c.TRUE, "AdapterReady"), (c.QUALITY_GATE_PASSED, c.TRUE, "Passed")], 1,
     (c.TRUE, "AdapterReady")),
    ([(c.SUCCEEDED_CONDITION, c.TRUE, "AdapterReady"), (c.QUALITY_GATE_PASSED, c.UNKNOWN, GATE_DISABLED)], 1,
     (c.TRUE, "AdapterReady")),
    ([(c.SUCCEEDED_CONDITION, c.TRUE, "AdapterReady"), (c.QUALITY_GATE_PASSED, c.UNKNOWN, "NotEvaluated")], 1,
     (c.FALSE, "QualityGateNotPassed")),
    ([(c.SUCCEEDED_CONDITION, c.FALSE, "QualityGateFailed"), (c.QUALITY_GATE_PASSED, c.FALSE, "DegenerateOutput")],
     1, (c.FALSE, "QualityGateFailed")),
    ([(c.SUCCEEDED_CONDITION, c.FALSE, "OutOfMemory")], 1, (c.FALSE, "OutOfMemory")),
    # Succeeded for generation 1 says nothing about generation 2.
    ([(c.SUCCEEDED_CONDITION, c.TRUE, "AdapterReady"), (c.QUALITY_GATE_PASSED, c.TRUE, "Passed")], 2,
     (c.FALSE, "Training")),
])
def test_loratraining_ready(items, gen, expected):
    assert TRAINING_READY(conds(*items), gen)[:2] == expected


@pytest.mark.parametrize("items,expected", [
    ([(c.ADAPTER_VALIDATED, c.UNKNOWN, "TrainingNotReady"), (c.PATCHED, c.UNKNOWN, "AdapterNotValidated")],
     (c.FALSE, "TrainingNotReady")),
    ([(c.ADAPTER_VALIDATED, c.TRUE, "TrainingSucceeded"), (c.PATCHED, c.FALSE, "TargetNotFound")],
     (c.FALSE, "TargetNotFound")),
    ([(c.ADAPTER_VALIDATED, c.TRUE, "TrainingSucceeded"), (c.PATCHED, c.TRUE, "Patched"),
      (c.ROLLED_OUT, c.FALSE, "RollingOut"), (c.SERVING, c.UNKNOWN, "WaitingForRollout")], (c.FALSE, "RollingOut")),
    ([(c.PATCHED, c.TRUE, "Patched"), (c.ROLLED_OUT, c.TRUE, "RolledOut"), (c.SERVING, c.UNKNOWN, "NoReadyPods")],
     (c.FALSE, "NoReadyPods")),
    ([(c.PATCHED, c.FALSE, "ServerRejectedAdapter"), (c.SERVING, c.FALSE, "ServerRejectedAdapter")],
     (c.FALSE, "ServerRejectedAdapter")),
    ([(c.PATCHED, c.TRUE, "Patched"), (c.ROLLED_OUT, c.TRUE, "RolledOut"), (c.SERVING, c.TRUE, "Listed")],
     (c.TRUE, "Serving")),
])
def test_adapterserving_ready(items, expected):
    assert st.serving_ready(conds(*items), 1)[:2] == expected


def test_status_patch_derives_ready_from_the_rule():
    patch = st.status_patch({}, phase="Serving", message="m", generation=4, ready=st.serving_ready,
                            conditions=[(c.ROLLED_OUT, c.TRUE, "RolledOut", "ok"), (c.SERVING, c.TRUE, "Listed", "ok")])
    ready = c.get_condition(patch["conditions"], c.READY)
    assert ready["status"] == c.TRUE and ready["observedGeneration"] == 4 and patch["observedGeneration"] == 4
    for cond in patch["conditions"]:
        valid(cond)
