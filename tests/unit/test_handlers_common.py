"""accept() without a cluster: a kopf Patch and a plain body are enough."""

import kopf

from golora.api.loratraining import LoraTrainingSpec
from golora.handlers.common import accept


def _body(phase=None):
    return kopf.Body({"apiVersion": "golora.dev/v1alpha1", "kind": "LoraTraining",
                      "metadata": {"name": "x", "namespace": "ns", "generation": 4, "uid": "u"},
                      "spec": {}, "status": {"phase": phase} if phase else {}})


def test_invalid_spec_sets_condition_and_phase(monkeypatch):
    events = []
    monkeypatch.setattr(kopf, "event", lambda *a, **k: events.append(k))
    patch = kopf.Patch()
    assert accept(LoraTrainingSpec, {"baseModel": {"name": "a/b"}}, _body(), patch) is None
    cond = patch.status["conditions"][0]
    assert cond["type"] == "Accepted" and cond["status"] == "False" and cond["reason"] == "InvalidSpec"
    assert "set exactly one of datasetRef or dataPath" in cond["message"] or "datasetRef" in cond["message"]
    assert patch.status["phase"] == "Invalid" and patch.status["observedGeneration"] == 4
    assert events and events[0]["type"] == "Warning"


def test_valid_spec_does_not_reset_a_running_phase(monkeypatch):
    monkeypatch.setattr(kopf, "event", lambda *a, **k: None)
    patch = kopf.Patch()
    spec = {"baseModel": {"name": "a/b"}, "dataPath": "d.jsonl"}
    assert accept(LoraTrainingSpec, spec, _body("Running"), patch) is not None
    assert "phase" not in patch.status
    assert patch.status["conditions"][0]["status"] == "True"
