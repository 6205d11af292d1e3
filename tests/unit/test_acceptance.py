"""Accepting a spec (builders.status.acceptance) and the one rule for phase Events that the
status writer (kube.write_status) applies (conditions.phase_event). No API client, no patching."""

from __future__ import annotations

from golora import conditions as cond
from golora.api.loratraining import LoraTrainingSpec
from golora.builders.status import acceptance

VALID = {"baseModel": {"name": "a/b"}, "dataPath": "d.jsonl"}


def by_type(patch: dict) -> dict:
    return {x["type"]: x for x in patch["conditions"]}


def test_invalid_spec_sets_condition_and_phase():
    got = acceptance(LoraTrainingSpec, {"baseModel": {"name": "a/b"}}, {}, 4)
    assert got.spec is None and got.phase == cond.INVALID
    patch = got.patch({}, 4)
    accepted = by_type(patch)[cond.ACCEPTED]
    assert (accepted["status"], accepted["reason"]) == (cond.FALSE, cond.REASON_INVALID_SPEC)
    assert accepted["message"] == "Value error, set exactly one of datasetRef or dataPath"
    assert by_type(patch)[cond.READY]["reason"] == cond.REASON_INVALID_SPEC
    assert patch["phase"] == "Invalid" and patch["observedGeneration"] == 4 and patch["message"] == accepted["message"]


def test_field_errors_name_the_field():
    got = acceptance(LoraTrainingSpec, {**VALID, "lora": {"r": 0}}, {}, 1)
    assert got.message.startswith("spec.lora.r: Input should be greater than or equal to 1"), got.message


def test_valid_spec_is_pending_only_when_nothing_started():
    fresh = acceptance(LoraTrainingSpec, VALID, {}, 1).patch({}, 1)
    assert fresh["phase"] == cond.PENDING and by_type(fresh)[cond.ACCEPTED]["status"] == cond.TRUE
    assert by_type(fresh)[cond.READY]["reason"] == cond.REASON_RECONCILING
    running = {"phase": "Running", "message": "training", "observedGeneration": 1,
               "conditions": cond.set_condition(None, cond.READY, cond.FALSE, "Training", "t", 2)}
    patch = acceptance(LoraTrainingSpec, VALID, running, 2).patch(running, 2)
    assert "phase" not in patch and "message" not in patch
    assert by_type(patch)[cond.ACCEPTED]["observedGeneration"] == 2
    assert by_type(patch)[cond.READY]["reason"] == "Training"  # Ready is about this generation already: kept
    assert acceptance(LoraTrainingSpec, VALID, {"phase": "Invalid"}, 3).phase == cond.PENDING  # fixed


def test_one_event_only_when_a_status_patch_moves_the_phase():
    assert cond.phase_event(None, "Running") is None
    assert cond.phase_event({"message": "step 3"}, "Running") is None
    assert cond.phase_event({"phase": "Pending"}, "Pending") is None  # announced already
    moves = [cond.phase_event({"phase": p, "message": m}, "Running")
             for p, m in (("Failed", "OutOfMemory: ..."), ("Invalid", "bad"), ("Succeeded", "done"))]
    assert [(e["type"], e["reason"], e["message"]) for e in moves] == [
        ("Warning", "Failed", "OutOfMemory: ..."), ("Warning", "Invalid", "bad"), ("Normal", "Succeeded", "done")]
