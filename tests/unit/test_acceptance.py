"""Accepting a spec (builders.status.acceptance) and the one status writer's Event rule
(kube.write_status). Pure except the writer's two calls, which are recorded."""

from __future__ import annotations

import kopf

from golora import conditions as cond
from golora import kube
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


def test_the_writer_posts_one_event_when_the_phase_moves(monkeypatch):
    writes, events = [], []
    monkeypatch.setattr(kube, "patch_cr_status", lambda *a: writes.append(a))
    monkeypatch.setattr(kopf, "event", lambda obj, **k: events.append(k))
    obj = {"metadata": {"namespace": "ns", "name": "x"}, "status": {"phase": "Running"}}
    kube.write_status("loratrainings", obj, None)
    kube.write_status("loratrainings", obj, {"message": "step 3"})
    assert len(writes) == 1 and events == []
    kube.write_status("loratrainings", obj, {"phase": "Failed", "message": "OutOfMemory: ..."})
    kube.write_status("loratrainings", obj, {"phase": "Invalid", "message": "bad"})
    kube.write_status("loratrainings", obj, {"phase": "Succeeded", "message": "done"})
    kube.write_status("loratrainings", obj, {"phase": "Pending"}, previous_phase="Pending")  # announced already
    assert [(e["type"], e["reason"]) for e in events] == [("Warning", "Failed"), ("Warning", "Invalid"),
                                                          ("Normal", "Succeeded")]
