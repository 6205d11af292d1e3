"""The operator against the real apiserver: Accepted/Invalid conditions, phase, printer
columns, restart without re-running, and GitOps metadata that does not re-trigger."""

from __future__ import annotations

import time
from pathlib import Path

import kubernetes
import pytest
import yaml

from tests.conftest import wait_for
from tests.kube_helpers import condition, create_cr, get_cr, patch_cr

pytestmark = pytest.mark.cluster

SAMPLES = Path(__file__).resolve().parents[2] / "manifests" / "samples"
PLURALS = {"godataset": "godatasets", "loratraining": "loratrainings", "adapterserving": "adapterservings"}


def sample(kind: str) -> dict:
    return yaml.safe_load((SAMPLES / f"{kind}.yaml").read_text())


def events_for(api, ns: str, name: str) -> list:
    evs = kubernetes.client.CoreV1Api(api).list_namespaced_event(ns).items
    return [e for e in evs if e.involved_object.name == name]


def test_valid_objects_accepted_pending_and_shown_by_kubectl_get(cluster, api, namespace, operator):
    for kind in PLURALS:
        create_cr(api, namespace, sample(kind))
    for kind in PLURALS:
        name = sample(kind)["metadata"]["name"]
        obj = wait_for(lambda k=kind, n=name: (o := get_cr(api, namespace, PLURALS[k], n))
                       and condition(o, "Accepted") and o, what=f"{kind} Accepted")
        cond = condition(obj, "Accepted")
        assert cond["status"] == "True" and cond["reason"] == "Valid"
        assert cond["observedGeneration"] == obj["metadata"]["generation"]
        # Pending, or already further along (the GoDataset's Job may have started).
        assert obj["status"]["phase"] not in (None, "Invalid")
        assert obj["status"]["observedGeneration"] == obj["metadata"]["generation"]

    table = cluster.kubectl("get", "gds,lt,as", "-n", namespace).stdout
    assert "PHASE" in table and "PAIRS" in table and "SERVED-NAME" in table and "EVAL-LOSS" in table
    phases = [get_cr(api, namespace, PLURALS[k], sample(k)["metadata"]["name"])["status"]["phase"] for k in PLURALS]
    for phase in phases:
        assert phase in table, (phase, table)
    assert "go-adapter" in table
    # The category lists all three kinds too.
    assert cluster.kubectl("get", "golora", "-n", namespace, "-o", "name").stdout.count("\n") == 3

    # An Event for the transition to Pending.
    ev = wait_for(lambda: [e for e in events_for(api, namespace, "go-distributed") if e.reason == "Pending"],
                  what="Pending event")
    assert ev[0].type == "Normal"


def test_spec_invalid_for_the_operator_gets_condition_not_crash(cluster, api, namespace, operator):
    obj = sample("loratraining")
    obj["spec"]["training"]["microBatchSize"] = 64  # > effectiveBatchSize 16: a cross-field rule
    create_cr(api, namespace, obj)
    got = wait_for(lambda: (o := get_cr(api, namespace, "loratrainings", "go-adapter"))
                   and condition(o, "Accepted") and o, what="Accepted condition")
    cond = condition(got, "Accepted")
    assert cond["status"] == "False" and cond["reason"] == "InvalidSpec"
    assert "microBatchSize 64 is larger than effectiveBatchSize 16" in cond["message"]
    assert got["status"]["phase"] == "Invalid"
    assert "microBatchSize 64" in cluster.kubectl("get", "lt", "go-adapter", "-n", namespace, "-o", "wide").stdout
    ev = wait_for(lambda: [e for e in events_for(api, namespace, "go-adapter") if e.reason == "Invalid"],
                  what="Invalid event")
    assert ev[0].type == "Warning"

    # Fixing the spec makes it Accepted; lastTransitionTime moves because status changed.
    patch_cr(api, namespace, "loratrainings", "go-adapter", {"spec": {"training": {"microBatchSize": 4}}})
    fixed = wait_for(lambda: (o := get_cr(api, namespace, "loratrainings", "go-adapter"))
                     and condition(o, "Accepted")["status"] == "True" and o, what="re-accepted")
    assert fixed["status"]["phase"] == "Pending"
    assert condition(fixed, "Accepted")["observedGeneration"] == 2


def test_restart_and_gitops_metadata_do_not_rerun_handlers(cluster, api, namespace, operator):
    create_cr(api, namespace, sample("godataset"))
    wait_for(lambda: condition(get_cr(api, namespace, "godatasets", "go-distributed"), "Accepted"), what="Accepted")
    wait_for(lambda: operator.handler_successes("validate", namespace, "go-distributed") == 1, what="one run")
    # Let kopf finish its own bookkeeping patches, then snapshot.
    time.sleep(1.5)
    before = get_cr(api, namespace, "godatasets", "go-distributed")
    events_before = len(events_for(api, namespace, "go-distributed"))

    # kopf's own annotations use golora's prefix, not kopf.zalando.org.
    annotations = before["metadata"].get("annotations", {})
    assert any(k.startswith("golora.dev/") for k in annotations), annotations
    assert not any(k.startswith("kopf.zalando.org/") for k in annotations), annotations

    mark = operator.log_mark()
    operator.restart()
    # Not a pause and hope: the restarted operator says it has taken the object up again (kopf
    # logs the cause of each handling cycle; Creation would mean it lost its state), then a
    # moment for whatever that cycle would run.
    seen = operator.wait_for_log(mark, namespace, "go-distributed", r"(Resuming|Creation|Updating) is in progress")
    assert "] Resuming is in progress" in seen, seen
    time.sleep(1)
    after = get_cr(api, namespace, "godatasets", "go-distributed")
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    assert operator.handler_successes("validate", namespace, "go-distributed") == 1
    assert len(events_for(api, namespace, "go-distributed")) == events_before

    # Argo CD writes its tracking label and annotations: not a change of the spec.
    mark = operator.log_mark()
    patch_cr(api, namespace, "godatasets", "go-distributed",
             {"metadata": {"labels": {"app.kubernetes.io/instance": "golora-lab"},
                           "annotations": {"argocd.argoproj.io/tracking-id": "golora-lab:golora.dev/GoDataset:x/y",
                                           "argocd.argoproj.io/sync-wave": "1"}}})
    # The operator has seen the patch, and to kopf it is no change at all (golora's diff base
    # leaves Argo CD's metadata out), then a moment for whatever that cycle would run.
    seen = operator.wait_for_log(mark, namespace, "go-distributed",
                                 r"not interested \(the essence is the same\)|(Updating|Resuming) is in progress")
    assert "the essence is the same" in seen, seen
    time.sleep(1)
    assert operator.handler_successes("validate", namespace, "go-distributed") == 1
    # A real spec change does re-run it.
    patch_cr(api, namespace, "godatasets", "go-distributed", {"spec": {"maxPairs": 100}})
    wait_for(lambda: operator.handler_successes("validate", namespace, "go-distributed") == 2, what="rerun on spec")
